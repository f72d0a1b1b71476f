# Fitting the growth model (runs in a worker) and summarising the posterior.

min_fit_users <- 3L
min_fit_weeks <- 2L

# Ids as stable strings (numeric ids without scientific notation), so that
# predict matches users whichever JSON type the caller used.
id_key <- function(ids) {
  if (is.numeric(ids)) format(ids, scientific = FALSE, trim = TRUE, digits = 15) else as.character(ids)
}

# Validates a /growth/fit body (fast 400s in the server process) and returns
# the arguments of fit_growth().
parse_fit_request <- function(body) {
  family <- scalar_string(body, "family", default = "gaussian", choices = growth_families)
  outcome_columns <- if (family == "binomial") c("n_attempts", "n_correct") else "accuracy"
  table <- validate_table(body$data, "data", required = c("user_id", "week", outcome_columns))
  data <- data.frame(
    user_id = check_id_column(table, "user_id"),
    week = check_numeric_column(table, "week", min = -1000, max = 1000)
  )
  check_unique_rows(data, c("user_id", "week"))
  if (family == "binomial") {
    data$n_attempts <- check_numeric_column(table, "n_attempts", min = 1, max = 1e6, integer = TRUE)
    data$n_correct <- check_numeric_column(table, "n_correct", min = 0, max = 1e6, integer = TRUE)
    too_many <- which(data$n_correct > data$n_attempts)
    if (length(too_many) > 0) {
      row <- too_many[1]
      stop_bad_request(sprintf(
        "data.n_correct: values must not exceed n_attempts (row %d is %d > %d)",
        row, data$n_correct[row], data$n_attempts[row]
      ))
    }
  } else {
    data$accuracy <- check_probability_column(table, "accuracy")
  }
  weeks_per_user <- tapply(data$week, id_key(data$user_id), function(weeks) length(unique(weeks)))
  n_users_with_trend <- sum(weeks_per_user >= min_fit_weeks)
  if (n_users_with_trend < min_fit_users) {
    stop_bad_request(sprintf(
      "data: too little data to fit a growth model: need at least %d users with %d or more distinct weeks each, got %d",
      min_fit_users, min_fit_weeks, n_users_with_trend
    ))
  }
  iter <- scalar_number(body, "iter", default = 1000L, min = 100, max = 20000, integer = TRUE)
  list(
    data = data,
    family = family,
    iter = iter,
    chains = scalar_number(body, "chains", default = 2L, min = 1, max = 8, integer = TRUE),
    seed = scalar_number(body, "seed", default = 1L, min = 0, max = .Machine$integer.max, integer = TRUE),
    warmup = scalar_number(body, "warmup", default = iter %/% 2L, min = 50, max = iter - 50, integer = TRUE),
    adapt_delta = scalar_number(body, "adapt_delta", default = 0.95, min = 0.5, max = 0.999),
    max_treedepth = scalar_number(body, "max_treedepth", default = 10L, min = 5, max = 15, integer = TRUE)
  )
}

sampling_cores <- function(chains) {
  min(chains, env_setting("BRMS_CORES", 2L, min = 1))
}

# Draws x users x (intercept, slope) on the link scale, users in `user_keys`
# order.
user_coefficient_draws <- function(fit, user_keys) {
  draws <- stats::coef(fit, summary = FALSE)$user_id
  draws[, user_keys, c("Intercept", "week"), drop = FALSE]
}

population_draws <- function(fit) {
  draws <- posterior::as_draws_df(fit)
  cbind(
    intercept = draws$b_Intercept,
    slope = draws$b_week,
    sd_intercept = draws$sd_user_id__Intercept,
    sd_slope = draws$sd_user_id__week,
    cor = draws$cor_user_id__Intercept__week
  )
}

# Rhat and bulk ESS over the parameters that the response depends on:
# population effects, group sds and correlation, residual sd, and every
# student's effects.
fit_diagnostics <- function(fit) {
  draws <- as.array(fit$fit)
  parameters <- grep("^(b_|sd_|cor_|sigma$|r_)", dimnames(draws)[[3]], value = TRUE)
  rhats <- vapply(parameters, function(p) posterior::rhat(draws[, , p]), numeric(1))
  ess <- vapply(parameters, function(p) posterior::ess_bulk(draws[, , p]), numeric(1))
  divergences <- rstan::get_num_divergent(fit$fit)
  treedepth_hits <- rstan::get_num_max_treedepth(fit$fit)
  rhat_max <- max(rhats, na.rm = TRUE)
  ess_bulk_min <- min(ess, na.rm = TRUE)
  list(
    rhat_max = rhat_max,
    ess_bulk_min = ess_bulk_min,
    divergences = divergences,
    max_treedepth_hits = treedepth_hits,
    converged = rhat_max <= 1.01 && divergences == 0 && ess_bulk_min >= 100
  )
}

