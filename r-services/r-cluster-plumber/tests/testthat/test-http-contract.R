# Contract tests against a real r-cluster-plumber started on a free port.

cluster_service <- start_test_service("r-cluster-plumber")
withr::defer(stop_test_service(cluster_service))

training <- simulate_learners(400, seed = 42)

fit_body <- function(...) {
  utils::modifyList(
    list(
      data = training$data,
      features = learner_features,
      method = "kmeans",
      k_range = c(2, 8),
      seed = 1
    ),
    list(...)
  )
}

post_fit <- function(body) http_fit(cluster_service, "/cluster/fit", body)

test_that("/health is open, model endpoints need the bearer token", {
  health <- http_get(cluster_service, "/health", token = NULL)
  expect_equal(health$status, 200L)
  expect_equal(health$json$service, "r-cluster-plumber")
  expect_equal(health$json$silhouette_sample_size, 2000L)

  for (path in c("/cluster/fit", "/cluster/predict")) {
    missing <- http_post(cluster_service, path, fit_body(), token = NULL)
    expect_equal(missing$status, 401L)
    expect_match(missing$json$error, "authorization")
    wrong <- http_post(cluster_service, path, fit_body(), token = "not-the-token")
    expect_equal(wrong$status, 401L)
    expect_match(wrong$json$error, "authorization")
  }
})

test_that("a bad setting stops the service before it listens", {
  expect_error(
    start_test_service("r-cluster-plumber",
      env = c(CLUSTER_SILHOUETTE_SAMPLE_SIZE = "50000"), timeout_s = 30
    ),
    "CLUSTER_SILHOUETTE_SAMPLE_SIZE must be an integer in \\[10, 5000\\]"
  )
})

test_that("/openapi.json documents both endpoints", {
  spec <- http_get(cluster_service, "/openapi.json", token = NULL)
  expect_equal(spec$status, 200L)
  expect_true(all(c("/cluster/fit", "/cluster/predict") %in% names(spec$json$paths)))
})

test_that("bad fit inputs answer 400 naming the problem", {
  small <- list(
    user_id = c(1, 2, 3, 4),
    accuracy = c(0.9, 0.8, 0.3, 0.2),
    active_days = c(5, 6, 1, 1),
    level = c("a", "b", "a", "b"),
    cohort = c(2, 2, 2, 2),
    time_per_question = c(40, NA, 50, 60)
  )
  base <- list(data = small, features = c("accuracy", "active_days"))
  cases <- list(
    list(body = list(features = c("accuracy", "streak")), error = "^features: \"streak\" is not a column of data"),
    list(
      body = list(features = c("accuracy", "level")),
      error = "^data.level: values must be numbers \\(row 1 is \"a\"\\)"
    ),
    list(body = list(features = c("accuracy", "cohort")), error = "^data.cohort: feature is constant"),
    list(body = list(features = c("time_per_question")), error = "^data.time_per_question: values must not be null"),
    list(body = list(n_clusters = 5), error = "^n_clusters: 5 is larger than the number of students \\(4\\)"),
    list(body = list(n_clusters = 1), error = "^n_clusters: "),
    list(body = list(k_range = c(4, 2)), error = "^k_range: "),
    list(body = list(k_range = "two"), error = "^k_range: "),
    list(body = list(method = "dbscan"), error = "^method: must be one of"),
    list(body = list(data = list(user_id = list(), accuracy = list())), error = "^data: must contain at least one row"),
    list(
      body = list(data = list(user_id = c(1, 2), accuracy = c(0.5, 0.6, 0.7))),
      error = "^data: columns must have equal lengths"
    ),
    list(body = list(data = list(accuracy = c(0.5, 0.6, 0.7))), error = "^data.user_id: required column is missing"),
    list(body = list(seed = "x"), error = "^seed: "),
    # Junk found by fuzzing: once a 500 or a silent fit, now 400s naming the field.
    list(body = list(data = modifyList(small, list(accuracy = c(1e-320, 2e-320, 3e-320, 1e-320)))),
      error = "^data.accuracy: values vary too little to be standardised"),
    list(body = list(data = modifyList(small, list(active_days = c(5, -1e308, 1, 1)))),
      error = "^data.active_days: values must be finite numbers within \\+-1e\\+12 \\(row 2 is -1e\\+308\\)"),
    list(body = list(data = modifyList(small, list(active_days = c(TRUE, FALSE, TRUE, TRUE)))),
      error = "^data.active_days: values must be numbers, not booleans \\(row 1 is true\\)"),
    list(body = list(data = modifyList(small, list(user_id = c(1, 2, 2, 4)))),
      error = "^data.user_id: one row per student, but 2 repeats"),
    list(body = list(k_range = c(2.5, 4)), error = "^k_range: ")
  )
  for (case in cases) {
    body <- base
    body[names(case$body)] <- case$body
    response <- post_fit(body)
    expect_equal(response$status, 400L, label = case$error)
    expect_match(response$json$error, case$error)
  }

  # 1e400 parses as Inf (R's JSON writer cannot send it, so the body is raw).
  overflow <- http_call(cluster_service, "POST", "/cluster/fit",
    raw_body = '{"data": {"user_id": [1, 2, 3], "x": [1, 1e400, 3], "y": [1, 2, 3]}, "features": ["x", "y"]}')
  expect_equal(overflow$status, 400L)
  expect_match(overflow$json$error, "^data.x: values must be finite numbers within \\+-1e\\+12 \\(row 2 is Inf\\)")
  mixed <- http_call(cluster_service, "POST", "/cluster/fit",
    raw_body = '{"data": {"user_id": [1, 2, 3], "x": [1, true, 3], "y": [1, 2, 3]}, "features": ["x", "y"]}')
  expect_equal(mixed$status, 400L)
  expect_match(mixed$json$error, "^data.x: values must all be numbers \\(row 2 is boolean true\\)")

  invalid_json <- http_call(cluster_service, "POST", "/cluster/fit", raw_body = "{not json")
  expect_equal(invalid_json$status, 400L)
  expect_match(invalid_json$json$error, "^body: ")
})

