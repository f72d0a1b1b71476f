# HTTP contract of /survival/fit and /survival/predict against a running service.

churn_body <- function(n = 200, seed = 9, ...) {
  list(data = simulate_churn(n = n, seed = seed), covariates = c("accuracy", "sessions", "gap_days"), ...)
}

test_that("fit returns the contract's fields and predict reproduces the fit's risk", {
  body <- churn_body(horizon_days = 14)
  fitted <- http_fit(forecast_service, "/survival/fit", body)
  expect_equal(fitted$status, 200L, info = fitted$text)
  json <- fitted$json
  expect_match(json$model_id, "^survival-")
  expect_equal(names(json$coefficients), c("term", "coef", "hazard_ratio", "se", "p_value"))
  expect_equal(json$coefficients$term, c("accuracy", "sessions", "gap_days"))
  expect_equal(json$n, 200L)
  expect_equal(json$n_events, sum(body$data$event))
  expect_gt(json$concordance, 0.5) # held out (5-fold by user_id)
  expect_gte(json$concordance_in_sample, json$concordance - 0.05)
  expect_equal(json$ph_test$term, c("accuracy", "sessions", "gap_days", "GLOBAL"))
  expect_equal(names(json$risk), c("user_id", "risk_score", "p_event"))
  expect_equal(json$risk$user_id, body$data$user_id)

  scored <- http_post(forecast_service, "/survival/predict", list(
    model_id = json$model_id,
    data = subset_table(body$data[c("user_id", "accuracy", "sessions", "gap_days")], 1:50),
    horizon_days = 14
  ))
  expect_equal(scored$status, 200L, info = scored$text)
  expect_equal(scored$json$user_id, 1:50)
  expect_equal(scored$json$risk_score, json$risk$risk_score[1:50], tolerance = 1e-12)
  expect_equal(scored$json$p_event, json$risk$p_event[1:50], tolerance = 1e-12)

  # A longer horizon can only raise the probability of churn.
  longer <- http_post(
    forecast_service, "/survival/predict", list(model_id = json$model_id, data = body$data, horizon_days = 28)
  )
  expect_true(all(longer$json$p_event >= json$risk$p_event))
})

test_that("one student predicts as an array", {
  fitted <- http_fit(forecast_service, "/survival/fit", churn_body())$json
  one <- list(user_id = I(5L), accuracy = I(0.2), sessions = I(-1), gap_days = I(3))
  scored <- http_post(forecast_service, "/survival/predict", list(model_id = fitted$model_id, data = one))
  expect_equal(scored$status, 200L, info = scored$text)
  expect_match(scored$text, '"user_id":[5]', fixed = TRUE)
})

test_that("bad survival inputs are 400s naming the problem", {
  post_fit <- function(body) http_fit(forecast_service, "/survival/fit", body)
  negative <- churn_body()
  negative$data$time[3] <- -1
  expect_http_error(post_fit(negative), 400L, "data.time: values must be within [0, Inf] (row 3 is -1)")
  bad_event <- churn_body()
  bad_event$data$event[4] <- 2
  expect_http_error(post_fit(bad_event), 400L, "data.event: values must be one of 0, 1 (row 4 is 2)")
  unknown <- churn_body()
  unknown$covariates <- c("accuracy", "streak")
  expect_http_error(post_fit(unknown), 400L, "covariates: \"streak\" is not a column of data")
  censored <- churn_body()
  censored$data$event[] <- 0L
  expect_http_error(post_fit(censored), 400L, "data.event: all rows are censored")
  constant <- churn_body()
  constant$data$sessions[] <- 3
  expect_http_error(post_fit(constant), 400L, "data.sessions: covariate is constant")
  missing_value <- churn_body()
  missing_value$data$accuracy[7] <- NA
  expect_http_error(post_fit(missing_value), 400L, "data.accuracy: values must not be null (row 7)")
  text_value <- churn_body()
  text_value$data$gap_days[2] <- "long"
  expect_http_error(post_fit(text_value), 400L, "data.gap_days: values must be numbers (row 2 is \"long\")")
  expect_http_error(post_fit(churn_body(horizon_days = 0)), 400L, "horizon_days: must be greater than 0")
  empty <- list(
    data = list(user_id = list(), time = list(), event = list(), accuracy = list()), covariates = "accuracy"
  )
  expect_http_error(post_fit(empty), 400L, "data: must contain at least one row")
  expect_http_error(post_fit(list(data = churn_body()$data)), 400L, "covariates: required field is missing")
  overflow <- http_post(forecast_service, "/survival/fit", raw_body = paste0(
    '{"data": {"user_id": [1, 2, 3], "time": [1, 2, 3], "event": [1, 0, 1], "x": [0.1, 1e400, 0.3]},',
    ' "covariates": ["x"]}'
  ))
  expect_http_error(overflow, 400L, "data.x: values must be finite numbers within +-1e+12 (row 2 is Inf)")
  boolean_time <- http_post(forecast_service, "/survival/fit", raw_body = paste0(
    '{"data": {"user_id": [1, 2, 3], "time": [true, false, true], "event": [1, 0, 1], "x": [0.1, 0.2, 0.3]},',
    ' "covariates": ["x"]}'
  ))
  expect_http_error(boolean_time, 400L, "data.time: values must be numbers, not booleans (row 1 is true)")
  expect_http_error(
    post_fit(churn_body(monotone = c("days_idle"))), 400L, "monotone: \"days_idle\" is not one of the covariates"
  )

  fitted <- http_fit(forecast_service, "/survival/fit", churn_body())$json
  post_predict <- function(body) http_post(forecast_service, "/survival/predict", body)
  expect_http_error(
    post_predict(list(model_id = fitted$model_id, data = list(user_id = c(1, 2), accuracy = c(0, 1)))),
    400L, "covariates: \"sessions\" is not a column of data"
  )
  expect_http_error(
    post_predict(list(model_id = "survival-20240101T000000-0123456789abcdef", data = list(user_id = I(1)))),
    404L, "model_id: unknown model"
  )
  duplicated_user <- churn_body()$data
  duplicated_user$user_id[2] <- 1L
  expect_http_error(
    post_predict(list(model_id = fitted$model_id, data = duplicated_user)), 400L, "data.user_id: values must be unique"
  )
  expect_http_error(
    post_predict(list(model_id = fitted$model_id, data = churn_body()$data, horizon_days = -3)),
    400L, "horizon_days: must be greater than 0"
  )
})
