# Prophet forecasts and anomaly scores for many short weekly series.
#
# Each series (one student's weekly learning index I_t) is fitted on its own
# with a linear-trend prophet model. Choices, and why:
# - `uncertainty.samples = 0`: prophet's simulated intervals cost ~10x the fit
#   itself. Intervals are instead yhat +- 1.96 * sigma: a 95% band for one
#   week's value under normal noise of scale sigma. It does not widen with the
#   horizon (trend uncertainty is not included), so read it as the noise band
#   around the trend, not as a full predictive interval.
# - no yearly/weekly/daily seasonality: the data are one point per week and
#   usually 12 weeks long, so no seasonal period is identifiable.
# - few changepoints (one per `points_per_changepoint` observations, at most
#   `max_changepoints`): a 12-point series cannot support prophet's default 25.
# - anomalies are scored against a fit that the anomalies themselves did not
#   shape (two passes, see `fit_one_series()`), and sigma is the residual
#   standard deviation of the points kept in the second pass. An outlier left
#   in would both bend the trend towards itself and inflate sigma, hiding
#   itself. sigma is floored (see `sigma_floor()`) so that a constant or
#   near-constant series never divides by zero.

# Everything here works on dates; a fixed zone also stops prophet asking the
# system for one (which warns in containers without systemd).
if (!nzchar(Sys.getenv("TZ"))) {
  Sys.setenv(TZ = "UTC")
}

# Settings from the environment; a malformed or out-of-range value is an
# error (checked once when the service starts, see `on_service_start()`).
prophet_settings <- function(env = Sys.getenv()) {
  read_number <- function(name, default, min) {
    value <- env[name]
    if (is.na(value) || !nzchar(value)) {
      return(default)
    }
    parsed <- suppressWarnings(as.numeric(value))
    if (is.na(parsed) || parsed < min) {
      stop(sprintf("environment variable %s must be a number >= %s, got '%s'", name, min, value))
    }
    parsed
  }
  list(
    cores = as.integer(read_number("PROPHET_CORES", 2, 1)),
    min_points = as.integer(read_number("PROPHET_MIN_POINTS", 4, 3)),
    max_changepoints = as.integer(read_number("PROPHET_MAX_CHANGEPOINTS", 3, 0)),
    points_per_changepoint = read_number("PROPHET_POINTS_PER_CHANGEPOINT", 4, 1),
    changepoint_prior_scale = read_number("PROPHET_CHANGEPOINT_PRIOR_SCALE", 0.05, 1e-6),
    outlier_screen = read_number("PROPHET_OUTLIER_SCREEN", 3.5, 1),
    sigma_floor_fraction = read_number("PROPHET_SIGMA_FLOOR_FRACTION", 0.01, 0),
    sigma_floor_absolute = read_number("PROPHET_SIGMA_FLOOR_ABSOLUTE", 1e-6, 1e-12),
    max_outlier_fraction = 0.25,
    interval_z = stats::qnorm(0.975),
    max_forecast_weeks = 104L
  )
}

# Smallest sigma a series can get: a fraction of its typical magnitude
# (mean |y|), or an absolute minimum for an all-zero series. A flat series
# thus gets a small but finite sigma: its tiny residuals stay tiny scores while
# a real jump away from the flat line still scores high.
sigma_floor <- function(y, settings) {
  max(settings$sigma_floor_absolute, settings$sigma_floor_fraction * mean(abs(y)))
}

# 1.4826 * MAD: estimates the noise standard deviation even when up to half of
# the residuals are outliers. Used to screen for outliers in pass 1.
robust_scale <- function(residuals, y, settings) {
  mad <- stats::median(abs(residuals - stats::median(residuals)))
  max(1.4826 * mad, sigma_floor(y, settings))
}

# Residual standard deviation with the two degrees of freedom of the trend
# line removed. Used on the outlier-free residuals of pass 2, where it is more
# precise than the MAD (which, on 12 points, varies by a factor of two).
residual_sigma <- function(residuals, y, settings) {
  degrees_of_freedom <- max(1, length(residuals) - 2)
  max(sqrt(sum(residuals^2) / degrees_of_freedom), sigma_floor(y, settings))
}

# Residuals from the Theil-Sen line (median of pairwise slopes): unlike a
# least-squares fit, a spike in the first or last week cannot tilt it, so it
# screens the end points that prophet's own fit partly absorbs.
theil_sen_residuals <- function(x, y) {
  pairs <- utils::combn(length(x), 2)
  slopes <- (y[pairs[2, ]] - y[pairs[1, ]]) / (x[pairs[2, ]] - x[pairs[1, ]])
  slope <- stats::median(slopes)
  y - stats::median(y - slope * x) - slope * x
}

# Weeks ahead of the last observed week, as dates.
future_weeks <- function(last_ds, weeks) {
  if (weeks == 0) {
    return(as.Date(character()))
  }
  last_ds + 7L * seq_len(weeks)
}

