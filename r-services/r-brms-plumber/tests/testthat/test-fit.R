fit_growth_over_http <- function(data, ...) {
  response <- http_fit(brms_service, "/growth/fit", list(data = data, ...))
  expect_equal(response$status, 200L, info = response$text)
  response$json
}

expect_fit_contract <- function(fit, n_obs, n_users) {
  expect_match(fit$model_id, "^growth-")
  expect_equal(fit$fixed_effects$term, c("Intercept", "week"))
  expect_true(all(c("estimate", "est_error", "lower", "upper", "rhat", "ess_bulk") %in% names(fit$fixed_effects)))
  effects <- fit$fixed_effects
  expect_true(all(effects$lower < effects$estimate & effects$estimate < effects$upper))
  expect_true(all(c("rhat_max", "ess_bulk_min", "divergences") %in% names(fit$diagnostics)))
  expect_equal(fit$n_obs, n_obs)
  expect_equal(fit$n_users, n_users)
  expect_gt(fit$elapsed_s, 0)
  expect_equal(names(fit$users)[1:3], c("user_id", "intercept", "slope"))
  expect_length(fit$users$user_id, n_users)
  expect_length(fit$users$slope, n_users)
}

gaussian_data <- simulate_learners(30, 6, seed = 11)

# The gaussian fit two tests read, made on first use and then reused (fits are
# slow): every test asks for it, so each runs alone, in any order, and a failed
# fit fails each test that needs it rather than skipping it.
gaussian_fit <- local({
  fit <- NULL
  function() {
    if (is.null(fit)) fit <<- fit_growth_over_http(gaussian_data$data, iter = 1000, chains = 2, seed = 7)
    fit
  }
})

test_that("gaussian fit returns the contract with sane diagnostics, and honours the seed", {
  fit <- gaussian_fit()
  expect_fit_contract(fit, 180L, 30L)
  expect_equal(fit$users$user_id, unique(gaussian_data$data$user_id))
  expect_lt(fit$diagnostics$rhat_max, 1.05)
  expect_gt(fit$diagnostics$ess_bulk_min, 50)
  expect_lte(fit$diagnostics$divergences, 5)
  # Per-user intercepts are accuracies at week 0.
  expect_true(all(fit$users$intercept > 0.2 & fit$users$intercept < 0.9))

  again <- fit_growth_over_http(gaussian_data$data, iter = 1000, chains = 2, seed = 7)
  expect_equal(again$fixed_effects$estimate, fit$fixed_effects$estimate)
  expect_false(identical(again$model_id, fit$model_id))
})

test_that("binomial fit returns per-user values on the accuracy scale", {
  binomial_data <- simulate_learners(20, 5, seed = 12)
  fit <- fit_growth_over_http(binomial_data$data, family = "binomial", iter = 500, chains = 2, seed = 1)
  expect_fit_contract(fit, 100L, 20L)
  expect_equal(fit$family, "binomial")
  expect_true(all(fit$users$intercept > 0 & fit$users$intercept < 1))
  expect_true(all(abs(fit$users$slope) < 0.2))
  expect_lt(fit$diagnostics$rhat_max, 1.05)
  # 5 weeks of 20-40 attempts pin no student down: brms' own program.
  expect_equal(fit$diagnostics$parameterisation, "non_centred")
  # Logit-scale intercept 0 is accuracy 0.5: the two scales agree in sign.
  expect_equal(sign(fit$users$intercept - 0.5), sign(fit$users$intercept_logit))

  prediction <- http_post(brms_service, "/growth/predict", list(
    model_id = fit$model_id,
    data = list(user_id = I(binomial_data$data$user_id[1]), week = I(4), goal = I(0.5))
  ))
  expect_equal(prediction$status, 200L)
  expect_true(prediction$json$lower >= 0 && prediction$json$upper <= 1)
})

test_that("predict gives goal probabilities that fall as the goal rises", {
  model_id <- gaussian_fit()$model_id
  user <- gaussian_data$data$user_id[1]
  goals <- seq(0.3, 0.9, by = 0.1)
  response <- http_post(brms_service, "/growth/predict", list(
    model_id = model_id,
    data = list(user_id = rep(user, length(goals)), week = rep(8, length(goals)), goal = goals)
  ))
  expect_equal(response$status, 200L, info = response$text)
  prediction <- response$json
  expect_equal(prediction$user_id, rep(user, length(goals)))
  expect_true(all(diff(prediction$p_goal) <= 0))
  expect_gt(prediction$p_goal[1], prediction$p_goal[length(goals)])
  expect_true(all(prediction$p_goal >= 0 & prediction$p_goal <= 1))
  expect_true(all(prediction$lower <= prediction$mean & prediction$mean <= prediction$upper))

  # A student the model has not seen gets the population prediction, with
  # wider uncertainty than a known student.
  mixed <- http_post(brms_service, "/growth/predict", list(
    model_id = model_id,
    data = list(user_id = c(user, 999999), week = c(8, 8), goal = c(0.6, 0.6))
  ))$json
  expect_equal(mixed$known_user, c(TRUE, FALSE))
  width <- mixed$upper - mixed$lower
  expect_gt(width[2], width[1])
})

