# Prophet forecasts and anomaly scores for many short weekly series.
#
# Each series is one student's weekly learning index (y = I_t) and, optionally,
# weekly activity (attempts, and the days with attempts). Choices, and why
# (numbers: docs/metrics.md and docs/bench-prophet-quality.md):
# - The model of y is prophet's (its Stan program, priors and data scaling,
#   see `fit_prophet_map()`), fitted on a logit scale of y's range
#   [y_min, y_max] (`model_scale()`) and transformed back, so a forecast can
#   never leave the range (I_t: never below 0 nor above 100).
# - ln(1 + attempts) is prophet's additive regressor (attempts capped at the
#   request's `activity_saturation`, where y stops growing with effort: I_t at
#   200 attempts): I_t moves with the week's effort, and that movement belongs
#   to the activity series. I_t anomalies are judged net of effort; forecasts
#   are at the student's mean effort, and the effort's spread widens their band.
# - Only weeks with activity enter the trend: I_t of a week without attempts is
#   0 by definition, and whether such a week is unusual is a question for the
#   activity series.
# - Linear trend, no changepoints, no seasonality: 12 weekly points identify a
#   slope but not its changes nor a season; fewer than
#   PROPHET_MIN_POINTS_LINEAR active weeks get a flat trend (a noisy slope from
#   a few points forecasts worse than a level).
# - Forecast band: predictive quantiles on the model scale, Student-t with
#   n - p degrees of freedom and scale sigma * sqrt(1 + 1/n + (t - mean t)^2 /
#   Sxx + drift * h) (noise, the trend's own uncertainty and a drifting level,
#   so it widens with the horizon h) plus the effort term; mixed with the
#   student's share of weeks without attempts (I_t = 0). `yhat` is the median.
#   prophet's own simulated intervals (`uncertainty.samples`) cost ~10x the fit.
# - I_t anomalies: the outlier-screened refit (two passes, `fit_trend()`),
#   each active week scored against the OTHER kept weeks. With the weeks'
#   sampling errors (`y_se`: I_t's accuracy is measured from that week's
#   attempts, so a week of 20 attempts is noisier than one of 200), each
#   residual is judged against its own error times the dispersion of the
#   others, at least 1; without them, against the others' sigma
#   (`leave_one_out_scores()`).
# - Activity anomalies: a sessions model of weekly attempts against the
#   student's other weeks (`activity_scores()`): a zero week is unusual only
#   for a student whose other weeks are busy; weeks after the last active week
#   are never scored.
# - Every score is the z of a one-sided tail probability (I_t: |y - yhat| /
#   sigma through Student-t; activity: mid-p, see `session_tail()`), so
#   `anomaly_threshold` means the same for both series: a larger value gives
#   fewer, surer flags.
# - Students without activity in the last `PROPHET_INACTIVE_WEEKS` weeks are
#   `inactive`: their history is scored, but they get no forecast.

# Everything here works on dates; a fixed zone also stops prophet asking the
# system for one (which warns in containers without systemd).
if (!nzchar(Sys.getenv("TZ"))) {
  Sys.setenv(TZ = "UTC")
}

# Settings from the environment; a malformed or out-of-range value is an
# error (checked once when the service starts, see `on_service_start()`).
prophet_settings <- function(env = NULL) {
  setting <- function(name, default, ...) env_setting(name, default, ..., env = env)
  list(
    cores = setting("PROPHET_CORES", 2L, min = 1),
    min_points = setting("PROPHET_MIN_POINTS", 4L, min = 3),
    growth = setting("PROPHET_GROWTH", "linear", choices = c("linear", "flat")),
    min_points_linear = setting("PROPHET_MIN_POINTS_LINEAR", 8L, min = 3),
    max_changepoints = setting("PROPHET_MAX_CHANGEPOINTS", 0L, min = 0),
    points_per_changepoint = setting("PROPHET_POINTS_PER_CHANGEPOINT", 8, min = 1),
    changepoint_prior_scale = setting("PROPHET_CHANGEPOINT_PRIOR_SCALE", 0.05, min = 1e-6),
    outlier_screen = setting("PROPHET_OUTLIER_SCREEN", 3.5, min = 1),
    sigma_floor_fraction = setting("PROPHET_SIGMA_FLOOR_FRACTION", 0.01, min = 0),
    sigma_floor_absolute = setting("PROPHET_SIGMA_FLOOR_ABSOLUTE", 1e-6, min = 1e-12),
    interval_width = setting("PROPHET_INTERVAL_WIDTH", 0.8, min = 0.01, max = 0.99),
    level_drift = setting("PROPHET_LEVEL_DRIFT", 0.25, min = 0),
    inactive_weeks = setting("PROPHET_INACTIVE_WEEKS", 2L, min = 1),
    max_outlier_fraction = 0.25,
    # sd of sqrt(count) of a Poisson count: attempts vary at least that much.
    activity_sd_floor = 0.5,
    # Share of the range added at both ends before the logit (see model_scale()):
    # 10% keeps the scale nearly linear over the usual range of I_t.
    range_margin = 0.1,
    # The contract's limit (schemas.json: forecast_weeks, weeks); PROPHET_FORECAST_WEEKS stays inside it.
    max_forecast_weeks = 104L
  )
}

