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
parse_growth_fit_request <- function(body) {
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
    # Optional for gaussian: the weekly attempts put each student's own sampling
    # noise into the goal probability (see growth_predict.R).
    if ("n_attempts" %in% names(table)) {
      data$n_attempts <- check_numeric_column(table, "n_attempts", min = 1, max = 1e6, integer = TRUE)
    }
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
    max_iter = scalar_number(body, "max_iter", default = iter, min = iter, max = 20000, integer = TRUE),
    chains = scalar_number(body, "chains", default = 2L, min = 1, max = 8, integer = TRUE),
    seed = scalar_number(body, "seed", default = 1L, min = 0, max = .Machine$integer.max, integer = TRUE),
    warmup = scalar_number(body, "warmup", default = iter %/% 2L, min = 50, max = iter - 50, integer = TRUE),
    adapt_delta = scalar_number(body, "adapt_delta", default = 0.95, min = 0.5, max = 0.999),
    max_treedepth = scalar_number(body, "max_treedepth", default = 10L, min = 5, max = 15, integer = TRUE),
    max_rhat = scalar_number(body, "max_rhat", default = 1.01, min = 1, max = 2),
    min_ess_bulk = scalar_number(body, "min_ess_bulk", default = 400, min = 1, max = 1e6)
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

# Draws x population parameters (link scale); sigma is NA for binomial. The
# two-stage fit draws every student's effects from these (docs/metrics.md).
population_draws <- function(fit) {
  draws <- posterior::as_draws_df(fit)
  cbind(
    intercept = draws$b_Intercept,
    slope = draws$b_week,
    sd_intercept = draws$sd_user_id__Intercept,
    sd_slope = draws$sd_user_id__week,
    cor = draws$cor_user_id__Intercept__week,
    sigma = if ("sigma" %in% names(draws)) draws$sigma else NA_real_
  )
}

# Mean binomial variance acc (1 - acc) / n of the observed weekly accuracies:
# the part of the gaussian residual variance that is sampling noise at the
# attempts students made (NULL without n_attempts).
binomial_variance_mean <- function(data) {
  if (is.null(data$n_attempts)) NULL else mean(data$accuracy * (1 - data$accuracy) / data$n_attempts)
}

# Each student's usual weekly attempts: the median over their weeks in the
# data (NULL without n_attempts).
usual_attempts <- function(data, user_keys) {
  if (is.null(data$n_attempts)) {
    return(NULL)
  }
  medians <- tapply(data$n_attempts, id_key(data$user_id), stats::median)
  unname(medians[user_keys])
}

# The one meaning of "converged": over the population parameters as sampled
# (fixed effects, group sds and correlation, residual sd), max Rhat <= max_rhat,
# min bulk ESS >= min_ess_bulk and no divergent transition. Per-student effects
# are not judged: the two-stage fit computes them from the population draws, and
# the full fit is judged the same way so that both paths say the same thing.
fit_diagnostics <- function(fit, max_rhat, min_ess_bulk) {
  draws <- as.array(fit$fit)
  parameters <- grep("^(b_|sd_|cor_|sigma$)", dimnames(draws)[[3]], value = TRUE)
  rhats <- vapply(parameters, function(p) posterior::rhat(draws[, , p]), numeric(1))
  ess <- vapply(parameters, function(p) posterior::ess_bulk(draws[, , p]), numeric(1))
  divergences <- rstan::get_num_divergent(fit$fit)
  rhat_max <- max(rhats, na.rm = TRUE)
  ess_bulk_min <- min(ess, na.rm = TRUE)
  failures <- c(
    if (!(rhat_max <= max_rhat)) sprintf("max Rhat %.3f > %.3f (%s)", rhat_max, max_rhat, names(which.max(rhats))),
    if (!(ess_bulk_min >= min_ess_bulk)) {
      sprintf("min bulk ESS %.0f < %.0f (%s)", ess_bulk_min, min_ess_bulk, names(which.min(ess)))
    },
    if (divergences > 0) sprintf("%d divergent transitions", divergences)
  )
  list(
    rhat_max = rhat_max,
    ess_bulk_min = ess_bulk_min,
    divergences = divergences,
    max_treedepth_hits = rstan::get_num_max_treedepth(fit$fit),
    max_rhat = max_rhat,
    min_ess_bulk = min_ess_bulk,
    converged = length(failures) == 0,
    reason = if (length(failures) > 0) paste(failures, collapse = "; ") else NULL
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
# in accuracy per week) on the accuracy scale: posterior means and the 95%
# interval of the slope. For the binomial family the slope is the average weekly
# change of the expected accuracy over the fitted week range; the logit-scale
# values are returned too.
user_summary <- function(coefficients, family, week_range) {
  intercept_link <- coefficients[, , "Intercept", drop = TRUE]
  slope_link <- coefficients[, , "week", drop = TRUE]
  if (is.null(dim(intercept_link))) {
    intercept_link <- matrix(intercept_link, ncol = dim(coefficients)[2])
    slope_link <- matrix(slope_link, ncol = dim(coefficients)[2])
  }
  quantile_of <- function(draws, q) apply(draws, 2, stats::quantile, probs = q, names = FALSE)
  if (family == "binomial") {
    span <- diff(week_range)
    start <- stats::plogis(intercept_link + slope_link * week_range[1])
    end <- stats::plogis(intercept_link + slope_link * week_range[2])
    slope <- (end - start) / span
    list(
      intercept = colMeans(stats::plogis(intercept_link)),
      slope = colMeans(slope),
      slope_lower = quantile_of(slope, 0.025),
      slope_upper = quantile_of(slope, 0.975),
      intercept_logit = colMeans(intercept_link),
      slope_logit = colMeans(slope_link)
    )
  } else {
    list(
      intercept = colMeans(intercept_link),
      slope = colMeans(slope_link),
      slope_lower = quantile_of(slope_link, 0.025),
      slope_upper = quantile_of(slope_link, 0.975)
    )
  }
}

# How a growth fit samples: `iter` iterations per chain first (`warmup` of
# them warm-up), extended up to `max_iter` when short of the convergence
# criteria (`sample_judged()`).
sampler_settings <- function(iter, warmup, chains, seed, adapt_delta, max_treedepth, max_iter = iter) {
  list(
    iter = iter, max_iter = max_iter, warmup = warmup, chains = chains, seed = seed,
    adapt_delta = adapt_delta, max_treedepth = max_treedepth
  )
}

# Runs the sampler on the compiled template (no recompilation), `iter`
# iterations per chain.
sample_growth <- function(template, model_data, sampler, iter = sampler$iter) {
  withCallingHandlers(
    suppressMessages(stats::update(
      template,
      newdata = model_data,
      recompile = FALSE,
      iter = iter,
      warmup = sampler$warmup,
      chains = sampler$chains,
      cores = sampling_cores(sampler$chains),
      seed = sampler$seed,
      control = list(adapt_delta = sampler$adapt_delta, max_treedepth = sampler$max_treedepth),
      refresh = 0,
      silent = 2
    )),
    # Sampler warnings (low ESS, divergences) are reported as diagnostics.
    warning = function(w) invokeRestart("muffleWarning")
  )
}

# Iterations per chain that should reach the ESS target, from a run that fell
# short only on ESS or Rhat (more draws fix neither divergences nor a sampler
# stuck in another mode: those are not extended). ESS grows about linearly with
# the post-warm-up draws; a 50% margin, because ESS estimates themselves vary by
# 10-20% between runs (a 25% margin once ended at ESS 399 of 400); NULL when no
# longer run is allowed or needed.
extended_iterations <- function(diagnostics, iter, warmup, max_iter) {
  if (diagnostics$converged || diagnostics$divergences > 0 || iter >= max_iter) {
    return(NULL)
  }
  ess_ratio <- diagnostics$min_ess_bulk / max(diagnostics$ess_bulk_min, 1)
  # Rhat above the bar with enough ESS: twice the draws.
  draws_factor <- max(ess_ratio * 1.5, 2)
  as.integer(min(max_iter, warmup + ceiling((iter - warmup) * draws_factor)))
}

# Samples one program and judges it. Rather than a large default for every fit,
# a fit short of the ESS or Rhat target is run again, longer (at most
# `sampler$max_iter`), and judged on that run alone.
sample_judged <- function(template, model_data, sampler, max_rhat, min_ess_bulk) {
  fit <- sample_growth(template, model_data, sampler)
  diagnostics <- fit_diagnostics(fit, max_rhat, min_ess_bulk)
  iterations_run <- sampler$iter
  repeat {
    longer <- extended_iterations(diagnostics, iterations_run, sampler$warmup, sampler$max_iter)
    if (is.null(longer)) break
    log_event(
      "info", "growth fit: not converged, sampling again for longer",
      reason = diagnostics$reason, iter = iterations_run, extended_iter = longer, max_iter = sampler$max_iter
    )
    fit <- sample_growth(template, model_data, sampler, iter = longer)
    diagnostics <- fit_diagnostics(fit, max_rhat, min_ess_bulk)
    iterations_run <- longer
  }
  diagnostics$iterations <- iterations_run
  list(fit = fit, diagnostics = diagnostics)
}

fit_growth <- function(data, family, iter, chains, seed, warmup, adapt_delta, max_treedepth,
                       max_rhat = 1.01, min_ess_bulk = 400, max_iter = iter) {
  started_at <- Sys.time()
  user_ids <- data$user_id[!duplicated(id_key(data$user_id))]
  user_keys <- id_key(user_ids)
  week_range <- range(data$week)
  # Weeks as sent (0 = the window's first week), the origin the population
  # draws, stage 2 and the predictions use.
  model_data <- data
  model_data$user_id <- id_key(data$user_id)
  choice <- choose_parameterisation(model_data, family)
  log_event(
    "info", "growth fit: parameterisation chosen",
    parameterisation = choice$parameterisation, coefficient_noise_share = round(choice$noise_share, 3)
  )
  sampler <- sampler_settings(iter, warmup, chains, seed, adapt_delta, max_treedepth, max_iter = max_iter)
  sample_program <- function(parameterisation) {
    sample_judged(load_template(family, parameterisation), model_data, sampler, max_rhat, min_ess_bulk)
  }
  parameterisation <- choice$parameterisation
  run <- sample_program(parameterisation)
  # Divergences in the centred program mean its funnel (the data pin the
  # students down less than the noise share said): brms' own program, once.
  if (parameterisation == "centred" && run$diagnostics$divergences > 0) {
    log_event(
      "info", "growth fit: the centred program diverged, sampling brms' non-centred one",
      reason = run$diagnostics$reason
    )
    parameterisation <- "non_centred"
    run <- sample_program(parameterisation)
  }
  fit <- run$fit
  diagnostics <- run$diagnostics
  diagnostics$parameterisation <- parameterisation
  coefficients <- user_coefficient_draws(fit, user_keys)
  users <- c(list(user_id = user_ids), user_summary(coefficients, family, week_range))
  fixed_effects <- fixed_effect_table(fit)
  population <- population_draws(fit)
  model <- list(
    family = family,
    user_keys = user_keys,
    coefficients = coefficients,
    population = population,
    usual_attempts = usual_attempts(data, user_keys),
    binomial_variance_mean = binomial_variance_mean(data),
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
    population_draws = as_columns(as.data.frame(population)),
    binomial_variance_mean = model$binomial_variance_mean,
    settings = c(sampler, list(cores = sampling_cores(chains), max_rhat = max_rhat, min_ess_bulk = min_ess_bulk))
  )
}
