valid_body <- function() {
  list(
    data = list(
      user_id = c(1, 2, 3, 4, 5, 6),
      accuracy = c(0.9, 0.8, 0.85, 0.3, 0.35, 0.4),
      active_days = c(5, 6, 5, 1, 2, 1)
    ),
    features = c("accuracy", "active_days"),
    method = "kmeans",
    n_clusters = NULL,
    k_range = c(2, 4),
    seed = 1
  )
}

expect_bad_request <- function(body, pattern) {
  expect_error(parse_cluster_fit_request(body), pattern, class = "http_error_400")
}

test_that("a valid body gives the fit settings", {
  settings <- parse_cluster_fit_request(valid_body())
  expect_equal(dim(settings$x), c(6, 2))
  expect_equal(settings$k_range, c(2L, 4L))
  expect_equal(settings$method, "kmeans")
  expect_null(settings$n_clusters)
  expect_equal(settings$silhouette_sample_size, 2000L)
})

test_that("k_range is capped at n - 1 students", {
  body <- valid_body()
  body$k_range <- c(2, 8)
  expect_equal(parse_cluster_fit_request(body)$k_range, c(2L, 5L))
})

test_that("each bad input is refused naming the field", {
  body <- valid_body()
  body$features <- c("accuracy", "streak")
  expect_bad_request(body, "^features: \"streak\" is not a column of data")

  body <- valid_body()
  body$data$active_days <- c("a", "b", "c", "d", "e", "f")
  expect_bad_request(body, "^data.active_days: values must be numbers")

  body <- valid_body()
  body$data$active_days <- rep(3, 6)
  expect_bad_request(body, "^data.active_days: feature is constant")

  body <- valid_body()
  body$data$accuracy[2] <- NA
  expect_bad_request(body, "^data.accuracy: values must not be null")

  body <- valid_body()
  body$n_clusters <- 7
  expect_bad_request(body, "^n_clusters: 7 is larger than the number of students \\(6\\)")

  body <- valid_body()
  body$n_clusters <- 1
  expect_bad_request(body, "^n_clusters: must be within \\[2")

  body <- valid_body()
  body$k_range <- c(5, 3)
  expect_bad_request(body, "^k_range: must satisfy 2 <= min <= max")

  body <- valid_body()
  body$k_range <- 3
  expect_bad_request(body, "^k_range: must be an array of two whole numbers")

  body <- valid_body()
  body$data <- list(user_id = list(), accuracy = list(), active_days = list())
  expect_bad_request(body, "^data: must contain at least one row")

  body <- valid_body()
  body$method <- "dbscan"
  expect_bad_request(body, "^method: must be one of")

  body <- valid_body()
  body$data$accuracy <- c(0.9, 0.8)
  expect_bad_request(body, "^data: columns must have equal lengths")

  body <- valid_body()
  body$data$user_id[2] <- 1
  expect_bad_request(body, "^data.user_id: one row per student")

  body <- valid_body()
  body$features <- NULL
  expect_bad_request(body, "^features: required field is missing")

  body <- valid_body()
  body$features <- c("user_id", "accuracy")
  expect_bad_request(body, "^features: must not include user_id")

  body <- valid_body()
  body$method <- "pam"
  withr::local_envvar(CLUSTER_PAM_MAX_ROWS = "5")
  expect_bad_request(body, "^method: pam handles at most 5 students")
})

test_that("n_clusters cannot exceed the distinct feature rows", {
  body <- valid_body()
  body$data$accuracy <- c(0.9, 0.9, 0.9, 0.3, 0.3, 0.3)
  body$data$active_days <- c(5, 5, 5, 1, 1, 1)
  body$n_clusters <- 3
  expect_bad_request(body, "^n_clusters: 3 is larger than the number of distinct")
})

test_that("an inline model is checked field by field", {
  model <- list(
    centers = data.frame(segment = 1:2, accuracy = c(0.3, 0.9)),
    scaling = list(center = list(accuracy = 0.6), scale = list(accuracy = 0))
  )
  expect_error(validate_inline_model(model),
    "^model.scaling.scale.accuracy: must be a positive number",
    class = "http_error_400"
  )
  model$scaling$scale$accuracy <- 0.2
  model$centers$accuracy <- NULL
  expect_error(validate_inline_model(model),
    "^model.centers: every centre needs a number for \"accuracy\"",
    class = "http_error_400"
  )
})

test_that("k_range is capped at the distinct feature rows", {
  body <- valid_body()
  body$data$accuracy <- c(0.9, 0.9, 0.9, 0.3, 0.3, 0.5)
  body$data$active_days <- c(5, 5, 5, 1, 1, 2)
  body$k_range <- c(2, 8)
  expect_equal(parse_cluster_fit_request(body)$k_range, c(2L, 3L))
  body$k_range <- c(4, 8)
  expect_bad_request(body, "^k_range: minimum 4 is more than the 3 clusters")
})
