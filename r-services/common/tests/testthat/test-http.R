test_that("/health and /openapi.json are open and describe the service", {
  health <- http_get(echo_service, "/health", token = NULL)
  expect_equal(health$status, 200L)
  expect_equal(health$json$status, "ok")
  expect_equal(health$json$service, "echo-service")
  expect_equal(health$json$workers, 2L)
  # A number, not a one-element array (the Health schema says integer).
  expect_match(health$text, '"workers":2[,}]')
  expect_true(health$json$fixture)

  spec <- http_get(echo_service, "/openapi.json", token = NULL)
  expect_equal(spec$status, 200L)
  expect_true(all(c("/health", "/openapi.json", "/jobs/{job_id}", "/echo/job") %in% names(spec$json$paths)))
  expect_length(spec$json$paths$`/health`$get$security, 0L)
  expect_match(spec$text, '"security":[]', fixed = TRUE)
  expect_equal(
    spec$json$paths$`/echo/job`$post$requestBody$content$`application/json`$schema$`$ref`,
    "#/components/schemas/EchoJobRequest"
  )
  expect_true(all(c("Error", "Job", "JobAccepted", "EchoJobRequest") %in% names(spec$json$components$schemas)))
  expect_equal(spec$json$info$title, "echo-service")
})

test_that("model endpoints need the bearer token", {
  body <- list(data = list(user_id = 1, x = 0.5))
  expect_http_error(http_post(echo_service, "/echo/table", body, token = NULL), 401L, "missing bearer token")
  expect_http_error(http_post(echo_service, "/echo/table", body, token = "wrong"), 401L, "invalid bearer token")
  expect_http_error(
    http_post(echo_service, "/echo/table", body, token = paste0(echo_service$token, "x")),
    401L, "invalid bearer token"
  )
  ok <- http_post(echo_service, "/echo/table", body)
  expect_equal(ok$status, 200L)
  expect_equal(ok$json$data$user_id, 1L)
})

test_that("bad input is a 400 naming the field", {
  post_data <- function(data, ...) http_post(echo_service, "/echo/table", list(data = data, ...))
  expect_http_error(post_data(list(user_id = c(1, 2))), 400L, "data.x: required column is missing")
  expect_http_error(
    post_data(list(user_id = c(1, 2), x = 0.1)), 400L,
    "data: columns must have equal lengths (user_id has 2, x has 1)"
  )
  expect_http_error(
    post_data(list(user_id = c(1, 2, 3), x = c(0.1, 0.2, 1.4))), 400L,
    "data.x: values must be within [0, 1] (row 3 is 1.4)"
  )
  expect_http_error(post_data(list(user_id = 1, x = "a")), 400L, "data.x: values must be numbers (row 1 is \"a\")")
  expect_http_error(
    post_data(list(user_id = c(1, NA), x = c(0.1, 0.2))), 400L,
    "data.user_id: values must not be null (row 2)"
  )
  expect_http_error(
    post_data(list(user_id = 1, x = 0.1, day = "2024-02-30")), 400L,
    "data.day: values must be ISO dates"
  )
  expect_http_error(post_data(list(user_id = list(), x = list())), 400L, "data: must contain at least one row")
  expect_http_error(post_data(list(user_id = 1, x = 0.1), scale = 11), 400L, "scale: must be within [0, 10], got 11")
  expect_http_error(post_data(list(user_id = 1, x = 0.1), scale = "big"), 400L, "scale: must be a single number")
  expect_http_error(http_post(echo_service, "/echo/table", list(other = 1)), 400L, "data: required field is missing")
  row_oriented <- http_post(echo_service, "/echo/table", raw_body = '{"data": [{"user_id": 1, "x": 0.1}]}')
  expect_http_error(row_oriented, 400L, "data: must be column-oriented")
})

test_that("invalid JSON and non-object bodies are 400 naming body", {
  expect_http_error(http_post(echo_service, "/echo/table", raw_body = '{"data": {'), 400L, "body: invalid JSON")
  expect_http_error(http_post(echo_service, "/echo/table", raw_body = "[1, 2]"), 400L, "body: must be a JSON object")
  expect_http_error(http_post(echo_service, "/echo/table", raw_body = ""), 400L, "body: must be a JSON object")
})

test_that("oversized bodies are 413 with a JSON error", {
  big <- list(data = list(user_id = seq_len(1000), x = rep(0.5, 1000)))
  expect_http_error(
    http_post(echo_service, "/echo/table", big), 413L,
    "body: request body exceeds the limit of 4000 bytes"
  )
})

