# HTTP contract of /prophet/fit and /prophet/predict against a running service.

weekly_body <- function(series_ids = c(11L, 12L), n_weeks = 12, ...) {
  ds <- format(week_dates(n_weeks))
  list(
    series = list(
      series_id = rep(series_ids, each = n_weeks),
      ds = rep(ds, length(series_ids)),
      y = unlist(lapply(seq_along(series_ids), function(i) 10 + i + 0.5 * seq_len(n_weeks) + sin(seq_len(n_weeks))))
    ),
    ...
  )
}

test_that("/health and /openapi.json are open and list the routes", {
  health <- http_get(forecast_service, "/health", token = NULL)
  expect_equal(health$status, 200L)
  expect_equal(health$json$service, "r-forecast-plumber")
  expect_equal(health$json$prophet_cores, 2L)
  spec <- http_get(forecast_service, "/openapi.json", token = NULL)
  expect_equal(spec$status, 200L)
  routes <- c("/prophet/fit", "/prophet/predict", "/survival/fit", "/survival/predict")
  expect_true(all(routes %in% names(spec$json$paths)))
})

test_that("model endpoints need the bearer token", {
  for (path in c("/prophet/fit", "/prophet/predict", "/survival/fit", "/survival/predict")) {
    expect_http_error(http_post(forecast_service, path, weekly_body(), token = NULL), 401L, "missing bearer token")
    expect_http_error(http_post(forecast_service, path, weekly_body(), token = "wrong"), 401L, "invalid bearer token")
  }
})

test_that("a fit returns fits, forecast and anomalies in the contract's shape", {
  response <- http_fit(forecast_service, "/prophet/fit", weekly_body(forecast_weeks = 3, anomaly_threshold = 2.5))
  expect_equal(response$status, 200L, info = response$text)
  body <- response$json
  expect_match(body$model_id, "^prophet-")
  expect_equal(body$fits$series_id, c(11L, 12L))
  expect_true(all(c("params", "changepoints", "sigma", "n_points") %in% names(body$fits)))
  expect_true(all(c("k", "m", "delta", "sigma_obs", "y_scale", "slope_per_week") %in% names(body$fits$params)))
  expect_equal(names(body$forecast), c("series_id", "ds", "yhat", "yhat_lower", "yhat_upper"))
  expect_equal(body$forecast$series_id, rep(c(11L, 12L), each = 3))
  expect_equal(body$forecast$ds[1:3], format(week_dates(15)[13:15]))
  expect_equal(names(body$anomalies), c("series_id", "ds", "y", "yhat", "score", "series", "direction"))
  expect_equal(body$fits$status, c("fitted", "fitted"))
  expect_length(body$failures$series_id, 0)

  predicted <- http_post(
    forecast_service, "/prophet/predict", list(model_id = body$model_id, series_id = I(12L), weeks = 3)
  )
  expect_equal(predicted$status, 200L, info = predicted$text)
  expect_equal(predicted$json$series_id, rep(12L, 3))
  expect_equal(predicted$json$yhat, body$forecast$yhat[4:6])
})

test_that("string series ids keep their type", {
  body <- weekly_body()
  body$series$series_id <- paste0("s", body$series$series_id)
  response <- http_fit(forecast_service, "/prophet/fit", body)
  expect_equal(response$status, 200L, info = response$text)
  expect_equal(unique(response$json$forecast$series_id), c("s11", "s12"))
})

test_that("a batch with broken series still returns the others", {
  # Series 2: only 3 weeks (skipped). Series 3: no activity at all (inactive, no model).
  body <- weekly_body(series_ids = 1L)
  short <- weekly_body(series_ids = 2L, n_weeks = 3)$series
  silent <- weekly_body(series_ids = 3L)$series
  silent$y <- rep(0, 12)
  body$series <- Map(c, body$series, short, silent)
  response <- http_fit(forecast_service, "/prophet/fit", body)
  expect_equal(response$status, 200L, info = response$text)
  expect_equal(response$json$fits$series_id, 1L)
  expect_equal(unique(response$json$forecast$series_id), 1L)
  # Series keep the order of their first row.
  expect_equal(response$json$failures$series_id, c(2L, 3L))
  expect_equal(response$json$failures$status, c("skipped", "inactive"))
  expect_match(response$json$failures$reason[1], "too few points: 3 weeks with activity and a value")
  expect_match(response$json$failures$reason[2], "no activity in any week")
})

