# Structured logs: one JSON object per line on stdout, so that a log shipper
# (or a test) can parse every line without knowing the service.

log_service_name <- function() {
  Sys.getenv("R_SERVICE_NAME", unset = "r-service")
}

utc_timestamp <- function(time = Sys.time()) {
  format(time, "%Y-%m-%dT%H:%M:%OS3Z", tz = "UTC")
}

#' One JSON log line on stdout
#'
#' @param level `"info"`, `"warning"`, `"error"`, ...
#' @param message the event.
#' @param ... further named fields of the line (`NULL` ones are left out).
#' @return `NULL`, invisibly.
#' @export
log_event <- function(level, message, ...) {
  fields <- list(...)
  fields <- fields[!vapply(fields, is.null, logical(1))]
  record <- c(
    list(
      timestamp = utc_timestamp(),
      level = level,
      service = log_service_name(),
      message = message
    ),
    fields
  )
  line <- jsonlite::toJSON(record, auto_unbox = TRUE, null = "null", na = "null", digits = NA)
  cat(line, "\n", sep = "", file = stdout())
  flush(stdout())
  invisible(record)
}

log_request <- function(req, res, started_at) {
  duration_ms <- round(as.numeric(difftime(Sys.time(), started_at, units = "secs")) * 1000, 1)
  log_event(
    "info",
    "request",
    method = req$REQUEST_METHOD,
    path = req$PATH_INFO,
    status = as.integer(res$status),
    duration_ms = duration_ms,
    request_id = req$request_id
  )
}

# Cryptographic randomness (sodium ships with plumber) so ids never depend on
# the R session's RNG state, which model code may seed.
random_hex <- function(n_bytes) {
  paste(as.character(sodium::random(n_bytes)), collapse = "")
}

new_request_id <- function() random_hex(12L)
