# Model-level checks of the prophet batch fitter (no HTTP).

# The simulated series are I_t-like (level ~50): range [0, 100].
fit_series <- function(series, forecast_weeks = 4, anomaly_threshold = 2.5, cores = 2, activity_saturation = NULL) {
  request <- parse_prophet_fit_request(list(
    series = series, forecast_weeks = forecast_weeks, anomaly_threshold = anomaly_threshold, y_max = 100,
    activity_saturation = activity_saturation
  ))
  fit_prophet_batch(request, utils::modifyList(prophet_settings(), list(cores = cores)))
}

test_that("injected anomalous weeks are found with high recall and precision at threshold 2.5", {
  # 60 series x 12 weeks, 20 of them with one week shifted by 6 noise sds.
  # Bars: recall >= 0.85 and precision >= 0.5. Why: a 6-sd jump scores about
  # 6 against a correct sigma, far above 2.5, so nearly all must be found.
  # Precision is bounded by the noise itself: a clean normal week exceeds
  # 2.5 sd with probability 1.24%, i.e. ~8.7 of the 700 clean weeks, so even
  # the true sigma gives precision about 20 / (20 + 8.7) = 0.70. Over seeds
  # 11-18 the method gave recall 0.90-1.00 (mean 0.96) and precision
  # 0.59-0.76 (mean 0.69), i.e. at that bound. The bars fail the weaker
  # variants tried: a laxer outlier screen (jumps left in, sigma inflated) had
  # recall down to 0.65, one-pass scoring against the MAD of 12 residuals had
  # precision down to 0.38.
  simulated <- simulate_weekly_series(n_series = 60, n_anomalies = 20, seed = 11)
  result <- fit_series(simulated$series)
  expect_length(result$fits, 60)
  found <- paste(result$anomalies$series_id, result$anomalies$ds)
  truth <- paste(simulated$truth$series_id, simulated$truth$ds)
  recall <- mean(truth %in% found)
  precision <- mean(found %in% truth)
  expect_gte(recall, 0.85)
  expect_gte(precision, 0.5)
  expect_true(all(result$anomalies$score > 2.5))
})

test_that("the forecast of a series with a clear linear trend continues the trend", {
  set.seed(3)
  true_slope <- 1.5
  ds <- week_dates(12)
  y <- 20 + true_slope * (0:11) + stats::rnorm(12, 0, 1)
  result <- fit_series(list(series_id = rep(7L, 12), ds = format(ds), y = y), forecast_weeks = 4)
  forecast <- result$forecast
  expect_equal(forecast$ds, format(ds[12] + 7L * 1:4))
  forecast_slope <- unname(stats::coef(stats::lm(forecast$yhat ~ seq_along(forecast$yhat)))[2])
  expect_lt(abs(forecast_slope - true_slope) / true_slope, 0.3)
  # The level too: week 13 of the true line is 20 + 1.5 * 12 = 38.
  expect_lt(abs(forecast$yhat[1] - 38), 2)
  # The band (80% by default) widens with the horizon: the trend's own uncertainty.
  expect_true(all(diff(forecast$yhat_upper - forecast$yhat_lower) > 0))
})

test_that("constant and near-constant series get a finite sigma and no false anomalies", {
  ds <- format(week_dates(12))
  series <- list(
    series_id = rep(c("flat", "zero", "almost"), each = 12),
    ds = rep(ds, 3),
    y = c(rep(5, 12), rep(0, 12), 5 + rep(c(1e-9, -1e-9), 6))
  )
  result <- fit_series(series)
  sigmas <- vapply(result$fits, `[[`, numeric(1), "sigma")
  expect_true(all(is.finite(sigmas) & sigmas > 0))
  expect_length(result$anomalies$series_id, 0)
  expect_true(all(is.finite(result$forecast$yhat)))

  # A real jump away from a flat line is still an anomaly.
  jumped <- list(series_id = rep(1L, 12), ds = ds, y = c(rep(5, 6), 9, rep(5, 5)))
  spike <- fit_series(jumped)$anomalies
  expect_equal(spike$ds, ds[7])
})

test_that("series with too few points are skipped with a reason, keeping the type of series_id", {
  ds <- format(week_dates(12))
  series <- list(
    series_id = c(rep(1L, 12), rep(2L, 3), rep(3L, 12)),
    ds = c(ds, ds[1:3], ds),
    y = c(1:12, 1:3, c(1:6, NA, NA, NA, NA, NA, NA) + 0.5)
  )
  result <- fit_series(series, cores = 1)
  expect_identical(vapply(result$fits, `[[`, integer(1), "series_id"), c(1L, 3L))
  expect_identical(result$failures$series_id, 2L)
  expect_identical(result$failures$status, "skipped")
  expect_match(result$failures$reason, "too few points: 3 weeks with activity and a value, at least 4 needed")
  # Missing weeks do not count as points and do not get scores.
  expect_equal(result$fits[[2]]$n_points, 6)
})