# ---- hand-made students (issue 12) -------------------------------------------
# Weekly attempts of a busy student (~100 a week over ~5 active days, i.e. ~6
# sessions of ~17 attempts) and I_t that follows effort. Known truth: a spike
# (x4 attempts) in week 5, a week without any attempt in week 8.
busy_weeks <- function() {
  attempts <- c(96, 104, 110, 92, 400, 101, 99, 0, 105, 95, 98, 103)
  list(
    attempts = attempts,
    days = c(5, 5, 6, 5, 7, 5, 5, 0, 5, 5, 5, 5),
    i_t = ifelse(attempts > 0, 0.6 * 100 * log1p(attempts) / log(201), 0)
  )
}

student_body <- function(students, forecast_weeks = 4, anomaly_threshold = 2.5) {
  ds <- format(week_dates(12))
  list(
    series = list(
      series_id = rep(seq_along(students), each = 12),
      ds = rep(ds, length(students)),
      y = unlist(lapply(students, `[[`, "i_t")),
      activity = unlist(lapply(students, `[[`, "attempts")),
      active_days = unlist(lapply(students, `[[`, "days"))
    ),
    y_min = 0, y_max = 100, forecast_weeks = forecast_weeks, anomaly_threshold = anomaly_threshold
  )
}

flags_of <- function(response, id) {
  anomalies <- as.data.frame(response$json$anomalies)
  anomalies[anomalies$series_id == id, , drop = FALSE]
}

test_that("a known spike and a known dip of activity are flagged with their direction", {
  response <- http_fit(forecast_service, "/prophet/fit", student_body(list(busy_weeks())))
  expect_equal(response$status, 200L, info = response$text)
  expect_equal(names(response$json$anomalies), c("series_id", "ds", "y", "yhat", "score", "series", "direction"))
  flags <- flags_of(response, 1L)
  activity <- flags[flags$series == "activity", ]
  ds <- format(week_dates(12))
  expect_equal(activity$ds, ds[c(5, 8)])
  expect_equal(activity$direction, c("spike", "dip"))
  expect_equal(activity$y, c(400, 0))
  # Expected vs observed: the typical week of the others, about 100 attempts.
  expect_true(all(abs(activity$yhat - 100) < 10))
  expect_true(all(activity$score > 2.5))
  # I_t moves with effort here, so it is no learning-index anomaly.
  expect_false(any(flags$series == "learning_index"))
})

test_that("a zero week is unusual only for a student who rarely has one", {
  # Twice-a-week student (~24 attempts over ~2 days): a week without attempts
  # happens by chance (exp(-2.2) ~ 11% of weeks) and must not be flagged.
  casual <- list(
    attempts = c(25, 22, 0, 30, 19, 27, 24, 0, 21, 26, 23, 28),
    days = c(2, 2, 0, 2, 2, 2, 2, 0, 2, 2, 2, 2)
  )
  casual$i_t <- ifelse(casual$attempts > 0, 0.6 * 100 * log1p(casual$attempts) / log(201), 0)
  response <- http_fit(forecast_service, "/prophet/fit", student_body(list(busy_weeks(), casual)))
  expect_equal(response$status, 200L, info = response$text)
  expect_equal(nrow(flags_of(response, 2L)), 0)
  expect_true(format(week_dates(12)[8]) %in% flags_of(response, 1L)$ds)
})

