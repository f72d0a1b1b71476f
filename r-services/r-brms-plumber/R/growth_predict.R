# Goal probabilities from a stored growth model. Runs in the server process:
# it only combines stored posterior draws, so it is fast and does not queue
# behind fits.

parse_predict_request <- function(body) {
  model <- load_model(body$model_id, prefix = "growth")
  table <- validate_table(body$data, "data", required = c("user_id", "week", "goal"))
  list(
    model = model,
    user_id = check_id_column(table, "user_id"),
    week = check_numeric_column(table, "week", min = -1000, max = 1000),
    goal = check_probability_column(table, "goal")
  )
}

# Coefficient draws (draws x 2) for a student not in the fit: population
# effects plus student effects drawn from the fitted population distribution,
# so the uncertainty about an unseen student is part of the prediction.
new_user_draws <- function(population, seed = 1L) {
  n <- nrow(population)
  withr::with_seed(seed, {
    z_intercept <- stats::rnorm(n)
    z_slope <- stats::rnorm(n)
  })
  correlation <- population[, "cor"]
  cbind(
    population[, "intercept"] + population[, "sd_intercept"] * z_intercept,
    population[, "slope"] + population[, "sd_slope"] *
      (correlation * z_intercept + sqrt(1 - correlation^2) * z_slope)
  )
}

predict_growth <- function(model, user_id, week, goal) {
  keys <- id_key(user_id)
  positions <- match(keys, model$user_keys)
  unseen_draws <- if (anyNA(positions)) new_user_draws(model$population) else NULL
  inverse_link <- if (model$family == "binomial") stats::plogis else identity
  rows <- lapply(seq_along(keys), function(i) {
    draws <- if (is.na(positions[i])) unseen_draws else model$coefficients[, positions[i], ]
    expected <- inverse_link(draws[, 1] + draws[, 2] * week[i])
    c(
      p_goal = mean(expected >= goal[i]),
      mean = mean(expected),
      lower = unname(stats::quantile(expected, 0.025)),
      upper = unname(stats::quantile(expected, 0.975))
    )
  })
  summary <- do.call(rbind, rows)
  list(
    user_id = I(user_id),
    p_goal = I(summary[, "p_goal"]),
    mean = I(summary[, "mean"]),
    lower = I(summary[, "lower"]),
    upper = I(summary[, "upper"]),
    known_user = I(!is.na(positions))
  )
}