test_that("unknown routes and models are 404 JSON", {
  expect_http_error(http_get(echo_service, "/no/such/route"), 404L, "no route for GET /no/such/route")
  expect_http_error(
    http_post(echo_service, "/echo/load", list(model_id = "echo-20240101T000000-0011")), 404L,
    "model_id: unknown model"
  )
  expect_http_error(
    http_post(echo_service, "/echo/load", list(model_id = "../../../etc/passwd")), 404L,
    "model_id: unknown model"
  )
  expect_http_error(http_post(echo_service, "/echo/load", list(model_id = 3)), 400L, "model_id: must be a string")
})

test_that("worker jobs return values, keep error statuses and hide internals", {
  expect_equal(http_post(echo_service, "/echo/sum", list(data = list(x = c(1, 2, 3.5))))$json, 6.5)
  expect_http_error(
    http_post(echo_service, "/echo/sum", list(data = list(x = c(1, -2)))),
    400L, "data.x: values must be non-negative (raised in a worker)"
  )
  failed <- http_post(echo_service, "/echo/fail", list())
  expect_equal(failed$status, 500L)
  expect_equal(failed$json$error, "internal error")
  expect_match(failed$json$request_id, "^[0-9a-f]{24}$")
  expect_false(grepl("secret internal detail", failed$text, fixed = TRUE))

  stored <- http_post(echo_service, "/echo/store", list(data = list(x = c(4, 5))))
  expect_equal(stored$status, 200L)
  expect_match(stored$json$model_id, "^echo-\\d{8}T\\d{6}-[0-9a-f]{16}$")
  loaded <- http_post(echo_service, "/echo/load", list(model_id = stored$json$model_id))
  expect_equal(loaded$json$values, c(4L, 5L))
  expect_true(file.exists(file.path(echo_service$model_dir, paste0(stored$json$model_id, ".rds"))))
})

test_that("/health answers while a worker job runs", {
  # The job holds its worker until this test releases it, so a /health answer in
  # between proves /health is not queued behind the job; no clock is involved
  # (a /health stuck behind the job fails by its request timeout).
  started <- tempfile("echo-started-")
  release <- tempfile("echo-release-")
  withr::defer(file.create(release)) # never leave the worker held
  body <- jsonlite::toJSON(list(started = started, release = release), auto_unbox = TRUE)
  handle <- curl::new_handle(customrequest = "POST", postfields = as.character(body))
  curl::handle_setheaders(
    handle,
    Authorization = paste("Bearer", echo_service$token), "Content-Type" = "application/json"
  )
  pool <- curl::new_pool()
  held <- NULL
  curl::curl_fetch_multi(
    paste0(echo_service$url, "/echo/wait"),
    done = function(response) held <<- response,
    fail = function(message) stop("/echo/wait failed: ", message),
    pool = pool,
    handle = handle
  )
  deadline <- Sys.time() + 60
  while (!file.exists(started)) {
    if (Sys.time() > deadline) stop("the worker job did not start within 60 s")
    curl::multi_run(timeout = 0.1, pool = pool)
  }

  health <- http_get(echo_service, "/health", token = NULL, timeout_s = 30)
  expect_equal(health$status, 200L)
  expect_null(held) # the job was still holding its worker

  file.create(release)
  curl::multi_run(pool = pool)
  expect_equal(held$status_code, 200L)
  expect_equal(jsonlite::fromJSON(rawToChar(held$content)), "released")
})

test_that("every stdout line is a JSON log record; requests carry status and duration", {
  # Only the records of this test's own requests (one per status), whatever ran before.
  n_before <- length(service_log_records(echo_service))
  http_get(echo_service, "/health", token = NULL)
  http_post(echo_service, "/echo/table", list(other = 1))
  http_post(echo_service, "/echo/table", list(other = 1), token = NULL)
  http_get(echo_service, "/no/such/route")
  http_post(echo_service, "/echo/table", list(data = list(user_id = seq_len(1000), x = rep(0.5, 1000))))
  http_post(echo_service, "/echo/fail", list())
  expected <- c(200L, 400L, 401L, 404L, 413L, 500L)

  # A request's record may be written just after its answer: read until all are there.
  deadline <- Sys.time() + 30
  repeat {
    records <- service_log_records(echo_service)
    requests <- Filter(function(record) identical(record$message, "request"), records[seq_along(records) > n_before])
    statuses <- vapply(requests, function(record) record$status, integer(1))
    if (all(expected %in% statuses) || Sys.time() > deadline) break
    Sys.sleep(0.1)
  }
  expect_false(any(vapply(records, is.null, logical(1))))
  expect_setequal(statuses, expected)
  for (record in requests) {
    fields <- c("timestamp", "service", "method", "path", "status", "duration_ms", "request_id")
    expect_true(all(fields %in% names(record)))
  }
})
