# Goal probabilities from a stored growth model. Runs in the server process:
# it only combines stored posterior draws, so it is fast and does not queue
# behind fits.
#
# p_goal is the posterior predictive probability that the student's OBSERVED
# accuracy in the target week, at their usual weekly attempts m, is at least the
# goal (docs/metrics.md). Per posterior draw it is computed exactly given the
# draw (no simulation noise), then averaged over draws:
# * binomial: the correct answers are Binomial(m, plogis(a + b t)), so
#   P = P(K >= ceiling(goal m));
# * gaussian: the expected accuracy is the trend clamped to [0, 1],
#   mu = min(1, max(0, a + b t)); the observed accuracy is normal around mu with
#   the between-week variance the model found beyond sampling noise,
#   max(sigma^2 - v, 0) (v = mean binomial variance of the fitted weeks), plus
#   the student's own sampling variance mu (1 - mu) / m, censored to [0, 1]:
#   P = 1 - Phi((goal - mu) / sd). Without attempts it is normal(mu, sigma).
# The same formulas are used by the two-stage fit in Python
# (learning_analytics.growth_stage2); keep them in step.

parse_growth_predict_request <- function(body) {
  model <- load_model(body$model_id, prefix = "growth")
  table <- validate_table(body$data, "data", required = c("user_id", "week", "goal"))
  list(
    model = model,
    user_id = check_id_column(table, "user_id"),
    week = check_numeric_column(table, "week", min = -1000, max = 1000),
    goal = check_probability_column(table, "goal"),
    n_attempts = if ("n_attempts" %in% names(table)) {
      check_numeric_column(table, "n_attempts", min = 1, max = 1e6, integer = TRUE)
    }
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

# Expected accuracy at the linear predictor `eta` (vector over draws).
expected_accuracy <- function(eta, family) {
  if (family == "binomial") stats::plogis(eta) else pmin(1, pmax(0, eta))
}

# P(observed accuracy >= goal | draw) for every draw; `attempts` may be NA.
predictive_goal_probability <- function(expected, sigma, goal, attempts, family, binomial_variance) {
  if (family == "binomial") {
    needed <- ceiling(goal * attempts - 1e-9)
    return(stats::pbinom(needed - 1, attempts, expected, lower.tail = FALSE))
  }
  variance <- if (is.na(attempts) || is.null(binomial_variance)) {
    sigma^2
  } else {
    pmax(sigma^2 - binomial_variance, 0) + expected * (1 - expected) / attempts
  }
  stats::pnorm(goal, mean = expected, sd = pmax(sqrt(variance), 1e-9), lower.tail = FALSE)
}

predict_growth <- function(model, user_id, week, goal, n_attempts = NULL) {
  keys <- id_key(user_id)
  positions <- match(keys, model$user_keys)
  unseen_draws <- if (anyNA(positions)) new_user_draws(model$population) else NULL
  attempts <- if (!is.null(n_attempts)) {
    n_attempts
  } else if (!is.null(model$usual_attempts)) {
    model$usual_attempts[positions]
  } else {
    rep(NA_real_, length(keys))
  }
  family <- model$family
  if (family == "binomial" && anyNA(attempts)) {
    stop_bad_request("data.n_attempts: required for binomial predictions of students the model has not seen")
  }
  rows <- lapply(seq_along(keys), function(i) {
    draws <- if (is.na(positions[i])) unseen_draws else model$coefficients[, positions[i], ]
    expected <- expected_accuracy(draws[, 1] + draws[, 2] * week[i], family)
    p_goal <- predictive_goal_probability(
      expected, model$population[, "sigma"], goal[i], attempts[i], family, model$binomial_variance_mean
    )
    c(
      # The mean of probabilities that are all ~1 can round past 1.
      p_goal = min(1, max(0, mean(p_goal))),
      mean = mean(expected),
      lower = unname(stats::quantile(expected, 0.025)),
      upper = unname(stats::quantile(expected, 0.975)),
      n_attempts = attempts[i]
    )
  })
  summary <- do.call(rbind, rows)
  list(
    user_id = I(user_id),
    p_goal = I(summary[, "p_goal"]),
    mean = I(summary[, "mean"]),
    lower = I(summary[, "lower"]),
    upper = I(summary[, "upper"]),
    n_attempts = I(summary[, "n_attempts"]),
    known_user = I(!is.na(positions))
  )
}
