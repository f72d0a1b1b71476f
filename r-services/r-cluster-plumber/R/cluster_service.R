# Request handlers of r-cluster-plumber. plumber.R validates in the server
# process (fast 400s) and runs `cluster_fit` in a worker via `run_in_worker()`.

model_id_prefix <- "cluster"

# Launcher hook: a misconfigured setting stops the service before it listens
# rather than failing requests later.
on_service_start <- function() {
  health_details()
  invisible(NULL)
}

# Launcher hook: settings shown by GET /health.
health_details <- function() {
  list(
    silhouette_sample_size = default_silhouette_sample_size(),
    pam_max_rows = pam_max_rows()
  )
}

load_cluster_model <- function(model_id) {
  load_model(model_id, prefix = model_id_prefix)
}

fit_response <- function(fit, user_id, model_id) {
  response <- list(
    model_id = model_id,
    k = fit$k,
    method = fit$method,
    silhouette = fit$silhouette,
    silhouette_sample_size = fit$silhouette_sample_size,
    centers = data.frame(segment = seq_len(fit$k), fit$centers,
      check.names = FALSE),
    scaling = list(
      center = as.list(fit$scaling$center),
      scale = as.list(fit$scaling$scale)
    ),
    assignments = as_columns(list(
      user_id = user_id,
      segment = fit$segment,
      distance = fit$distance
    )),
    sizes = I(fit$sizes)
  )
  if (!is.null(fit$k_selection)) {
    response$k_selection <- as_columns(fit$k_selection)
  }
  response
}

# Worker job of POST /cluster/fit; `settings` come from `parse_cluster_fit_request`.
cluster_fit <- function(settings) {
  fit <- do.call(fit_segments, settings)
  stored_model <- fit[c(
    "k", "method", "seed", "features", "scaling", "centers_scaled", "centers"
  )]
  model_id <- save_model(stored_model, model_id_prefix)
  log_event("info", "cluster model fitted",
    model_id = model_id, method = fit$method, k = fit$k,
    n_students = length(fit$segment), silhouette = fit$silhouette
  )
  fit_response(fit, settings$user_id, model_id)
}

# POST /cluster/predict: nearest centre for each row; cheap, so it runs in
# the server process.
cluster_predict <- function(body) {
  request <- parse_cluster_predict_request(body, load_cluster_model)
  assignment <- predict_segments(request$model, request$x)
  as_columns(list(
    user_id = request$user_id,
    segment = assignment$segment,
    distance = assignment$distance
  ))
}