test_that("one and two cores give the same fits", {
  simulated <- simulate_weekly_series(n_series = 6, n_anomalies = 2, seed = 5)
  one <- fit_series(simulated$series, cores = 1)
  two <- fit_series(simulated$series, cores = 2)
  expect_equal(one$forecast, two$forecast)
  expect_equal(one$anomalies, two$anomalies)
})

test_that("stored series forecast the same as the fit; unknown series are 400s naming them", {
  simulated <- simulate_weekly_series(n_series = 3, n_anomalies = 0, seed = 2)
  result <- fit_series(simulated$series, forecast_weeks = 3)
  stored <- forecast_stored_series(result$models, c(1002L, 1001L), 3)
  expect_identical(stored$series_id, rep(c(1002L, 1001L), each = 3))
  from_fit <- result$forecast$yhat[result$forecast$series_id == 1002L]
  expect_equal(stored$yhat[1:3], from_fit)
  error <- tryCatch(forecast_stored_series(result$models, 99L, 3), http_error = identity)
  expect_equal(error$status, 400L)
  expect_match(conditionMessage(error), "series_id: 99 not in this model")
})

test_that("the lean fit equals prophet's own fit and predict", {
  set.seed(8)
  ds <- week_dates(12)
  history <- data.frame(ds = ds, y = 30 + c(1:6, 12:7) + stats::rnorm(12), effort = log1p(stats::rpois(12, 80)))
  future <- c(ds, week_dates(4, first = ds[12] + 7))
  cases <- list(list("linear", 0, FALSE), list("linear", 3, FALSE), list("flat", 0, FALSE), list("linear", 0, TRUE))
  for (case in cases) {
    growth <- case[[1]]
    n_changepoints <- case[[2]]
    with_effort <- case[[3]]
    model <- prophet::prophet(
      growth = growth, n.changepoints = n_changepoints, yearly.seasonality = FALSE, weekly.seasonality = FALSE,
      daily.seasonality = FALSE, uncertainty.samples = 0, fit = FALSE
    )
    if (with_effort) model <- prophet::add_regressor(model, "effort")
    model <- suppressMessages(prophet::fit.prophet(model, history))
    lean <- fit_prophet_map(ds, history$y, growth, n_changepoints, 0.05, if (with_effort) history$effort)
    expect_equal(lean$params$k, model$params$k, tolerance = 1e-5)
    expect_equal(lean$params$m, model$params$m, tolerance = 1e-5)
    # Prophet predicts the regressor at the values given; the history's are used.
    future_frame <- data.frame(ds = future, effort = c(history$effort, rep(mean(history$effort), 4)))
    expected <- stats::predict(model, future_frame)$yhat
    effort <- if (with_effort) future_frame$effort else NULL
    expect_equal(predict_prophet_yhat(lean, future, effort), expected, tolerance = 1e-4, info = paste(case))
  }
})

test_that("malformed PROPHET_* settings are rejected", {
  expect_error(prophet_settings(c(PROPHET_CORES = "0")), "PROPHET_CORES must be an integer in [1, Inf]", fixed = TRUE)
  expect_error(prophet_settings(c(PROPHET_GROWTH = "logistic")), "PROPHET_GROWTH must be one of linear, flat")
  expect_error(prophet_settings(c(PROPHET_INTERVAL_WIDTH = "1.5")), "PROPHET_INTERVAL_WIDTH")
  expect_error(prophet_settings(c(PROPHET_MIN_POINTS = "many")), "PROPHET_MIN_POINTS")
  expect_equal(prophet_settings(c(PROPHET_CORES = "1", PROPHET_MIN_POINTS = ""))$cores, 1L)
  expect_equal(prophet_settings(c(PROPHET_MIN_POINTS = ""))$min_points, 4L)
})

# Students of the sessions model (SPEC's synthetic learners): sessions ~
# Poisson(rate x factor) a week, 1 + Poisson(size - 1) attempts a session,
# sessions on random days. `factor` multiplies the rate of one week (1: none).
simulate_activity <- function(n_students, factor = 1, n_weeks = 12, seed = 5) {
  set.seed(seed)
  lapply(seq_len(n_students), function(i) {
    rate <- stats::runif(1, 2, 7)
    week <- sample.int(n_weeks, 1)
    rates <- rep(rate, n_weeks)
    rates[week] <- rate * factor
    sessions <- stats::rpois(n_weeks, rates)
    size <- stats::runif(1, 10, 30)
    list(
      rate = rate, week = week,
      attempts = vapply(sessions, function(s) sum(1 + stats::rpois(s, size - 1)), numeric(1)),
      days = vapply(sessions, function(s) length(unique(sample.int(7, s, replace = TRUE))), numeric(1))
    )
  })
}

