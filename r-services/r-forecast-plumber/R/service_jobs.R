# Worker jobs and response shapes of r-forecast-plumber. Each job runs in a
# common `run_in_worker()` worker, stores its model there (large objects never
# travel back to the server) and returns plain data for the JSON serializer.
# The serializer unboxes length-1 vectors, so every table column and array
# field is wrapped in I() to stay an array.

# Fails the start-up on malformed PROPHET_* settings instead of failing every fit.
on_service_start <- function() {
  invisible(prophet_settings())
}

health_details <- function() {
  list(prophet_cores = prophet_settings()$cores)
}

prophet_fit_job <- function(request) {
  started <- Sys.time()
  settings <- prophet_settings()
  batch <- fit_prophet_batch(request, settings)
  model_id <- save_model(
    list(series = batch$models, fitted_at = Sys.time()),
    "prophet"
  )
  list(
    model_id = model_id,
    fits = lapply(batch$fits, fit_for_json),
    forecast = as_columns(batch$forecast),
    anomalies = as_columns(batch$anomalies),
    failures = as_columns(batch$failures),
    n_series = length(unique(request$series$series_id)),
    settings = list(
      forecast_weeks = request$forecast_weeks,
      anomaly_threshold = request$anomaly_threshold,
      min_points = settings$min_points,
      growth = settings$growth,
      min_points_linear = settings$min_points_linear,
      max_changepoints = settings$max_changepoints,
      changepoint_prior_scale = settings$changepoint_prior_scale,
      interval = sprintf("central %g%% of the predictive distribution", 100 * settings$interval_width),
      level_drift = settings$level_drift,
      inactive_weeks = settings$inactive_weeks,
      y_min = request$y_min,
      y_max = request$y_max,
      cores = settings$cores
    ),
    elapsed_s = as.numeric(difftime(Sys.time(), started, units = "secs"))
  )
}

fit_for_json <- function(fit) {
  fit$params$delta <- I(fit$params$delta)
  fit$changepoints <- I(fit$changepoints)
  fit
}

prophet_predict_job <- function(request) {
  stored <- load_model(request$model_id, prefix = "prophet")
  as_columns(forecast_stored_series(stored$series, request$series_id, request$weeks))
}

survival_fit_job <- function(request) {
  fitted <- fit_survival(request)
  model_id <- save_model(fitted$model, "survival")
  response <- fitted$response
  c(
    list(model_id = model_id),
    response[c(
      "coefficients", "concordance", "concordance_in_sample", "concordance_method", "n", "n_users",
      "n_events", "horizon_days", "ph_alpha", "constraints"
    )],
    list(
      ph_test = if (is.null(response$ph_test)) NULL else as_columns(response$ph_test),
      ph_actions = I(response$ph_actions),
      risk = as_columns(response$risk),
      warnings = I(response$warnings)
    )
  )
}

survival_predict <- function(body) {
  model <- load_model(body$model_id, prefix = "survival")
  request <- parse_survival_predict_request(body, model$covariates)
  prediction <- predict_survival(model, request)
  response <- as_columns(prediction[c("user_id", "risk_score", "p_event")])
  response$warnings <- I(prediction$warnings %||% character())
  response
}