test_that("fit finds the simulated segments and predict reproduces them", {
  fit <- post_fit(fit_body())
  expect_equal(fit$status, 200L)
  result <- fit$json
  expect_equal(result$k, 4L)
  expect_equal(result$method, "kmeans")
  expect_equal(result$k_selection$k, 2:8)
  expect_equal(result$silhouette, max(result$k_selection$silhouette))
  expect_equal(result$assignments$user_id, training$data$user_id)
  expect_gte(adjusted_rand_index(result$assignments$segment, training$truth), 0.9)
  expect_equal(sort(names(result$centers)), sort(c("segment", learner_features)))
  expect_equal(result$sizes, as.vector(table(result$assignments$segment)))
  expect_equal(names(result$scaling$center), learner_features)

  by_id <- http_post(cluster_service, "/cluster/predict", list(
    model_id = result$model_id,
    data = training$data
  ))
  expect_equal(by_id$status, 200L)
  expect_identical(by_id$json$user_id, result$assignments$user_id)
  expect_identical(by_id$json$segment, result$assignments$segment)
  expect_equal(by_id$json$distance, result$assignments$distance, tolerance = 1e-12)

  inline <- http_post(cluster_service, "/cluster/predict", list(
    model = list(centers = result$centers, scaling = result$scaling),
    data = training$data
  ))
  expect_equal(inline$status, 200L)
  expect_identical(inline$json$segment, result$assignments$segment)
  expect_equal(inline$json$distance, result$assignments$distance, tolerance = 1e-9)
})

test_that("a fixed seed gives the same answer, also for shuffled rows", {
  first <- post_fit(fit_body(method = "clara"))$json
  again <- post_fit(fit_body(method = "clara"))$json
  first$model_id <- NULL
  again$model_id <- NULL
  expect_identical(again, first)

  shuffled <- sample(length(training$data$user_id))
  shuffled_data <- lapply(training$data, function(column) column[shuffled])
  reordered <- post_fit(fit_body(method = "clara", data = shuffled_data))$json
  expect_identical(reordered$assignments$segment, first$assignments$segment[shuffled])
  expect_identical(reordered$centers, first$centers)
})

test_that("pam with a fixed n_clusters recovers the segments", {
  fit <- post_fit(fit_body(method = "pam", n_clusters = 4))
  expect_equal(fit$status, 200L)
  expect_equal(fit$json$k, 4L)
  expect_null(fit$json$k_selection)
  expect_gte(adjusted_rand_index(fit$json$assignments$segment, training$truth), 0.9)
})

test_that("predict answers arrays for one student and 400/404 for bad input", {
  fit <- post_fit(fit_body(n_clusters = 3))$json
  one <- list(user_id = "new-student")
  for (feature in learner_features) one[[feature]] <- I(training$data[[feature]][1])
  single <- http_post(cluster_service, "/cluster/predict", list(
    model_id = fit$model_id, data = lapply(one, I)
  ))
  expect_equal(single$status, 200L)
  expect_match(single$text, "\"user_id\":\\[\"new-student\"\\]")
  expect_equal(single$json$segment, fit$assignments$segment[1])

  missing_feature <- http_post(cluster_service, "/cluster/predict", list(
    model_id = fit$model_id, data = list(user_id = I(1), mean_accuracy = I(0.5))
  ))
  expect_equal(missing_feature$status, 400L)
  expect_match(missing_feature$json$error, "^data.accuracy_trend: required column")

  unknown <- http_post(cluster_service, "/cluster/predict", list(
    model_id = "cluster-unknown", data = training$data
  ))
  expect_equal(unknown$status, 404L)
  expect_match(unknown$json$error, "^model_id: unknown model")

  no_model <- http_post(cluster_service, "/cluster/predict", list(data = training$data))
  expect_equal(no_model$status, 400L)
  expect_match(no_model$json$error, "^model_id: ")
})