# Forecast table rows for one stored series model.
forecast_series <- function(series_model, weeks, settings) {
  ds <- future_weeks(series_model$last_ds, weeks)
  yhat <- if (length(ds) == 0) numeric() else predict_prophet_yhat(series_model$model, ds)
  half_width <- settings$interval_z * series_model$sigma
  data.frame(
    ds = format(ds),
    yhat = yhat,
    yhat_lower = yhat - half_width,
    yhat_upper = yhat + half_width,
    stringsAsFactors = FALSE
  )
}

# yhat of our models (linear trend, no seasonality, no regressors) is the
# piecewise-linear trend alone, computed as prophet's predict_trend() does.
# Doing it directly is ~100x faster than stats::predict() (~35 ms per call,
# mostly building seasonal feature frames that are empty here), which
# otherwise dominated a batch: each series needs it three times.
predict_prophet_yhat <- function(model, ds) {
  seconds <- as.numeric(as.Date(ds)) * 86400
  t <- (seconds - as.numeric(model$start)) / model$t.scale
  deltas <- as.numeric(model$params$delta)
  trend <- model$params$k[1] * t + model$params$m[1]
  for (j in seq_along(model$changepoints.t)) {
    after <- t >= model$changepoints.t[j]
    trend[after] <- trend[after] + deltas[j] * (t[after] - model$changepoints.t[j])
  }
  trend * model$y.scale
}

# Fit one series. Returns list(status = "ok", fit, model, forecast, anomalies)
# or list(status = "skipped"|"failed", reason). Never throws for data reasons.
fit_one_series <- function(ds, y, forecast_weeks, anomaly_threshold, settings) {
  observed <- !is.na(y)
  n_points <- sum(observed)
  if (n_points < settings$min_points) {
    return(list(
      status = "skipped",
      reason = sprintf(
        "too few points: %d non-missing weekly values, at least %d needed",
        n_points, settings$min_points
      )
    ))
  }
  if (anyDuplicated(ds)) {
    return(list(
      status = "failed",
      reason = sprintf("duplicate ds: %s appears more than once", format(ds[anyDuplicated(ds)]))
    ))
  }
  order_by_date <- order(ds)
  history <- data.frame(ds = ds[order_by_date], y = y[order_by_date])
  n_changepoints <- min(
    settings$max_changepoints,
    as.integer(floor(n_points / settings$points_per_changepoint))
  )
  fit_history <- function(history) {
    model <- suppressMessages(prophet::prophet(
      history,
      growth = "linear",
      n.changepoints = n_changepoints,
      changepoint.prior.scale = settings$changepoint_prior_scale,
      yearly.seasonality = FALSE,
      weekly.seasonality = FALSE,
      daily.seasonality = FALSE,
      uncertainty.samples = 0
    ))
    # The optimizer output is not needed to predict and would bloat the store.
    model$stan.fit <- NULL
    model
  }
  fitted_ds <- history$ds[!is.na(history$y)]
  fitted_y <- history$y[!is.na(history$y)]

  # Pass 1 fits all points. A point is an outlier candidate when it lies more
  # than `outlier_screen` robust scales off the pass-1 fit or off a Theil-Sen
  # line (at most a quarter of the points). Pass 2 refits without the
  # candidates; every point is then scored against the pass-2 fit and the
  # residual sigma of the kept points.
  model <- fit_history(history)
  residuals <- fitted_y - predict_prophet_yhat(model, fitted_ds)
  line_residuals <- theil_sen_residuals(as.numeric(fitted_ds), fitted_y)
  screen_ratio <- pmax(
    abs(residuals) / robust_scale(residuals, fitted_y, settings),
    abs(line_residuals) / robust_scale(line_residuals, fitted_y, settings)
  )
  max_excluded <- floor(length(fitted_y) * settings$max_outlier_fraction)
  excluded <- screen_ratio > settings$outlier_screen &
    rank(-screen_ratio, ties.method = "first") <= max_excluded
  if (any(excluded)) {
    clean_history <- history
    clean_history$y[clean_history$ds %in% fitted_ds[excluded]] <- NA
    model <- fit_history(clean_history)
  }
  yhat <- predict_prophet_yhat(model, fitted_ds)
  residuals <- fitted_y - yhat
  # Candidates that the refit explains well rejoin the sigma estimate: leaving
  # out normal weeks that only looked odd in pass 1 would shrink sigma.
  kept_sigma <- residual_sigma(residuals[!excluded], fitted_y, settings)
  inlier <- abs(residuals) / kept_sigma <= settings$outlier_screen
  sigma <- residual_sigma(residuals[inlier], fitted_y, settings)
  score <- abs(residuals) / sigma
  anomalous <- score > anomaly_threshold

  series_model <- list(model = model, sigma = sigma, last_ds = max(history$ds))
  # Slope of the trend at the end of the history, in y units per week: what
  # the forecast continues with (prophet's k and delta are in scaled units).
  final_slope_scaled <- model$params$k + sum(model$params$delta)
  slope_per_week <- final_slope_scaled * model$y.scale / model$t.scale * 7 * 86400

  list(
    status = "ok",
    model = series_model,
    fit = list(
      params = list(
        growth = "linear",
        k = unname(model$params$k[1]),
        m = unname(model$params$m[1]),
        delta = as.numeric(model$params$delta),
        sigma_obs = unname(model$params$sigma_obs[1]),
        y_scale = model$y.scale,
        slope_per_week = unname(slope_per_week[1]),
        n_changepoints = n_changepoints
      ),
      changepoints = format(as.Date(model$changepoints)),
      sigma = sigma,
      n_points = n_points
    ),
    forecast = forecast_series(series_model, forecast_weeks, settings),
    anomalies = data.frame(
      ds = format(fitted_ds[anomalous]),
      y = fitted_y[anomalous],
      yhat = yhat[anomalous],
      score = score[anomalous],
      stringsAsFactors = FALSE
    )
  )
}

