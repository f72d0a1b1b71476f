# Model-level checks of the Cox churn model (no HTTP).

churn_request <- function(table, covariates = c("accuracy", "sessions", "gap_days"), horizon_days = 14) {
  parse_survival_fit_request(list(data = table, covariates = covariates, horizon_days = horizon_days))
}

test_that("known hazard ratios are recovered and held-out concordance is clearly above 0.5", {
  true_beta <- c(accuracy = -1.2, sessions = -0.6, gap_days = 0.08)
  churn <- simulate_churn(n = 800, beta = true_beta, seed = 7)
  training <- 1:600
  held_out <- 601:800
  fitted <- fit_survival(churn_request(subset_table(churn, training)))
  coefficients <- fitted$response$coefficients
  estimate <- stats::setNames(coefficients$coef, coefficients$term)[names(true_beta)]

  expect_equal(sign(estimate), sign(true_beta))
  # 600 subjects with ~60% events: standard errors are ~0.06 for accuracy and
  # sessions and ~0.01 for gap_days, so 4 standard errors is a loose but
  # informative band (a sign-only check would also pass a badly biased fit).
  expect_true(all(abs(estimate - true_beta) < 4 * coefficients$se), info = paste(format(estimate), collapse = " "))
  expect_equal(coefficients$hazard_ratio, exp(coefficients$coef))

  # Held-out concordance: with these effects the true linear predictor has a
  # concordance of ~0.75 with the simulated times; 0.65 leaves room for
  # sampling error on 200 students (sd ~0.02) while a model with wrong or
  # random signs would score at or below 0.5.
  predicted <- predict_survival(fitted$model, parse_survival_predict_request(
    list(data = subset_table(churn, held_out)), fitted$model$covariates
  ))
  held_out_concordance <- survival::concordance(
    survival::Surv(churn$time[held_out], churn$event[held_out]) ~ predicted$risk_score,
    reverse = TRUE
  )$concordance
  expect_gt(held_out_concordance, 0.65)
  expect_gt(fitted$response$concordance, 0.65)
})

test_that("p_event equals 1 - S(horizon) of survfit with newdata, and predict reproduces fit", {
  churn <- simulate_churn(n = 300, seed = 3)
  request <- churn_request(churn, horizon_days = 21)
  fitted <- fit_survival(request)
  reference_fit <- survival::coxph(
    survival::Surv(time, event) ~ accuracy + sessions + gap_days,
    data = request$frame, ties = "efron"
  )
  rows <- c(1, 50, 299)
  curves <- survival::survfit(reference_fit, newdata = request$frame[rows, ])
  reference_p_event <- 1 - summary(curves, times = 21)$surv[1, ]
  expect_equal(fitted$response$risk$p_event[rows], unname(reference_p_event), tolerance = 1e-8)
  expect_equal(
    fitted$response$risk$risk_score,
    unname(stats::predict(reference_fit, type = "lp")),
    tolerance = 1e-8
  )

  predicted <- predict_survival(fitted$model, parse_survival_predict_request(
    list(data = churn, horizon_days = 21), fitted$model$covariates
  ))
  expect_equal(predicted$risk_score, fitted$response$risk$risk_score)
  expect_equal(predicted$p_event, fitted$response$risk$p_event)
  expect_true(all(predicted$p_event > 0 & predicted$p_event < 1))
})

test_that("the response carries the proportional-hazards test with a GLOBAL row", {
  fitted <- fit_survival(churn_request(simulate_churn(n = 300, seed = 4)))
  ph_test <- fitted$response$ph_test
  expect_equal(ph_test$term, c("accuracy", "sessions", "gap_days", "GLOBAL"))
  expect_true(all(ph_test$p_value >= 0 & ph_test$p_value <= 1))
  expect_equal(fitted$response$n, 300)
  expect_equal(fitted$response$n_events, sum(simulate_churn(n = 300, seed = 4)$event))
})

test_that("collinear covariates and horizons past the follow-up are reported", {
  churn <- simulate_churn(n = 200, seed = 5)
  churn$accuracy_copy <- 2 * churn$accuracy
  error <- tryCatch(
    fit_survival(churn_request(churn, covariates = c("accuracy", "accuracy_copy"))),
    http_error = identity
  )
  expect_equal(error$status, 400L)
  expect_match(conditionMessage(error), "covariates: 'accuracy_copy' is collinear")

  long_horizon <- fit_survival(churn_request(churn, horizon_days = 365))
  expect_match(long_horizon$response$warnings, "beyond the longest follow-up", all = FALSE)
})

