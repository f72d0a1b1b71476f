source(file.path("..", "..", "..", "common", "testing.R"))

# Simulated learners: per-user intercept ~ N(0.55, intercept_sd), slope ~
# N(slope_mean, slope_sd), weekly noise N(0, noise_sd), accuracy clipped to
# [0, 1]; binomial counts drawn from the accuracy.
simulate_learners <- function(n_users, n_weeks, seed = 1, intercept_sd = 0.1, slope_mean = 0.02,
                              slope_sd = 0.01, noise_sd = 0.05) {
  set.seed(seed)
  intercept <- rnorm(n_users, 0.55, intercept_sd)
  slope <- rnorm(n_users, slope_mean, slope_sd)
  rows <- expand.grid(week = seq_len(n_weeks) - 1L, user = seq_len(n_users))
  accuracy <- pmin(1, pmax(0, intercept[rows$user] + slope[rows$user] * rows$week +
    rnorm(nrow(rows), 0, noise_sd)))
  n_attempts <- sample(20:40, nrow(rows), replace = TRUE)
  list(
    data = list(
      user_id = rows$user + 1000L,
      week = rows$week,
      accuracy = accuracy,
      n_attempts = n_attempts,
      n_correct = rbinom(nrow(rows), n_attempts, accuracy)
    ),
    slope = slope
  )
}

expect_http_error <- function(response, status, pattern) {
  expect_equal(response$status, status, info = response$text)
  expect_match(response$json$error, pattern, fixed = TRUE)
}