test_that("fitted per-user slopes recover the true ones", {
  # 60 students x 8 weeks; slope sd 0.015 and noise sd 0.04 give a per-student
  # OLS slope standard error of 0.04 / sqrt(42) = 0.0062, so the reliability of
  # a student's slope is 0.015^2 / (0.015^2 + 0.0062^2) = 0.85 and the expected
  # correlation of estimates with the truth is sqrt(0.85) = 0.92. With 60
  # students the sampling sd of r is about 0.02, so r >= 0.8 fails only if the
  # model does not recover slopes, not by chance.
  simulated <- simulate_learners(60, 8, seed = 21, slope_sd = 0.015, noise_sd = 0.04)
  fit <- fit_growth_over_http(simulated$data, iter = 800, chains = 2, seed = 3)
  expect_gte(cor(fit$users$slope, simulated$slope), 0.8)
  slope <- fit$fixed_effects[fit$fixed_effects$term == "week", ]
  expect_lte(slope$lower, 0.02)
  expect_gte(slope$upper, 0.02)
  expect_lt(fit$diagnostics$rhat_max, 1.05)
  expect_equal(fit$diagnostics$divergences, 0L)
  # Reliable slopes (0.85): the centred program.
  expect_equal(fit$diagnostics$parameterisation, "centred")
})

test_that("p_goal is about one observed week at the given attempts, and bounded", {
  simulated <- simulate_learners(15, 5, seed = 31)
  fit <- fit_growth_over_http(simulated$data, family = "binomial", iter = 400, chains = 2, seed = 2)
  user <- simulated$data$user_id[1]
  predict_at <- function(attempts, goal = 0.5) {
    http_post(brms_service, "/growth/predict", list(
      model_id = fit$model_id,
      data = list(user_id = I(user), week = I(6), goal = I(goal), n_attempts = I(attempts))
    ))$json
  }
  # One attempt: the week's accuracy is 0 or 1, so P(accuracy >= 0.5) is exactly the
  # expected accuracy; an expected-accuracy probability (the old meaning) is not.
  one <- predict_at(1)
  expect_equal(one$p_goal, one$mean, tolerance = 1e-9)
  many <- predict_at(2000)
  expect_false(isTRUE(all.equal(many$p_goal, one$p_goal, tolerance = 1e-3)))
  expect_true(all(c(one$lower, many$upper) >= 0 & c(one$lower, many$upper) <= 1))
  expect_equal(predict_at(20, goal = 0)$p_goal, 1)
})

test_that("converged is judged by the request's thresholds and says why not", {
  simulated <- simulate_learners(12, 5, seed = 32)
  fit <- fit_growth_over_http(simulated$data, iter = 300, chains = 2, seed = 2, min_ess_bulk = 1e6)
  expect_false(fit$diagnostics$converged)
  expect_match(fit$diagnostics$reason, "min bulk ESS", fixed = TRUE)
  expect_equal(fit$diagnostics$min_ess_bulk, 1e6)
  expect_equal(fit$diagnostics$max_rhat, 1.01)
  expect_setequal(names(fit$population_draws), c("intercept", "slope", "sd_intercept", "sd_slope", "cor", "sigma"))
  expect_length(fit$population_draws$slope, 300)
})

test_that("a fit short of the ESS target is sampled once more, longer, up to max_iter", {
  simulated <- simulate_learners(12, 5, seed = 32)
  # 300 iterations (150 draws per chain) cannot give a bulk ESS of 280 from 300 draws.
  fit <- fit_growth_over_http(
    simulated$data, iter = 300, max_iter = 1200, chains = 2, seed = 2, min_ess_bulk = 280, adapt_delta = 0.99
  )
  expect_gt(fit$diagnostics$iterations, 300)
  expect_lte(fit$diagnostics$iterations, 1200)
  expect_equal(fit$settings$max_iter, 1200)
  # Judged on the longer run alone: its draws are the ones returned.
  expect_length(fit$population_draws$slope, 2 * (fit$diagnostics$iterations - 150))

  single <- fit_growth_over_http(simulated$data, iter = 300, chains = 2, seed = 2, min_ess_bulk = 280)
  expect_equal(single$diagnostics$iterations, 300)
  expect_false(single$diagnostics$converged)
})

test_that("max_iter below iter is a 400 naming the field", {
  simulated <- simulate_learners(12, 5, seed = 32)
  response <- http_fit(brms_service, "/growth/fit", list(data = simulated$data, iter = 500, max_iter = 400))
  expect_http_error(response, 400L, "max_iter")
})