fixed_effect_table <- function(fit) {
  estimates <- brms::fixef(fit)
  draws <- as.array(fit$fit)
  terms <- rownames(estimates)
  data.frame(
    term = terms,
    estimate = estimates[, "Estimate"],
    est_error = estimates[, "Est.Error"],
    lower = estimates[, "Q2.5"],
    upper = estimates[, "Q97.5"],
    rhat = vapply(terms, function(t) posterior::rhat(draws[, , paste0("b_", t)]), numeric(1)),
    ess_bulk = vapply(terms, function(t) posterior::ess_bulk(draws[, , paste0("b_", t)]), numeric(1)),
    row.names = NULL
  )
}

# Per-user intercept (expected accuracy at week 0) and slope (expected change
# in accuracy per week) on the accuracy scale, as posterior means. For the
# binomial family the slope is the average weekly change of the expected
# accuracy over the fitted week range; the logit-scale values are returned too.
user_summary <- function(coefficients, family, week_range) {
  intercept_link <- coefficients[, , "Intercept", drop = TRUE]
  slope_link <- coefficients[, , "week", drop = TRUE]
  if (is.null(dim(intercept_link))) {
    intercept_link <- matrix(intercept_link, ncol = dim(coefficients)[2])
    slope_link <- matrix(slope_link, ncol = dim(coefficients)[2])
  }
  if (family == "binomial") {
    span <- diff(week_range)
    start <- stats::plogis(intercept_link + slope_link * week_range[1])
    end <- stats::plogis(intercept_link + slope_link * week_range[2])
    list(
      intercept = colMeans(stats::plogis(intercept_link)),
      slope = colMeans((end - start) / span),
      intercept_logit = colMeans(intercept_link),
      slope_logit = colMeans(slope_link)
    )
  } else {
    list(intercept = colMeans(intercept_link), slope = colMeans(slope_link))
  }
}

fit_growth <- function(data, family, iter, chains, seed, warmup, adapt_delta, max_treedepth) {
  started_at <- Sys.time()
  template <- load_template(family)
  user_ids <- data$user_id[!duplicated(id_key(data$user_id))]
  user_keys <- id_key(user_ids)
  model_data <- data
  model_data$user_id <- id_key(data$user_id)
  fit <- withCallingHandlers(
    suppressMessages(stats::update(
      template,
      newdata = model_data,
      recompile = FALSE,
      iter = iter,
      warmup = warmup,
      chains = chains,
      cores = sampling_cores(chains),
      seed = seed,
      control = list(adapt_delta = adapt_delta, max_treedepth = max_treedepth),
      refresh = 0,
      silent = 2
    )),
    # Sampler warnings (low ESS, divergences) are reported as diagnostics.
    warning = function(w) invokeRestart("muffleWarning")
  )
  coefficients <- user_coefficient_draws(fit, user_keys)
  week_range <- range(data$week)
  users <- c(list(user_id = user_ids), user_summary(coefficients, family, week_range))
  diagnostics <- fit_diagnostics(fit)
  fixed_effects <- fixed_effect_table(fit)
  model <- list(
    family = family,
    user_keys = user_keys,
    coefficients = coefficients,
    population = population_draws(fit),
    week_range = week_range,
    diagnostics = diagnostics,
    fixed_effects = fixed_effects
  )
  model_id <- save_model(model, "growth")
  list(
    model_id = model_id,
    family = family,
    fixed_effects = fixed_effects,
    diagnostics = diagnostics,
    n_obs = nrow(data),
    n_users = length(user_ids),
    elapsed_s = round(as.numeric(difftime(Sys.time(), started_at, units = "secs")), 3),
    users = as_columns(as.data.frame(users, stringsAsFactors = FALSE)),
    settings = list(
      iter = iter, warmup = warmup, chains = chains, cores = sampling_cores(chains),
      seed = seed, adapt_delta = adapt_delta, max_treedepth = max_treedepth
    )
  )
}