test_that("zeros after churn give no flags, status inactive and no forecast", {
  churned <- busy_weeks()
  churned$attempts[5] <- 100
  churned$days[5] <- 5
  churned$attempts[8] <- 100
  churned$days[8] <- 5
  churned$attempts[9:12] <- 0
  churned$days[9:12] <- 0
  churned$i_t <- ifelse(churned$attempts > 0, 40, 0)
  response <- http_fit(forecast_service, "/prophet/fit", student_body(list(churned)))
  expect_equal(response$status, 200L, info = response$text)
  expect_equal(response$json$fits$status, "inactive")
  expect_match(response$json$fits$reason, "no activity in the last 2 weeks")
  expect_equal(nrow(flags_of(response, 1L)), 0)
  expect_length(response$json$forecast$series_id, 0)
  predicted <- http_post(
    forecast_service, "/prophet/predict", list(model_id = response$json$model_id, series_id = I(1L))
  )
  expect_http_error(predicted, 400L, "series_id: 1 not in this model")
})

test_that("a constant series gives no flags and no error", {
  constant <- list(attempts = rep(80, 12), days = rep(4, 12), i_t = rep(40, 12))
  response <- http_fit(forecast_service, "/prophet/fit", student_body(list(constant)))
  expect_equal(response$status, 200L, info = response$text)
  expect_equal(response$json$fits$status, "fitted")
  expect_length(response$json$anomalies$series_id, 0)
  # The median forecast sits a little below 40: some chance of a week without
  # attempts (I_t = 0) is always allowed for (a pseudo-count of half a week).
  expect_true(all(abs(response$json$forecast$yhat - 40) < 1))
})

test_that("forecasts stay within [0, y_max] and their bands widen with the horizon", {
  falling <- list(attempts = rep(100, 12), days = rep(5, 12), i_t = 60 - 5 * (0:11) + c(1, -1))
  rising <- list(attempts = rep(100, 12), days = rep(5, 12), i_t = 40 + 5 * (0:11) + c(1, -1))
  steady <- list(attempts = rep(100, 12), days = rep(5, 12), i_t = 50 + 0.5 * (0:11) + c(3, -3))
  response <- http_fit(
    forecast_service, "/prophet/fit", student_body(list(falling, rising, steady), forecast_weeks = 12)
  )
  expect_equal(response$status, 200L, info = response$text)
  forecast <- as.data.frame(response$json$forecast)
  # A straight line would reach -55 and +155 twelve weeks out.
  expect_true(all(forecast$yhat_lower >= 0 & forecast$yhat <= 100 & forecast$yhat_upper <= 100))
  expect_true(all(forecast$yhat_lower <= forecast$yhat & forecast$yhat <= forecast$yhat_upper))
  # The falling student keeps falling, to 0 and no further; the rising one to 100.
  expect_true(all(diff(forecast$yhat[forecast$series_id == 1]) <= 0))
  expect_true(all(diff(forecast$yhat[forecast$series_id == 2]) >= 0))
  expect_equal(forecast$yhat[forecast$series_id == 1][12], 0)
  expect_equal(forecast$yhat[forecast$series_id == 2][12], 100)
  width <- with(forecast[forecast$series_id == 3, ], yhat_upper - yhat_lower)
  expect_true(all(diff(width) > 0))
})

