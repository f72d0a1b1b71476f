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
  expect_true(all(c("/prophet/fit", "/prophet/predict", "/survival/fit", "/survival/predict") %in% names(spec$json$paths)))
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
  expect_equal(names(body$anomalies), c("series_id", "ds", "y", "yhat", "score"))
  expect_length(body$failures$series_id, 0)

  predicted <- http_post(forecast_service, "/prophet/predict", list(model_id = body$model_id, series_id = I(12L), weeks = 3))
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
  # Series 2: only 3 weeks (skipped). Series 3: a repeated week (fails).
  body <- weekly_body(series_ids = c(1L, 3L))
  body$series$ds[14] <- body$series$ds[13]
  short <- weekly_body(series_ids = 2L, n_weeks = 3)$series
  body$series <- Map(c, body$series, short)
  response <- http_fit(forecast_service, "/prophet/fit", body)
  expect_equal(response$status, 200L, info = response$text)
  expect_equal(response$json$fits$series_id, 1L)
  expect_equal(unique(response$json$forecast$series_id), 1L)
  # Series keep the order of their first row.
  expect_equal(response$json$failures$series_id, c(3L, 2L))
  expect_equal(response$json$failures$status, c("failed", "skipped"))
  expect_match(response$json$failures$reason[1], "duplicate ds: 2026-01-05")
  expect_match(response$json$failures$reason[2], "too few points: 3 non-missing weekly values")
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
  expect_http_error(post_fit(list(series = list(series_id = list(), ds = list(), y = list()))), 400L, "series: must contain at least one row")
  expect_http_error(post_fit(list(forecast_weeks = 4)), 400L, "series: required field is missing")
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
  expect_http_error(post_predict(list(model_id = fitted$model_id, series_id = c(11L, 99L))), 400L, "series_id: 99 not in this model")
  expect_http_error(post_predict(list(model_id = fitted$model_id, series_id = I(11L), weeks = -2)), 400L, "weeks: must be within [0, 104]")
  expect_http_error(post_predict(list(model_id = fitted$model_id)), 400L, "series_id: required field is missing")
  expect_http_error(post_predict(list(series_id = I(11L))), 400L, "model_id: required field is missing")
})