# Rows whose hazard falls with days idle (true coefficient -0.15 per day): the
# unconstrained model must show S falling with days idle (negative control), the
# monotone one must not.
idle_cohort <- function(n = 600, seed = 11) {
  set.seed(seed)
  days_idle <- sample(0:13, n, replace = TRUE)
  accuracy <- stats::rnorm(n)
  rate <- 0.02 * exp(-0.15 * days_idle - 0.5 * accuracy)
  event_time <- stats::rexp(n, rate)
  list(
    user_id = rep(seq_len(n / 2), 2),
    time = pmin(ceiling(event_time), 14),
    event = as.integer(event_time <= 14),
    days_idle = days_idle,
    accuracy = accuracy
  )
}

p_event_by_days_idle <- function(model) {
  grid <- list(user_id = 1:14, days_idle = 0:13, accuracy = rep(0.3, 14))
  request <- parse_survival_predict_request(list(data = grid, horizon_days = 14), model$covariates)
  predict_survival(model, request)$p_event
}

test_that("S never decreases with days idle when days_idle is monotone; it does without the constraint", {
  cohort <- idle_cohort()
  free <- fit_survival(churn_request(cohort, covariates = c("days_idle", "accuracy")))
  expect_lt(free$response$coefficients$coef[1], 0)
  expect_true(any(diff(p_event_by_days_idle(free$model)) < 0))

  request <- churn_request(cohort, covariates = c("days_idle", "accuracy"))
  request$monotone <- "days_idle"
  constrained <- fit_survival(request)
  expect_true(all(diff(p_event_by_days_idle(constrained$model)) >= 0))
  expect_equal(as.character(constrained$response$constraints$fixed_at_zero), "days_idle")
  expect_false("days_idle" %in% constrained$response$coefficients$term)
})

test_that("a covariate failing the proportional-hazards test gets a time interaction, others do not", {
  set.seed(21)
  n <- 1500
  x <- stats::rnorm(n)
  z <- stats::rnorm(n)
  # x doubles the hazard per unit before day 10 and has no effect after it; z is proportional.
  early_time <- stats::rexp(n, 0.03 * exp(0.7 * x + 0.5 * z))
  late_time <- 10 + stats::rexp(n, 0.03 * exp(0.5 * z))
  event_time <- ifelse(early_time <= 10, early_time, late_time)
  table <- list(user_id = seq_len(n), time = pmin(event_time, 30), event = as.integer(event_time <= 30), x = x, z = z)
  fitted <- fit_survival(churn_request(table, covariates = c("x", "z")))
  actions <- fitted$response$ph_actions
  expect_equal(vapply(actions, `[[`, "", "covariate"), "x")
  expect_lt(actions[[1]]$p_value, 0.01)
  coefficients <- stats::setNames(fitted$response$coefficients$coef, fitted$response$coefficients$term)
  expect_setequal(names(coefficients), c("x.early", "x.late", "z"))
  expect_gt(coefficients[["x.early"]], coefficients[["x.late"]] + 0.3)

  # Negative control: with proportional effects only, nothing is changed.
  proportional <- fit_survival(churn_request(simulate_churn(n = 600, seed = 7)))
  expect_length(proportional$response$ph_actions, 0)
})

test_that("concordance is held out: noise covariates score about 0.5 out of sample, above it in sample", {
  set.seed(31)
  n <- 400
  table <- list(
    user_id = rep(seq_len(n / 4), 4),
    time = stats::rexp(n, 0.05),
    event = stats::rbinom(n, 1, 0.6),
    noise1 = stats::rnorm(n), noise2 = stats::rnorm(n), noise3 = stats::rnorm(n)
  )
  fitted <- fit_survival(churn_request(table, covariates = c("noise1", "noise2", "noise3")))
  expect_lt(abs(fitted$response$concordance - 0.5), 0.06)
  expect_gt(fitted$response$concordance_in_sample, fitted$response$concordance)
})