test_that("bad prophet inputs are 400s naming the field", {
  post_fit <- function(body) http_fit(forecast_service, "/prophet/fit", body)
  bad_dates <- weekly_body()
  bad_dates$series$ds[5] <- "2026-02-30"
  expect_http_error(post_fit(bad_dates), 400L, "series.ds: values must be ISO dates YYYY-MM-DD (row 5")
  not_a_date <- weekly_body()
  not_a_date$series$ds[2] <- "next monday"
  expect_http_error(post_fit(not_a_date), 400L, "series.ds: values must be ISO dates")
  unequal <- weekly_body()
  unequal$series$y <- unequal$series$y[-1]
  expect_http_error(post_fit(unequal), 400L, "series: columns must have equal lengths")
  non_numeric <- weekly_body()
  non_numeric$series$y[3] <- "high"
  expect_http_error(post_fit(non_numeric), 400L, "series.y: values must be numbers (row 3 is \"high\")")
  expect_http_error(post_fit(weekly_body(forecast_weeks = -1)), 400L, "forecast_weeks: must be within [0, 104], got -1")
  expect_http_error(post_fit(weekly_body(forecast_weeks = 2.5)), 400L, "forecast_weeks: must be a whole number")
  expect_http_error(post_fit(weekly_body(anomaly_threshold = 0)), 400L, "anomaly_threshold: must be greater than 0")
  expect_http_error(
    post_fit(list(series = list(series_id = list(), ds = list(), y = list()))),
    400L, "series: must contain at least one row"
  )
  expect_http_error(post_fit(list(forecast_weeks = 4)), 400L, "series: required field is missing")
  not_weekly <- weekly_body()
  not_weekly$series$ds[3] <- format(as.Date(not_weekly$series$ds[3]) + 2)
  expect_http_error(
    post_fit(not_weekly), 400L,
    "series.ds: dates must be weekly (the same weekday within a series); series 11 has 2026-01-21 (row 3)"
  )
  duplicate_week <- weekly_body()
  duplicate_week$series$ds[14] <- duplicate_week$series$ds[13]
  expect_http_error(
    post_fit(duplicate_week), 400L, "series.ds: series 12 has the week 2026-01-05 more than once (row 14)"
  )
  nan_y <- weekly_body()
  nan_y$series$y <- as.list(nan_y$series$y)
  nan_y$series$y[[3]] <- "NaN"
  # JSON has no NaN: a client's "NaN" arrives as a string, refused by the shared validator.
  expect_http_error(post_fit(nan_y), 400L, "series.y: values must all be numbers (row 3 is string \"NaN\")")
  nan_activity <- student_body(list(busy_weeks()))
  nan_activity$series$activity <- as.list(nan_activity$series$activity)
  nan_activity$series$activity[[2]] <- "NaN"
  expect_http_error(
    post_fit(nan_activity), 400L, "series.activity: values must all be numbers (row 2 is string \"NaN\")"
  )
  negative <- student_body(list(busy_weeks()))
  negative$series$activity[4] <- -1
  expect_http_error(post_fit(negative), 400L, "series.activity: values must be within [0, Inf] (row 4 is -1)")
  above_range <- student_body(list(busy_weeks()))
  above_range$series$y[6] <- 101
  expect_http_error(post_fit(above_range), 400L, "series.y: values must be within [0, 100] (row 6 is 101)")
  expect_http_error(post_fit(weekly_body(y_max = -1)), 400L, "y_max: must be")
  days_alone <- weekly_body()
  days_alone$series$active_days <- rep(1, 24)
  expect_http_error(post_fit(days_alone), 400L, "series.active_days: needs series.activity")
  negative_se <- weekly_body()
  negative_se$series$y_se <- c(rep(2, 6), -0.5, rep(2, 17))
  expect_http_error(post_fit(negative_se), 400L, "series.y_se: values must be within [0, Inf] (row 7 is -0.5)")
  expect_http_error(
    post_fit(weekly_body(activity_saturation = 0)), 400L, "activity_saturation: must be greater than 0, got 0"
  )
  missing_id <- weekly_body()
  missing_id$series$series_id[4] <- NA
  expect_http_error(post_fit(missing_id), 400L, "series.series_id: values must not be null (row 4)")
})

test_that("prophet predict: unknown model is 404, unknown series and bad weeks are 400", {
  fitted <- http_fit(forecast_service, "/prophet/fit", weekly_body())$json
  post_predict <- function(body) http_post(forecast_service, "/prophet/predict", body)
  expect_http_error(
    post_predict(list(model_id = "prophet-20240101T000000-0123456789abcdef", series_id = I(11L))),
    404L, "model_id: unknown model"
  )
  expect_http_error(
    post_predict(list(model_id = fitted$model_id, series_id = c(11L, 99L))), 400L, "series_id: 99 not in this model"
  )
  expect_http_error(
    post_predict(list(model_id = fitted$model_id, series_id = I(11L), weeks = -2)),
    400L, "weeks: must be within [0, 104]"
  )
  expect_http_error(post_predict(list(model_id = fitted$model_id)), 400L, "series_id: required field is missing")
  expect_http_error(post_predict(list(series_id = I(11L))), 400L, "model_id: required field is missing")
})