# ---- scales ------------------------------------------------------------------

# y in [y_min, y_max] to the real line: logit of the position in the range,
# widened by `range_margin` at both ends so that the bounds themselves map to
# finite values. Without y_max: log of (y - y_min + margin * typical value).
model_scale <- function(y_min, y_max, y, settings) {
  if (is.null(y_max)) {
    offset <- max(settings$range_margin * stats::median(y - y_min), settings$sigma_floor_absolute)
    return(list(
      to = function(v) log(v - y_min + offset),
      from = function(z) pmax(y_min, exp(z) - offset + y_min),
      slope = function(v) 1 / (v - y_min + offset),
      description = sprintf("log(y - %g + %g)", y_min, offset)
    ))
  }
  width <- y_max - y_min
  margin <- settings$range_margin * width
  list(
    to = function(v) stats::qlogis((pmin(pmax(v, y_min), y_max) - y_min + margin) / (width + 2 * margin)),
    from = function(z) pmin(y_max, pmax(y_min, y_min - margin + (width + 2 * margin) * stats::plogis(z))),
    slope = function(v) {
      share <- (pmin(pmax(v, y_min), y_max) - y_min + margin) / (width + 2 * margin)
      1 / (share * (1 - share) * (width + 2 * margin))
    },
    description = sprintf("logit((y - %g + %g) / %g)", y_min, margin, width + 2 * margin)
  )
}

# Smallest sigma a series can get: a fraction of its typical magnitude, or an
# absolute minimum. A flat series thus gets a small but finite sigma: its tiny
# residuals stay tiny scores while a real jump away from the flat line still
# scores high.
sigma_floor <- function(z, settings) {
  max(settings$sigma_floor_absolute, settings$sigma_floor_fraction * mean(abs(z)))
}

