# The two growth programs (brms' non-centred, centred) and the choice between
# them, on the service's own code; the templates are the ones the test service
# compiled (setup-brms-service.R).
service_code <- rservicecommon::load_service_code(file.path("..", "..", "R"))
withr::local_envvar(BRMS_TEMPLATE_DIR = template_cache_dir, .local_envir = teardown_env())

as_frame <- function(simulated) {
  data <- as.data.frame(simulated$data)
  data$user_id <- as.character(data$user_id)
  data
}

test_that("students pinned down by their data get the centred program, sparse ones brms' own", {
  informative <- as_frame(simulate_learners(200, 12, seed = 41))
  choice <- service_code$choose_parameterisation(informative, "gaussian")
  expect_equal(choice$parameterisation, "centred")
  expect_lt(choice$noise_share, 0.3)
  expect_equal(service_code$choose_parameterisation(informative, "binomial")$parameterisation, "centred")

  # 5 weeks of 20-40 attempts say little about a student's logit slope.
  sparse <- as_frame(simulate_learners(20, 5, seed = 12))
  choice <- service_code$choose_parameterisation(sparse, "binomial")
  expect_equal(choice$parameterisation, "non_centred")
  expect_gt(choice$noise_share, 0.5)

  # Fewer than 5 students with 3 weeks: nothing to judge by, brms' own.
  few <- as_frame(simulate_learners(4, 6, seed = 42))
  choice <- service_code$choose_parameterisation(few, "gaussian")
  expect_equal(choice, list(parameterisation = "non_centred", noise_share = NA_real_))
})

test_that("the centred program samples the same posterior as brms' own", {
  data <- as_frame(simulate_learners(100, 12, seed = 43))
  data$user_id <- service_code$id_key(data$user_id)
  population <- c("b_Intercept", "b_week", "sd_user_id__Intercept", "sd_user_id__week", "sigma")
  summary_of <- function(parameterisation) {
    template <- service_code$load_template("gaussian", parameterisation)
    fit <- service_code$sample_growth(
      template, data, service_code$sampler_settings(1000L, 500L, 2L, 1L, 0.95, 10L)
    )
    draws <- posterior::as_draws_array(fit, variable = population)
    posterior::summarise_draws(draws, "mean", "sd")
  }
  centred <- summary_of("centred")
  non_centred <- summary_of("non_centred")
  # Two samples of one posterior: the means differ by Monte Carlo error only,
  # a small fraction of the posterior sd (a different posterior, e.g. a wrong
  # prior on the students' deviations, moves the sds by far more).
  expect_lt(max(abs(centred$mean - non_centred$mean) / non_centred$sd), 0.3)
  expect_lt(max(abs(centred$sd / non_centred$sd - 1)), 0.2)
})

test_that("a brms version that writes other Stan code fails at compile time, naming the text", {
  expect_error(
    service_code$centred_stan_code("parameters {\n}\n"),
    "brms' Stan code has changed: cannot find `vector[Kc] means_X;",
    fixed = TRUE
  )
})
