# Validation of /cluster/fit and /cluster/predict bodies, built on common's
# validation helpers: every check fails with `stop_bad_request()` and a message
# that starts with the offending field.

cluster_methods <- c("kmeans", "pam", "clara")

# Largest silhouette sample accepted: `dist` on 5,000 rows takes ~100 MB.
silhouette_sample_size_limit <- 5000L

# Rows sampled for silhouette widths when the request does not say.
default_silhouette_sample_size <- function() {
  env_setting("CLUSTER_SILHOUETTE_SAMPLE_SIZE", 2000L, min = 10, max = silhouette_sample_size_limit)
}

# pam keeps all pairwise distances, so its memory grows with n^2.
pam_max_rows <- function() env_setting("CLUSTER_PAM_MAX_ROWS", 5000L, min = 1)

# Checks the feature columns of `table` and returns them as a numeric matrix.
# When fitting (`require_variation`), a constant column is refused: its sd is
# 0 and it cannot be standardised.
feature_matrix <- function(table, features, field = "data",
                           require_variation = TRUE) {
  for (feature in features) {
    path <- field_path(field, feature)
    if (!feature %in% names(table)) {
      stop_bad_request(paste0(
        "features: ", format_value(feature), " is not a column of ", field
      ))
    }
    values <- check_numeric_column(table, feature, field)
    if (require_variation && length(unique(values)) < 2) {
      stop_bad_request(paste0(
        path, ": feature is constant (", format_value(values[1]),
        " for every student), so it cannot be standardised"
      ))
    }
    # Standardising divides by the sd: a subnormal one (values like 1e-320)
    # has lost its precision and can overflow the scaled values.
    spread <- stats::sd(values)
    if (require_variation && (!is.finite(spread) || spread < .Machine$double.xmin ||
      !all(is.finite((values - mean(values)) / spread)))) {
      stop_bad_request(paste0(
        path, ": values vary too little to be standardised (sd ", format_value(spread),
        "); send the feature in larger units"
      ))
    }
  }
  matrix(
    as.double(unlist(table[features], use.names = FALSE)),
    ncol = length(features),
    dimnames = list(NULL, features)
  )
}

validate_features <- function(body) {
  features <- string_array(body, "features")
  if ("user_id" %in% features) {
    stop_bad_request("features: must not include user_id, which identifies students")
  }
  features
}

# `n_rows` students with `n_distinct_rows` distinct feature rows.
validate_k_range <- function(k_range, n_rows, n_distinct_rows) {
  if (is.null(k_range)) {
    k_range <- c(2L, 8L)
  }
  if (!is.numeric(k_range) || length(k_range) != 2 || anyNA(k_range) ||
    any(k_range != round(k_range))) {
    stop_bad_request("k_range: must be an array of two whole numbers [min, max]")
  }
  if (k_range[[1]] < 2 || k_range[[1]] > k_range[[2]]) {
    stop_bad_request(paste0(
      "k_range: must satisfy 2 <= min <= max, got [",
      k_range[[1]], ", ", k_range[[2]], "]"
    ))
  }
  # A silhouette needs a cluster with two members, so k <= n - 1, and no
  # method can make more clusters than there are distinct points.
  k_max <- min(n_rows - 1, n_distinct_rows)
  if (k_range[[1]] > k_max) {
    stop_bad_request(sprintf(
      "k_range: minimum %d is more than the %d clusters that %d students with %d distinct feature rows allow",
      k_range[[1]], k_max, n_rows, n_distinct_rows
    ))
  }
  as.integer(c(k_range[[1]], min(k_range[[2]], k_max)))
}