# Activity score of every week up to each student's last active week.
score_activity <- function(students,
                           score = function(s) activity_scores(s$attempts, s$days, prophet_settings())$score) {
  lapply(students, function(s) {
    scored <- seq_len(max(which(s$attempts > 0)))
    score(list(attempts = s$attempts[scored], days = s$days[scored]))
  })
}

test_that("activity scores keep the threshold's meaning: few ordinary weeks flagged, strong spikes found", {
  # Calibration bar: the score is the z of a tail probability of the week
  # under the student's own noise, so at threshold 2.5 at most 2 Phi(-2.5) =
  # 1.24% of ordinary weeks may score above it (with the mid-p tail 1.2-1.45%
  # over seeds 5-10: the attempts' spread around sessions x attempts per
  # session is not in the test; the whole-count tail gave 0.7-0.8%), plus 3
  # binomial sds of 3,600 weeks (0.56%): bar 1.8%.
  ordinary <- unlist(score_activity(simulate_activity(300)))
  expect_lte(mean(ordinary > 2.5, na.rm = TRUE), 2 * stats::pnorm(-2.5) + 3 * sqrt(0.0124 / 3600))
  # Negative control: attempts taken as Poisson counts around the mean of the
  # other weeks (ignoring that attempts come in sessions) flags about half of
  # the ordinary weeks.
  poisson_attempts <- function(s) {
    vapply(seq_along(s$attempts), function(w) {
      mu <- mean(s$attempts[-w])
      tail <- if (s$attempts[w] > mu) {
        stats::ppois(s$attempts[w] - 1, mu, lower.tail = FALSE)
      } else {
        stats::ppois(s$attempts[w], mu)
      }
      stats::qnorm(tail, lower.tail = FALSE)
    }, numeric(1))
  }
  expect_gt(mean(unlist(score_activity(simulate_activity(300), poisson_attempts)) > 2.5), 0.2)

  # Power bar: a week of 3.5x the sessions of a student at >= 5 a week
  # expects >= 17.5 sessions, where the student's own weeks exceed 12 with
  # probability 0.2% (< Phi(-2.5) = 0.6%): at least 80% of them must score
  # above 2.5 (0.90-0.98 over seeds 6-10).
  spiked <- Filter(function(s) s$rate >= 5, simulate_activity(200, factor = 3.5, seed = 6))
  spike_scores <- mapply(function(s, scores) scores[s$week], spiked, score_activity(spiked))
  expect_gte(mean(spike_scores > 2.5), 0.8)
  # Negative control: a score that never flags passes the calibration bar
  # but not this one.
  never <- function(s) rep(0, length(s$attempts))
  expect_lt(mean(mapply(function(s, scores) scores[s$week], spiked, score_activity(spiked, never)) > 2.5), 0.8)
})

test_that("learning_index weeks are judged against their own sampling error when y_se is sent", {
  # I_t's accuracy is measured from the week's attempts: a week of a dozen
  # attempts is much noisier than one of 150, which one residual sigma per
  # student ignores. With y_se each week gets its own yardstick (times the
  # dispersion of the other weeks, at least 1). Seed 1, 300 students x 12
  # weeks without anomalies, and 200 with the accuracy of their busiest week
  # moved by 0.25 in 100 of them: ordinary weeks flagged 0.14% with y_se vs
  # 0.66% without; moved weeks found 0.60 vs 0.46 (seeds 1-4: 0.09-0.32% vs
  # 0.66-0.95%, 0.51-0.74 vs 0.35-0.50). Bars: calibration (at most 2
  # Phi(-2.5) = 1.24% of ordinary weeks), and better than the same fit without
  # y_se on both counts (the negative control).
  learning_index_flags <- function(series) {
    anomalies <- as.data.frame(fit_series(series, forecast_weeks = 0, activity_saturation = 200)$anomalies)
    anomalies <- anomalies[anomalies$series == "learning_index", ]
    paste(anomalies$series_id, anomalies$ds)
  }
  without_se <- function(series) utils::modifyList(series, list(y_se = NULL))

  ordinary <- simulate_learning_index(300, seed = 1)$series
  n_active <- sum(ordinary$activity > 0)
  false_share <- length(learning_index_flags(ordinary)) / n_active
  expect_lte(false_share, 2 * stats::pnorm(-2.5))
  expect_lte(false_share, 0.5 * length(learning_index_flags(without_se(ordinary))) / n_active)

  moved <- simulate_learning_index(200, shifted = 100, seed = 1)
  truth <- paste(moved$truth$series_id, moved$truth$ds)
  recall <- mean(truth %in% learning_index_flags(moved$series))
  expect_gte(recall, mean(truth %in% learning_index_flags(without_se(moved$series))) + 0.1)
})