# 1.4826 * MAD: estimates the noise standard deviation even when up to half of
# the residuals are outliers. Used to screen for outliers in pass 1.
robust_scale <- function(residuals, z, settings) {
  mad <- stats::median(abs(residuals - stats::median(residuals)))
  max(1.4826 * mad, sigma_floor(z, settings))
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

# ---- prophet -----------------------------------------------------------------

# prophet's MAP fit of one series without seasonality or holidays, with an
# optional additive regressor `effort` (prophet::add_regressor() defaults:
# prior scale 10, standardised): the same Stan model, priors, data scaling,
# changepoint placement and initialisation as prophet::fit.prophet() (prophet
# 1.0), without the data-frame machinery around it that costs ~3x the
# optimisation itself on a 12-point series. `test-prophet-model.R` checks that
# the fits equal prophet's. Returns the parts of a prophet model that
# `predict_prophet_yhat()` needs.
fit_prophet_map <- function(ds, z, growth, n_changepoints, changepoint_prior_scale, effort = NULL) {
  order_by_date <- order(ds)
  ds <- ds[order_by_date]
  z <- z[order_by_date]
  regressor <- standardize_regressor(effort[order_by_date])
  n <- length(z)
  seconds <- as.numeric(ds) * 86400
  y_scale <- max(abs(z))
  if (y_scale == 0) y_scale <- 1
  start <- seconds[1]
  t_scale <- seconds[n] - start
  t <- (seconds - start) / t_scale
  y_scaled <- z / y_scale
  history_size <- floor(n * 0.8)
  n_changepoints <- max(0L, min(n_changepoints, history_size - 1L))
  changepoints_t <- if (n_changepoints > 0) {
    sort(t[round(seq.int(1, history_size, length.out = n_changepoints + 1))[-1]])
  } else {
    0
  }
  init <- if (growth == "linear") {
    k <- (y_scaled[n] - y_scaled[1]) / (t[n] - t[1])
    c(k, y_scaled[1] - k * t[1])
  } else {
    c(0, mean(y_scaled))
  }
  start_values <- list(
    k = init[1], m = init[2], delta = array(rep(0, length(changepoints_t))), beta = array(0), sigma_obs = 1
  )
  features <- if (is.null(regressor)) matrix(0, n, 1) else matrix(regressor$values, n, 1)
  params <- if (min(z) == max(z)) {
    utils::modifyList(start_values, list(sigma_obs = 0))
  } else {
    data <- list(
      T = n, K = 1L, S = length(changepoints_t), y = y_scaled, t = t, t_change = array(changepoints_t),
      X = features, sigmas = array(if (is.null(regressor)) 1 else 10), tau = changepoint_prior_scale,
      trend_indicator = if (growth == "linear") 0 else 2, s_a = array(if (is.null(regressor)) 0 else 1),
      s_m = array(0), cap = rep(0, n)
    )
    optimize <- function() {
      rstan::optimizing(
        prophet_stan_model(), data = data, init = function() start_values,
        algorithm = "Newton", iter = 10000, as_vector = FALSE
      )
    }
    fit <- optimize()
    fit$par
  }
  delta <- as.numeric(params$delta)
  k <- as.numeric(params$k)
  if (n_changepoints == 0) {
    k <- k + delta[1]
    delta <- 0
  }
  list(
    growth = growth, start = start, t.scale = t_scale, y.scale = y_scale,
    changepoints.t = changepoints_t,
    changepoints = as.Date((start + changepoints_t * t_scale) / 86400, origin = "1970-01-01"),
    n_changepoints = n_changepoints,
    params = list(
      k = k, m = as.numeric(params$m), delta = delta, sigma_obs = as.numeric(params$sigma_obs),
      beta = if (is.null(regressor)) 0 else as.numeric(params$beta)
    ),
    effort_mean = regressor$mean %||% 0, effort_sd = regressor$sd %||% 1
  )
}

# prophet's standardize = "auto" for a regressor: centred and scaled unless it
# takes fewer than two values (then left as is; NULL stays NULL).
standardize_regressor <- function(values) {
  if (is.null(values)) {
    return(NULL)
  }
  if (length(unique(values)) < 2) {
    return(list(values = values, mean = 0, sd = 1))
  }
  list(values = (values - mean(values)) / stats::sd(values), mean = mean(values), sd = stats::sd(values))
}

prophet_stan_model <- function() {
  get("stanmodels", envir = asNamespace("prophet"))$prophet
}

# yhat of a model from `fit_prophet_map()` (or prophet::prophet() with linear
# growth and no seasonality): the piecewise-linear trend, as prophet's
# predict_trend() computes it (flat growth: the level m), plus the regressor's
# term at `effort` (NULL: at its mean, where the term is 0).
predict_prophet_yhat <- function(model, ds, effort = NULL) {
  seconds <- as.numeric(as.Date(ds)) * 86400
  t <- (seconds - as.numeric(model$start)) / model$t.scale
  effort_term <- if (is.null(effort)) 0 else model$params$beta[1] * (effort - model$effort_mean) / model$effort_sd
  predict_trend(model, t) * model$y.scale + effort_term * model$y.scale
}

predict_trend <- function(model, t) {
  if (identical(model$growth, "flat")) {
    return(rep(model$params$m[1], length(t)))
  }
  deltas <- as.numeric(model$params$delta)
  trend <- model$params$k[1] * t + model$params$m[1]
  for (j in seq_along(model$changepoints.t)) {
    after <- t >= model$changepoints.t[j]
    trend[after] <- trend[after] + deltas[j] * (t[after] - model$changepoints.t[j])
  }
  trend
}

# Two-pass trend fit on the model scale. Pass 1 fits all points; a point is an
# outlier candidate when it lies more than `outlier_screen` robust scales off
# the pass-1 fit or off a Theil-Sen line (at most a quarter of the points).
# Pass 2 refits without the candidates: an outlier left in would bend the
# trend towards itself and inflate sigma, hiding itself.
fit_trend <- function(ds, z, growth, settings, effort = NULL) {
  n_changepoints <- if (growth == "linear") {
    min(settings$max_changepoints, as.integer(floor(length(z) / settings$points_per_changepoint)))
  } else {
    0L
  }
  fit <- function(keep) {
    fit_prophet_map(ds[keep], z[keep], growth, n_changepoints, settings$changepoint_prior_scale, effort[keep])
  }
  everything <- rep(TRUE, length(z))
  model <- fit(everything)
  residuals <- z - predict_prophet_yhat(model, ds, effort)
  screen_ratio <- abs(residuals) / robust_scale(residuals, z, settings)
  if (is.null(effort)) {
    # (with a regressor, a straight line is not the model and would screen
    # ordinary weeks of unusual effort)
    line_residuals <- theil_sen_residuals(as.numeric(ds), z)
    screen_ratio <- pmax(screen_ratio, abs(line_residuals) / robust_scale(line_residuals, z, settings))
  }
  max_excluded <- floor(length(z) * settings$max_outlier_fraction)
  excluded <- screen_ratio > settings$outlier_screen & rank(-screen_ratio, ties.method = "first") <= max_excluded
  if (any(excluded)) {
    model <- fit(!excluded)
  }
  residuals <- z - predict_prophet_yhat(model, ds, effort)
  # Candidates that the refit explains well rejoin the sigma estimate: leaving
  # out normal weeks that only looked odd in pass 1 would shrink sigma.
  n_parameters <- (if (growth == "linear") 2 else 1) + !is.null(effort)
  kept_sigma <- residual_sigma(residuals[!excluded], n_parameters, z, settings)
  inlier <- abs(residuals) / kept_sigma <= settings$outlier_screen
  list(
    model = model, residuals = residuals, inlier = inlier, n_parameters = n_parameters,
    sigma = residual_sigma(residuals[inlier], n_parameters, z, settings)
  )
}

# Residual standard deviation with the trend's degrees of freedom removed.
residual_sigma <- function(residuals, n_parameters, z, settings) {
  degrees_of_freedom <- max(1, length(residuals) - n_parameters)
  max(sqrt(sum(residuals^2) / degrees_of_freedom), sigma_floor(z, settings))
}

# Score of each point against the scale of the other inliers: the week being
# scored never widens (or narrows) its own yardstick. |y - yhat| / sigma with
# sigma estimated from few weeks is Student-t distributed; the score is the z
# of the same tail probability. With each point's measurement error `se`
# (model scale), residuals are standardized by it and the others' scale is a
# dispersion (quasi-likelihood) with `floor_scale` 1: no week is measured more
# precisely than its sampling error says, so a student whose few other
# residuals happen to be small does not get a yardstick below it. Without,
# `se` is 1 and the others' scale is their residual sigma, at least
# `floor_scale` (`sigma_floor()`).
leave_one_out_scores <- function(trend, floor_scale, se = 1) {
  standardized <- trend$residuals / se
  squares <- ifelse(trend$inlier, standardized^2, 0)
  n_others <- sum(trend$inlier) - trend$inlier
  degrees_of_freedom <- pmax(1, n_others - trend$n_parameters)
  scale_others <- pmax(sqrt((sum(squares) - squares) / degrees_of_freedom), floor_scale)
  t_to_z(abs(standardized) / scale_others, degrees_of_freedom)
}

# z with the same one-sided tail probability as `t` under Student-t with `df`.
t_to_z <- function(t, df) {
  stats::qnorm(stats::pt(t, df = df, lower.tail = FALSE), lower.tail = FALSE)
}

# ---- activity ----------------------------------------------------------------

# Sessions per week behind a mean of `days` active days a week, when sessions
# fall on the 7 days at random (Poisson per day): days = 7 (1 - exp(-s / 7)).
sessions_per_week <- function(days) {
  -7 * log(1 - min(days, 6.9) / 7)
}

# Scores of weekly activity counts (NA = unknown week). Attempts come in
# sessions: a week's count is about phi * N with N ~ Poisson(sessions per
# week) and phi the attempts per session. phi is measured from the active days
# when they are known (`active_days`, see `sessions_per_week()`), else
# estimated as the variance over the mean of the other weeks (then |z|
# behaves like Student-t with n - 1 degrees of freedom and is
# converted to the z of the same tail). The typical week is the mean of the
# student's OTHER weeks; the rate's own uncertainty makes the prediction of N
# negative binomial (Poisson-gamma): P(N <= k) = pbeta(n / (n + 1), shape,
# k + 1) with shape = sum(others) / phi. A zero week has probability about
# exp(-sessions per week): unusual for a busy student, ordinary for one who
# studies twice a week. Two passes: pass 1 scores against the median and MAD
# of the other weeks; weeks above `outlier_screen` (at most a quarter) are
# left out of every reference in pass 2. The score is the z of the one-sided
# tail probability (`session_tail()`). Returns list(expected (count), score,
# direction).
activity_scores <- function(counts, active_days, settings) {
  known <- which(!is.na(counts) & (is.null(active_days) | !is.na(active_days)))
  score_against <- function(excluded, robust) {
    expected <- score <- rep(NA_real_, length(counts))
    for (week in known) {
      others <- setdiff(known, c(week, excluded))
      if (length(others) < 3) next
      reference <- counts[others]
      typical <- if (robust) stats::median(reference) else mean(reference)
      per_session <- if (!is.null(active_days) && sum(active_days[others]) > 0) {
        max(1, mean(reference) / sessions_per_week(mean(active_days[others])))
      } else if (robust) {
        max(1, (1.4826 * stats::median(abs(reference - typical)))^2 / max(typical, 1))
      } else {
        max(1, stats::var(reference) / max(typical, 1))
      }
      spike <- counts[week] > typical
      tail <- session_tail(
        counts[week], per_session,
        sessions = length(reference) * max(typical, 0.5) / per_session,
        share = length(reference) / (length(reference) + 1), spike = spike
      )
      z <- max(0, stats::qnorm(tail, lower.tail = FALSE))
      if (is.null(active_days)) z <- t_to_z(z, length(reference) - 1)
      expected[week] <- typical
      score[week] <- (if (spike) 1 else -1) * z
    }
    list(expected = expected, score = score)
  }
  first <- score_against(integer(), robust = TRUE)
  screen <- abs(first$score)
  screen[is.na(screen)] <- 0
  max_excluded <- floor(length(known) * settings$max_outlier_fraction)
  excluded <- which(screen > settings$outlier_screen & rank(-screen, ties.method = "first") <= max_excluded)
  second <- score_against(excluded, robust = FALSE)
  list(expected = second$expected, score = abs(second$score), direction = ifelse(second$score > 0, "spike", "dip"))
}

# One-sided mid-p tail probability of a week's `count` attempts in the
# sessions model: count / per_session sessions against the negative binomial
# prediction of N from `sessions` sessions seen in n reference weeks
# (share = n / (n + 1)); upper tail for a spike, lower for a dip, each with
# half the probability of the observed count (the whole of it makes a test of
# small counts conservative: at 2.5 it flagged 0.6-0.9% of ordinary weeks
# where a calibrated score flags 1.24%; mid-p flags 0.9-1.3%). The count in
# sessions is continuous (the regularized incomplete beta interpolates between
# whole sessions). bench/prophet_anomaly_tails.R compares it with other tails
# of the same model.
session_tail <- function(count, per_session, sessions, share, spike) {
  observed <- count / per_session
  if (spike) {
    0.5 * (stats::pbeta(share, sessions, observed, lower.tail = FALSE) +
      stats::pbeta(share, sessions, observed + 1, lower.tail = FALSE))
  } else {
    0.5 * (stats::pbeta(share, sessions, observed + 1) + stats::pbeta(share, sessions, observed))
  }
}

# ---- one series --------------------------------------------------------------

anomaly_table <- function(ds, y, yhat, score, series, direction) {
  data.frame(
    ds = format(ds), y = y, yhat = yhat, score = score, series = rep(series, length(ds)),
    direction = direction, stringsAsFactors = FALSE
  )
}

empty_anomalies <- function() {
  anomaly_table(as.Date(character()), numeric(), numeric(), numeric(), character(), character())
}

# Fit one series: `weeks` holds its per-week vectors of the request (`ds`,
# `y`, and `activity`, `active_days`, `y_se`, each NULL when not sent);
# without `activity`, y > y_min counts as activity. Returns list(status =
# "fitted"|"inactive", fit, model, forecast, anomalies) or list(status =
# "skipped"|"inactive"|"failed", reason[, anomalies]). Never throws for data
# reasons. The steps: order the weeks and find the active ones
# (`prepare_series()`), score the activity (`activity_anomalies()`), fit the
# trend to the active weeks (`fit_series_trend()`) and score the learning
# index against it (`learning_index_anomalies()`), then build the stored
# model (`series_model_of()`), the fit summary (`series_fit_summary()`) and
# the forecast.
fit_one_series <- function(weeks, request, settings) {
  series <- prepare_series(weeks, request$y_min, settings)
  if (!any(series$active)) {
    return(list(status = "inactive", reason = "no activity in any week of the series", anomalies = empty_anomalies()))
  }
  anomalies <- list()
  if (series$has_activity) {
    anomalies$activity <- activity_anomalies(series, request$anomaly_threshold, settings)
  }
  trend_points <- !is.na(series$y) & series$active
  n_points <- sum(trend_points)
  if (n_points < settings$min_points) {
    return(list(
      status = "skipped",
      reason = sprintf(
        "too few points: %d weeks with activity and a value, at least %d needed",
        n_points, settings$min_points
      ),
      anomalies = bind_anomalies(anomalies)
    ))
  }
  fitted <- fit_series_trend(series, trend_points, request, settings)
  anomalies$learning_index <- learning_index_anomalies(fitted, request$anomaly_threshold, settings)
  anomalies <- bind_anomalies(anomalies)
  anomalies <- anomalies[order(anomalies$ds, anomalies$series), , drop = FALSE]

  series_model <- series_model_of(series, fitted)
  status <- if (series$inactive) "inactive" else "fitted"
  list(
    status = status,
    model = if (series$inactive) NULL else series_model,
    fit = series_fit_summary(status, series, fitted, series_model, n_points, settings),
    forecast = if (series$inactive) NULL else forecast_series(series_model, request$forecast_weeks, settings),
    anomalies = anomalies
  )
}

# The series in date order with its activity: the weekly attempts, or y above
# `y_min` when the request has no attempts (`has_activity` FALSE). `active`
# marks weeks with activity; `inactive` is TRUE when the last
# `inactive_weeks` weeks are all known to have none.
prepare_series <- function(weeks, y_min, settings) {
  order_by_date <- order(weeks$ds)
  ds <- weeks$ds[order_by_date]
  y <- weeks$y[order_by_date]
  has_activity <- !is.null(weeks$activity)
  activity <- if (has_activity) weeks$activity[order_by_date] else y - y_min
  recent <- ds > max(ds) - 7L * settings$inactive_weeks
  list(
    ds = ds, y = y, activity = activity, active_days = weeks$active_days[order_by_date],
    y_se = weeks$y_se[order_by_date], has_activity = has_activity,
    active = !is.na(activity) & activity > 0,
    inactive = all(!is.na(activity[recent]) & activity[recent] == 0)
  )
}

# Anomalous weeks of the activity counts, up to the last active week: weeks
# after it are the end of activity, not anomalies, and for an inactive
# student the last active week may be cut short by leaving (a dip there is
# not flagged).
activity_anomalies <- function(series, threshold, settings) {
  last_active <- max(which(series$active))
  scored <- seq_len(last_active)
  counts <- series$activity[scored]
  activity_result <- activity_scores(counts, series$active_days[scored], settings)
  flagged <- which(activity_result$score > threshold)
  if (series$inactive) {
    flagged <- setdiff(flagged, which(activity_result$direction == "dip" & scored == last_active))
  }
  anomaly_table(
    series$ds[flagged], counts[flagged], activity_result$expected[flagged], activity_result$score[flagged],
    "activity", activity_result$direction[flagged]
  )
}

# One table of the anomaly tables in `anomalies` (a list, possibly empty).
bind_anomalies <- function(anomalies) {
  do.call(rbind, c(list(empty_anomalies()), anomalies))
}

# The trend of the weeks in `trend_points` on the model scale. Too few points
# for a line give a flat trend. ln(1 + attempts) is prophet's regressor: I_t
# moves with the week's effort, which the activity series judges; the
# learning index is judged net of it. Attempts above the request's
# `activity_saturation` add no effort (I_t's effort factor is capped at 200
# attempts; an uncapped regressor overshoots I_t in the busiest weeks).
fit_series_trend <- function(series, trend_points, request, settings) {
  fitted_ds <- series$ds[trend_points]
  fitted_y <- series$y[trend_points]
  scale <- model_scale(request$y_min, request$y_max, fitted_y, settings)
  z <- scale$to(fitted_y)
  growth <- if (sum(trend_points) < settings$min_points_linear) "flat" else settings$growth
  effort <- if (series$has_activity) {
    log1p(pmin(series$activity[trend_points], request$activity_saturation %||% Inf))
  } else {
    NULL
  }
  list(
    ds = fitted_ds, y = fitted_y, y_se = series$y_se[trend_points], scale = scale, z = z, growth = growth,
    trend = fit_trend(fitted_ds, z, growth, settings, effort)
  )
}

# Anomalous weeks of the learning index: leave-one-out scores of the
# residuals of the fitted trend, against each week's own sampling error when
# every fitted week has one (`leave_one_out_scores()`).
learning_index_anomalies <- function(fitted, threshold, settings) {
  trend <- fitted$trend
  se_z <- fitted$y_se * fitted$scale$slope(fitted$y)
  score <- if (length(se_z) > 0 && all(!is.na(se_z) & se_z > 0)) {
    leave_one_out_scores(trend, floor_scale = 1, se = se_z)
  } else {
    leave_one_out_scores(trend, floor_scale = sigma_floor(fitted$z, settings))
  }
  flagged <- which(score > threshold)
  expected_y <- fitted$scale$from(fitted$z - trend$residuals)
  anomaly_table(
    fitted$ds[flagged], fitted$y[flagged], expected_y[flagged], score[flagged], "learning_index",
    ifelse(trend$residuals[flagged] > 0, "spike", "dip")
  )
}

# What is stored for forecasting the series later (`forecast_series()`).
series_model_of <- function(series, fitted) {
  trend <- fitted$trend
  model <- trend$model
  has_activity <- series$has_activity
  time_weeks <- as.numeric(fitted$ds[trend$inlier]) / 7
  known <- !is.na(series$activity)
  no_activity_share <- (sum(!series$active[known]) + 0.5) / (sum(known) + 1)
  list(
    model = model, scale = fitted$scale, sigma = trend$sigma, last_ds = max(series$ds),
    n_inliers = sum(trend$inlier), n_parameters = trend$n_parameters,
    # A future week's effort is unknown: the forecast is at the student's mean
    # effort, and its week-to-week spread (through prophet's beta) widens the band.
    effort_sigma = if (has_activity) abs(model$params$beta[1]) * model$y.scale else 0,
    mean_week = mean(time_weeks), sxx = sum((time_weeks - mean(time_weeks))^2),
    no_activity_share = if (has_activity) no_activity_share else 0
  )
}

# The `fit` entry of a fitted series: its status, the prophet parameters and
# the final slope.
series_fit_summary <- function(status, series, fitted, series_model, n_points, settings) {
  model <- fitted$trend$model
  # Slope of the trend at the end of the history, in model-scale units per
  # week (prophet's k and delta are in scaled units).
  final_slope_scaled <- if (fitted$growth == "linear") model$params$k + sum(model$params$delta) else 0
  slope_per_week <- final_slope_scaled * model$y.scale / model$t.scale * 7 * 86400
  list(
    status = status,
    reason = if (series$inactive) inactive_reason(series$ds, settings) else NULL,
    params = list(
      growth = fitted$growth,
      k = model$params$k[1],
      m = model$params$m[1],
      delta = model$params$delta,
      sigma_obs = model$params$sigma_obs[1],
      beta = model$params$beta[1],
      y_scale = model$y.scale,
      slope_per_week = slope_per_week[1],
      n_changepoints = model$n_changepoints,
      scale = fitted$scale$description,
      no_activity_share = series_model$no_activity_share
    ),
    changepoints = if (model$n_changepoints > 0) format(model$changepoints) else character(),
    sigma = fitted$trend$sigma,
    n_points = n_points
  )
}

inactive_reason <- function(ds, settings) {
  sprintf(
    "no activity in the last %d weeks (since %s): history scored for anomalies, not forecast",
    settings$inactive_weeks, format(max(ds) - 7L * (settings$inactive_weeks - 1L))
  )
}

# Weeks ahead of the last observed week, as dates.
future_weeks <- function(last_ds, weeks) {
  if (weeks == 0) {
    return(as.Date(character()))
  }
  last_ds + 7L * seq_len(weeks)
}

# Forecast rows for one stored series model: the median and the central
# `interval_width` band of the predictive distribution (see the header).
forecast_series <- function(series_model, weeks, settings) {
  ds <- future_weeks(series_model$last_ds, weeks)
  if (length(ds) == 0) {
    return(data.frame(ds = character(), yhat = numeric(), yhat_lower = numeric(), yhat_upper = numeric()))
  }
  center <- predict_prophet_yhat(series_model$model, ds)
  n <- series_model$n_inliers
  trend_variance <- if (series_model$n_parameters == 2 && series_model$sxx > 0) {
    (as.numeric(ds) / 7 - series_model$mean_week)^2 / series_model$sxx
  } else {
    0
  }
  horizon <- seq_along(ds)
  spread <- sqrt(
    series_model$sigma^2 * (1 + 1 / n + trend_variance + settings$level_drift * horizon) + series_model$effort_sigma^2
  )
  degrees_of_freedom <- max(1, n - series_model$n_parameters)
  p_zero <- series_model$no_activity_share
  quantile_at <- function(probability) {
    # Below the share of weeks without activity the value is y_min (I_t = 0).
    active_probability <- (probability - p_zero) / (1 - p_zero)
    if (active_probability <= 0) {
      return(series_model$scale$from(rep(-Inf, length(ds))))
    }
    series_model$scale$from(center + spread * stats::qt(active_probability, degrees_of_freedom))
  }
  tail <- (1 - settings$interval_width) / 2
  data.frame(
    ds = format(ds),
    yhat = quantile_at(0.5),
    yhat_lower = quantile_at(tail),
    yhat_upper = quantile_at(1 - tail),
    stringsAsFactors = FALSE
  )
}

# ---- batches -----------------------------------------------------------------

# Loads prophet's Stan model once before forking, so that every forked worker
# inherits it.
warm_up_prophet <- local({
  warmed_up <- FALSE
  function() {
    if (!warmed_up) {
      fit_prophet_map(as.Date("2024-01-01") + 7 * 0:5, c(1, 2, 3, 2, 3, 4), "linear", 0L, 0.05)
      warmed_up <<- TRUE
    }
    invisible(TRUE)
  }
})

# Fit every series of a validated batch (see `parse_prophet_fit_request()`),
# in parallel over `settings$cores` forked workers.
# Returns list(fits, forecast, anomalies, failures, models) where `models` is
# what `/prophet/predict` needs, keyed by as.character(series_id).
fit_prophet_batch <- function(request, settings = prophet_settings()) {
  series <- request$series
  ids <- unique(series$series_id)
  rows_by_series <- split(seq_along(series$series_id), factor(series$series_id, levels = ids))
  week_columns <- c("ds", "y", "activity", "active_days", "y_se")

  fit_safely <- function(rows) {
    tryCatch(
      fit_one_series(lapply(series[week_columns], function(column) column[rows]), request, settings),
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
  has_fit <- vapply(results, function(r) !is.null(r$fit), logical(1))
  has_forecast <- vapply(results, function(r) !is.null(r$forecast), logical(1))
  fits <- Map(function(id, r) c(list(series_id = id), r$fit), ids[has_fit], results[has_fit])
  names(fits) <- NULL
  models <- lapply(results[has_forecast], `[[`, "model")
  names(models) <- as.character(ids[has_forecast])
  anomalies <- lapply(results, function(r) r$anomalies %||% empty_anomalies())
  list(
    fits = fits,
    forecast = bind_series_tables(
      ids[has_forecast], lapply(results[has_forecast], `[[`, "forecast"), forecast_columns()
    ),
    anomalies = bind_series_tables(ids, anomalies, anomaly_columns()),
    failures = list(
      series_id = ids[!has_fit],
      status = vapply(results[!has_fit], `[[`, character(1), "status", USE.NAMES = FALSE),
      reason = vapply(results[!has_fit], `[[`, character(1), "reason", USE.NAMES = FALSE)
    ),
    models = models
  )
}

forecast_columns <- function() c("ds", "yhat", "yhat_lower", "yhat_upper")
anomaly_columns <- function() c("ds", "y", "yhat", "score", "series", "direction")

# Column-oriented table {series_id: [...], <columns>: [...]} keeping the
# series_id type as sent (integer student ids stay integers).
bind_series_tables <- function(ids, tables, columns) {
  n_rows <- vapply(tables, nrow, integer(1))
  out <- list(series_id = rep(ids, times = n_rows))
  for (column in columns) {
    values <- lapply(tables, `[[`, column)
    out[[column]] <- if (length(values) == 0) {
      if (column %in% c("ds", "series", "direction")) character() else numeric()
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
      "series_id: %s not in this model (fitted series only; skipped, inactive or failed series have no forecast)",
      paste(utils::head(missing, 10), collapse = ", ")
    ))
  }
  tables <- lapply(as.character(series_ids), function(id) forecast_series(models[[id]], weeks, settings))
  bind_series_tables(series_ids, tables, forecast_columns())
}