# Prophet's first fit in a process loads its Stan model (~1 s). Doing it once
# before forking means every forked worker inherits a warm model.
warm_up_prophet <- local({
  warmed_up <- FALSE
  function() {
    if (!warmed_up) {
      history <- data.frame(ds = as.Date("2024-01-01") + 7 * 0:5, y = c(1, 2, 3, 2, 3, 4))
      suppressMessages(prophet::prophet(
        history,
        n.changepoints = 0, yearly.seasonality = FALSE, weekly.seasonality = FALSE,
        daily.seasonality = FALSE, uncertainty.samples = 0
      ))
      warmed_up <<- TRUE
    }
    invisible(TRUE)
  }
})

# Fit every series of a validated batch (see `validate_prophet_fit_request()`),
# in parallel over `settings$cores` forked workers.
# Returns list(fits, forecast, anomalies, failures, models) where `models` is
# what `/prophet/predict` needs, keyed by as.character(series_id).
fit_prophet_batch <- function(request, settings = prophet_settings()) {
  series <- request$series
  ids <- unique(series$series_id)
  rows_by_series <- split(seq_along(series$series_id), factor(series$series_id, levels = ids))

  fit_safely <- function(rows) {
    tryCatch(
      fit_one_series(
        series$ds[rows], series$y[rows],
        request$forecast_weeks, request$anomaly_threshold, settings
      ),
      error = function(e) list(status = "failed", reason = paste("fit failed:", conditionMessage(e)))
    )
  }
  warm_up_prophet()
  results <- if (settings$cores > 1 && length(ids) > 1) {
    parallel::mclapply(rows_by_series, fit_safely, mc.cores = settings$cores, mc.preschedule = TRUE)
  } else {
    lapply(rows_by_series, fit_safely)
  }
  # A worker that dies (e.g. out of memory) yields a try-error instead of a result.
  results <- lapply(results, function(result) {
    if (inherits(result, "try-error") || is.null(result)) {
      list(status = "failed", reason = "fit failed: worker process error")
    } else {
      result
    }
  })
  assemble_batch(ids, results)
}

assemble_batch <- function(ids, results) {
  ok <- vapply(results, function(r) identical(r$status, "ok"), logical(1))
  fits <- Map(function(id, r) c(list(series_id = id), r$fit), ids[ok], results[ok])
  names(fits) <- NULL
  models <- lapply(results[ok], `[[`, "model")
  names(models) <- as.character(ids[ok])
  list(
    fits = fits,
    forecast = bind_series_tables(ids[ok], lapply(results[ok], `[[`, "forecast"), forecast_columns()),
    anomalies = bind_series_tables(ids[ok], lapply(results[ok], `[[`, "anomalies"), anomaly_columns()),
    failures = list(
      series_id = ids[!ok],
      status = vapply(results[!ok], `[[`, character(1), "status", USE.NAMES = FALSE),
      reason = vapply(results[!ok], `[[`, character(1), "reason", USE.NAMES = FALSE)
    ),
    models = models
  )
}

forecast_columns <- function() c("ds", "yhat", "yhat_lower", "yhat_upper")
anomaly_columns <- function() c("ds", "y", "yhat", "score")

# Column-oriented table {series_id: [...], <columns>: [...]} keeping the
# series_id type as sent (integer student ids stay integers).
bind_series_tables <- function(ids, tables, columns) {
  n_rows <- vapply(tables, nrow, integer(1))
  out <- list(series_id = rep(ids, times = n_rows))
  for (column in columns) {
    values <- lapply(tables, `[[`, column)
    out[[column]] <- if (length(values) == 0) {
      if (column == "ds") character() else numeric()
    } else {
      unlist(values, use.names = FALSE)
    }
  }
  out
}

# Forecast table for stored series. Unknown ids are a caller error.
forecast_stored_series <- function(models, series_ids, weeks, settings = prophet_settings()) {
  missing <- setdiff(as.character(series_ids), names(models))
  if (length(missing) > 0) {
    stop_bad_request(sprintf(
      "series_id: %s not in this model (fitted series only; skipped or failed series have no model)",
      paste(utils::head(missing, 10), collapse = ", ")
    ))
  }
  tables <- lapply(as.character(series_ids), function(id) forecast_series(models[[id]], weeks, settings))
  bind_series_tables(series_ids, tables, forecast_columns())
}
