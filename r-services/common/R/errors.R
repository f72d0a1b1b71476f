# HTTP error conditions and the plumber handlers that turn conditions into
# JSON responses.
#
# Endpoint and model code signal client errors with `stop_http()` (or the
# shorthands below). The condition carries its HTTP status, survives the trip
# back from a `future` worker (future re-signals the original condition object)
# and is rendered by `json_error_handler()` as `{"error": "<message>"}`.
# Anything else is an internal error: it is logged with the request id and the
# client only sees `{"error": "internal error", "request_id": "..."}`.

http_error <- function(status, message) {
  structure(
    class = c(paste0("http_error_", status), "http_error", "error", "condition"),
    list(message = message, call = NULL, status = as.integer(status))
  )
}

stop_http <- function(status, message) {
  stop(http_error(status, message))
}

stop_bad_request <- function(message) stop_http(400L, message)

stop_unauthorized <- function(message) stop_http(401L, message)

stop_not_found <- function(message) stop_http(404L, message)

stop_payload_too_large <- function(message) stop_http(413L, message)

is_http_error <- function(condition) inherits(condition, "http_error")

# Plumber error handler: `function(req, res, err)`.
json_error_handler <- function(req, res, err) {
  res$serializer <- plumber::serializer_unboxed_json()
  if (is_http_error(err)) {
    res$status <- err$status
    return(list(error = conditionMessage(err)))
  }
  request_id <- req$request_id %||% NA_character_
  log_event(
    "error",
    "unhandled error",
    request_id = request_id,
    method = req$REQUEST_METHOD,
    path = req$PATH_INFO,
    error = conditionMessage(err),
    error_class = paste(class(err), collapse = ",")
  )
  res$status <- 500L
  list(error = "internal error", request_id = request_id)
}

json_not_found_handler <- function(req, res) {
  res$status <- 404L
  res$serializer <- plumber::serializer_unboxed_json()
  list(error = paste0("no route for ", req$REQUEST_METHOD, " ", req$PATH_INFO))
}

`%||%` <- function(x, y) if (is.null(x)) y else x
