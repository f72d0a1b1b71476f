# Request checks of r-forecast-plumber, built on common's validation helpers
# (r-services/common/R/validation.R). Every problem is a 400 whose message
# starts with the field it is about.

require_positive <- function(body, name, default) {
  value <- scalar_number(body, name, default = default)
  if (value <= 0) {
    stop_bad_request(paste0(name, ": must be greater than 0, got ", format_value(value)))
  }
  value
}

# ---- prophet -----------------------------------------------------------------

# Every series must be weekly: one row per week, all on the same weekday.
check_weekly_series <- function(series_id, ds) {
  key <- paste(series_id, format(ds))
  duplicate <- anyDuplicated(key)
  if (duplicate > 0) {
    stop_bad_request(paste0(
      "series.ds: series ", format_value(series_id[duplicate]), " has the week ", format(ds[duplicate]),
      " more than once (row ", duplicate, "); send one row per series and week"
    ))
  }
  first_day <- stats::ave(as.numeric(ds), as.character(series_id), FUN = min)
  off_grid <- which((as.numeric(ds) - first_day) %% 7 != 0)
  if (length(off_grid) > 0) {
    row <- off_grid[1]
    stop_bad_request(paste0(
      "series.ds: dates must be weekly (the same weekday within a series); series ",
      format_value(series_id[row]), " has ", format(ds[row]), " (row ", row, "), ",
      as.numeric(ds[row]) - first_day[row], " days after its first date ",
      format(as.Date(first_day[row], origin = "1970-01-01"))
    ))
  }
}

parse_prophet_fit_request <- function(body, settings = prophet_settings()) {
  series <- validate_table(body$series, "series", required = c("series_id", "ds", "y"))
  series_id <- check_id_column(series, "series_id", "series")
  ds <- check_date_column(series, "ds", "series")
  check_weekly_series(series_id, ds)
  y_min <- scalar_number(body, "y_min", default = 0)
  y_max <- if (is.null(body$y_max)) NULL else scalar_number(body, "y_max", min = y_min)
  if (!is.null(y_max) && y_max <= y_min) {
    stop_bad_request(paste0("y_max: must be greater than y_min (", format_value(y_min), "), got ", format_value(y_max)))
  }
  # A null y is a week without a value; prophet fits around it.
  y <- check_numeric_column(series, "y", "series", allow_missing = TRUE, min = y_min, max = y_max %||% Inf)
  activity <- if (is.null(series$activity)) {
    NULL
  } else {
    check_numeric_column(series, "activity", "series", allow_missing = TRUE, min = 0)
  }
  active_days <- if (is.null(series$active_days)) {
    NULL
  } else if (is.null(activity)) {
    stop_bad_request("series.active_days: needs series.activity (the attempts of those days)")
  } else {
    check_numeric_column(series, "active_days", "series", allow_missing = TRUE, min = 0, max = 7)
  }
  y_se <- if (is.null(series$y_se)) {
    NULL
  } else {
    check_numeric_column(series, "y_se", "series", allow_missing = TRUE, min = 0)
  }
  list(
    series = list(
      series_id = series_id, ds = ds, y = y, activity = activity, active_days = active_days, y_se = y_se
    ),
    y_min = y_min,
    y_max = y_max,
    activity_saturation = if (is.null(body$activity_saturation)) {
      NULL
    } else {
      require_positive(body, "activity_saturation", NULL)
    },
    forecast_weeks = scalar_number(
      body, "forecast_weeks",
      default = 4L, min = 0, max = settings$max_forecast_weeks, integer = TRUE
    ),
    anomaly_threshold = require_positive(body, "anomaly_threshold", 2.5)
  )
}

parse_prophet_predict_request <- function(body, settings = prophet_settings()) {
  if (is.list(body$series_id) && length(body$series_id) == 0) {
    stop_bad_request("series_id: must contain at least one id")
  }
  if (is.null(body$series_id)) {
    stop_bad_request("series_id: required field is missing")
  }
  if (!is.atomic(body$series_id)) {
    stop_bad_request("series_id: must be an array of series ids")
  }
  list(
    model_id = body$model_id,
    series_id = check_id_column(list(series_id = body$series_id), "series_id", field = NULL),
    weeks = scalar_number(body, "weeks", default = 4L, min = 0, max = settings$max_forecast_weeks, integer = TRUE)
  )
}

