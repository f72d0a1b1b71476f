small <- simulate_learners(12, 5, seed = 3)

test_that("/health is open; growth endpoints need the token", {
  health <- http_get(brms_service, "/health", token = NULL)
  expect_equal(health$status, 200L)
  expect_equal(health$json$service, "r-brms-plumber")
  expect_equal(health$json$status, "ok")

  body <- list(data = small$data)
  expect_equal(http_fit(brms_service, "/growth/fit", body, token = NULL)$status, 401L)
  expect_equal(http_fit(brms_service, "/growth/fit", body, token = "wrong")$status, 401L)
  expect_equal(http_post(brms_service, "/growth/predict", list(), token = NULL)$status, 401L)
  expect_match(http_fit(brms_service, "/growth/fit", body, token = "wrong")$json$error, "invalid bearer token")
  expect_equal(http_get(brms_service, "/openapi.json", token = NULL)$status, 200L)
})

test_that("bad fit requests are 400 naming the problem", {
  fit_with <- function(data = small$data, ...) http_fit(brms_service, "/growth/fit", list(data = data, ...))
  jobs_before <- job_files(brms_service)
  without_accuracy <- small$data[c("user_id", "week")]
  expect_http_error(fit_with(without_accuracy), 400L, "data.accuracy: required column is missing")
  unequal <- small$data
  unequal$week <- unequal$week[-1]
  expect_http_error(fit_with(unequal), 400L, "data: columns must have equal lengths")
  out_of_range <- small$data
  out_of_range$accuracy[4] <- 1.4
  expect_http_error(fit_with(out_of_range), 400L, "data.accuracy: values must be within [0, 1] (row 4 is 1.4)")
  expect_http_error(fit_with(family = "poisson"), 400L, "family: must be one of \"gaussian\", \"binomial\"")
  empty <- list(user_id = list(), week = list(), accuracy = list())
  expect_http_error(fit_with(empty), 400L, "data: must contain at least one row")
  expect_http_error(fit_with(iter = 10), 400L, "iter: must be within [100, 20000], got 10")
  expect_http_error(fit_with(chains = 0), 400L, "chains: must be within [1, 8], got 0")
  expect_http_error(fit_with(adapt_delta = 1.5), 400L, "adapt_delta: must be within")
  expect_http_error(
    http_fit(brms_service, "/growth/fit", list(family = "gaussian")), 400L, "data: required field is missing"
  )
  expect_http_error(
    fit_with(family = "binomial", small$data[c("user_id", "week", "n_attempts")]),
    400L, "data.n_correct: required column is missing"
  )
  too_many_correct <- small$data
  too_many_correct$n_correct[2] <- too_many_correct$n_attempts[2] + 1L
  expect_http_error(
    fit_with(too_many_correct, family = "binomial"), 400L, "data.n_correct: values must not exceed n_attempts (row 2"
  )
  two_users <- list(user_id = c(1, 1, 2, 2), week = c(0, 1, 0, 1), accuracy = c(0.5, 0.6, 0.4, 0.5))
  expect_http_error(fit_with(two_users), 400L, "data: too little data to fit a growth model")
  expect_http_error(http_fit(brms_service, "/growth/fit", raw_body = "{\"data\": "), 400L, "body: invalid JSON")
  # Junk found by fuzzing, once fitted with a 200.
  repeated_week <- small$data
  repeated_week$week[2] <- repeated_week$week[1]
  expect_http_error(
    fit_with(repeated_week), 400L, "data: rows must be unique on (user_id, week); row 2 repeats user_id"
  )
  booleans <- small$data
  booleans$accuracy <- booleans$accuracy > 0.5
  expect_http_error(fit_with(booleans), 400L, "data.accuracy: values must be numbers, not booleans (row 1 is")
  mixed <- http_post(
    brms_service, "/growth/fit",
    raw_body = '{"data": {"user_id": [1, 2], "week": [0, true], "accuracy": [0.5, 0.5]}}'
  )
  expect_http_error(mixed, 400L, "data.week: values must all be numbers (row 2 is boolean true)")
  huge <- http_post(
    brms_service, "/growth/fit",
    raw_body = '{"data": {"user_id": [1, 2], "week": [0, 1], "accuracy": [0.5, 1e308]}}'
  )
  expect_http_error(huge, 400L, "data.accuracy: values must be finite numbers within +-1e+12 (row 2 is 1e+308)")
  expect_equal(job_files(brms_service), jobs_before, info = "no 400 ever became a job")
})

test_that("bad predict requests are 400/404 naming the problem", {
  expect_http_error(
    http_post(brms_service, "/growth/predict", list(data = list(user_id = 1, week = 1, goal = 0.5))),
    400L, "model_id: required field is missing"
  )
  unknown <- http_post(brms_service, "/growth/predict", list(
    model_id = "growth-20240101T000000-0123456789abcdef",
    data = list(user_id = I(1), week = I(1), goal = I(0.5))
  ))
  expect_http_error(unknown, 404L, "model_id: unknown model")
})