# Validates a /cluster/fit body; returns the arguments of `fit_segments`.
parse_cluster_fit_request <- function(body) {
  table <- validate_table(body$data, "data", required = "user_id")
  user_id <- check_id_column(table, "user_id")
  n_rows <- nrow(table)
  features <- validate_features(body)
  method <- scalar_string(body, "method", default = "kmeans",
    choices = cluster_methods)
  n_clusters <- scalar_number(body, "n_clusters", default = NA_integer_,
    min = 2, integer = TRUE)
  if (!is.na(n_clusters) && n_clusters > n_rows) {
    stop_bad_request(sprintf(
      "n_clusters: %d is larger than the number of students (%d)",
      n_clusters, n_rows
    ))
  }
  if (anyDuplicated(user_id)) {
    stop_bad_request(paste0(
      "data.user_id: one row per student, but ",
      format_value(user_id[anyDuplicated(user_id)]), " repeats"
    ))
  }
  if (n_rows < 3) {
    stop_bad_request(sprintf(
      "data: has %d student(s), at least 3 are needed to find segments", n_rows
    ))
  }
  if (method == "pam" && n_rows > pam_max_rows()) {
    stop_bad_request(sprintf(
      "method: pam handles at most %d students (data has %d), use clara",
      pam_max_rows(), n_rows
    ))
  }
  x <- feature_matrix(table, features)
  settings <- list(
    x = x,
    user_id = user_id,
    method = method,
    seed = scalar_number(body, "seed", default = 1L, integer = TRUE,
      min = -.Machine$integer.max, max = .Machine$integer.max),
    silhouette_sample_size = scalar_number(body, "silhouette_sample_size",
      default = default_silhouette_sample_size(), integer = TRUE,
      min = 10, max = silhouette_sample_size_limit)
  )
  n_distinct_rows <- nrow(unique(x))
  if (is.na(n_clusters)) {
    settings$k_range <- validate_k_range(body$k_range, n_rows, n_distinct_rows)
  } else {
    if (n_clusters > n_distinct_rows) {
      stop_bad_request(sprintf(
        "n_clusters: %d is larger than the number of distinct feature rows (%d)",
        n_clusters, n_distinct_rows
      ))
    }
    settings$n_clusters <- n_clusters
  }
  settings
}

# Scaling values {"<feature>": number, ...} for `features`.
scaling_values <- function(values, features, path, positive = FALSE) {
  if (!is_json_object(values) || length(values) == 0) {
    stop_bad_request(paste0(path, ": must be an object of numbers keyed by feature"))
  }
  vapply(features, function(feature) {
    value <- values[[feature]]
    if (!is.numeric(value) || length(value) != 1 || !is.finite(value) ||
      abs(value) > max_abs_number || (positive && value < .Machine$double.xmin)) {
      stop_bad_request(paste0(
        field_path(path, feature), ": must be a ",
        if (positive) "positive " else "", "number"
      ))
    }
    as.double(value)
  }, double(1))
}

# Validates an inline model {"centers": [...], "scaling": {...}} as /cluster/fit
# returns it; gives the model in the form `predict_segments` takes.
validate_inline_model <- function(model) {
  if (!is_json_object(model) || is.null(model$centers) ||
    is.null(model$scaling)) {
    stop_bad_request("model: must be an object with centers and scaling")
  }
  if (!is_json_object(model$scaling) || !is_json_object(model$scaling$center)) {
    stop_bad_request("model.scaling: must hold center and scale objects keyed by feature")
  }
  features <- names(model$scaling$center)
  scaling <- list(
    center = scaling_values(model$scaling$center, features, "model.scaling.center"),
    scale = scaling_values(model$scaling$scale, features, "model.scaling.scale",
      positive = TRUE)
  )
  centers <- model$centers
  if (!is.data.frame(centers) || nrow(centers) == 0) {
    stop_bad_request("model.centers: must be a non-empty array of objects")
  }
  for (feature in features) {
    if (!is.numeric(centers[[feature]]) || anyNA(centers[[feature]])) {
      stop_bad_request(paste0(
        "model.centers: every centre needs a number for ", format_value(feature)
      ))
    }
  }
  segment <- centers$segment %||% seq_len(nrow(centers))
  if (!is.numeric(segment) || anyNA(segment) || anyDuplicated(segment)) {
    stop_bad_request("model.centers: segment values must be distinct numbers")
  }
  list(
    features = features,
    scaling = scaling,
    segment_labels = as.integer(segment),
    centers_scaled = scale_features(as.matrix(centers[features]), scaling)
  )
}

# Validates a /cluster/predict body; returns the model and the data to assign.
parse_cluster_predict_request <- function(body, load_stored_model) {
  model <- if (!is.null(body$model_id)) {
    load_stored_model(body$model_id)
  } else if (!is.null(body$model)) {
    validate_inline_model(body$model)
  } else {
    stop_bad_request("model_id: required field is missing (or send model)")
  }
  table <- validate_table(body$data, "data", required = "user_id")
  for (feature in model$features) {
    if (!feature %in% names(table)) {
      stop_bad_request(paste0(
        field_path("data", feature), ": required column (a model feature) is missing"
      ))
    }
  }
  x <- feature_matrix(table, model$features, require_variation = FALSE)
  not_finite <- which(!is.finite(scale_features(x, model$scaling)), arr.ind = TRUE)
  if (length(not_finite) > 0) {
    stop_bad_request(sprintf(
      "data.%s: row %d is not finite once standardised with the model's scaling",
      model$features[not_finite[1, 2]], not_finite[1, 1]
    ))
  }
  list(
    model = model,
    user_id = check_id_column(table, "user_id"),
    x = x
  )
}