# ---- survival ----------------------------------------------------------------

reserved_survival_columns <- function() c("user_id", "time", "event")

validate_survival_covariates <- function(body) {
  covariates <- string_array(body, "covariates")
  # Names go into a model formula; plain identifiers keep term names unambiguous.
  bad_name <- covariates[!grepl("^[A-Za-z][A-Za-z0-9_.]*$", covariates)]
  if (length(bad_name) > 0) {
    stop_bad_request(paste0(
      "covariates: ", format_value(bad_name[1]),
      " is not a valid name (letters, digits, '_' and '.', starting with a letter)"
    ))
  }
  reserved <- intersect(covariates, reserved_survival_columns())
  if (length(reserved) > 0) {
    stop_bad_request(paste0("covariates: ", format_value(reserved[1]), " is a reserved column, not a covariate"))
  }
  covariates
}

# Covariate columns as a numeric data frame; in a fit every covariate must vary.
covariate_frame <- function(data, covariates, require_variation) {
  unknown <- setdiff(covariates, names(data))
  if (length(unknown) > 0) {
    stop_bad_request(paste0("covariates: ", format_value(unknown[1]), " is not a column of data"))
  }
  frame <- lapply(covariates, function(covariate) {
    values <- check_numeric_column(data, covariate)
    if (require_variation && length(unique(values)) < 2) {
      stop_bad_request(paste0(
        "data.", covariate, ": covariate is constant (", format_value(values[1]),
        " in every row), its effect cannot be estimated"
      ))
    }
    values
  })
  names(frame) <- covariates
  as.data.frame(frame)
}

check_unique_ids <- function(data, column) {
  ids <- check_id_column(data, column)
  duplicate <- anyDuplicated(ids)
  if (duplicate > 0) {
    stop_bad_request(paste0(
      "data.", column, ": values must be unique, one row per student (row ", duplicate,
      " repeats ", format_value(ids[duplicate]), ")"
    ))
  }
  ids
}

# Covariates whose effect on churn is held non-negative (e.g. days idle).
validate_monotone_covariates <- function(body, covariates) {
  monotone <- string_array(body, "monotone", default = character(), min_length = 0L)
  unknown <- setdiff(monotone, covariates)
  if (length(unknown) > 0) {
    stop_bad_request(paste0("monotone: ", format_value(unknown[1]), " is not one of the covariates"))
  }
  monotone
}

# In a fit, rows may repeat a user_id (one row per student and landmark).
parse_survival_fit_request <- function(body) {
  covariates <- validate_survival_covariates(body)
  data <- validate_table(body$data, "data", required = reserved_survival_columns())
  frame <- covariate_frame(data, covariates, require_variation = TRUE)
  # Landmark rows: one row per student and landmark, so ids repeat.
  user_id <- check_id_column(data, "user_id")
  time <- check_numeric_column(data, "time", min = 0)
  event <- as.integer(check_choice_column(data, "event", c(0, 1)))
  if (sum(event) == 0) {
    stop_bad_request("data.event: all rows are censored (no event = 1), a Cox model needs events")
  }
  list(
    user_id = user_id,
    frame = cbind(data.frame(time = time, event = event), frame),
    covariates = covariates,
    monotone = validate_monotone_covariates(body, covariates),
    ph_alpha = scalar_number(body, "ph_alpha", default = ph_alpha_default(), min = 0, max = 1),
    horizon_days = require_positive(body, "horizon_days", 14)
  )
}

parse_survival_predict_request <- function(body, covariates) {
  data <- validate_table(body$data, "data", required = "user_id")
  list(
    user_id = check_unique_ids(data, "user_id"),
    frame = covariate_frame(data, covariates, require_variation = FALSE),
    horizon_days = require_positive(body, "horizon_days", 14)
  )
}
