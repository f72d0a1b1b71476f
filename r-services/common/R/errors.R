# HTTP error conditions and the plumber handlers that turn conditions into
# JSON responses.
#
# Endpoint and model code signal client errors with `stop_http()` (or the
# shorthands below). The condition carries its HTTP status, survives the trip
# back from a `future` worker (future re-signals the original condition object)
# and is rendered by `json_error_handler()` as `{"error": "<message>"}`.
# Anything else is an internal error: it is logged with the request id and the
# client only sees `{"error": "internal error", "request_id": "..."}`.

#' HTTP error conditions
#'
#' `http_error()` builds a condition that the service's error handler turns
#' into a response with that status and body `{"error": message}`;
#' `stop_http()` signals it, and `stop_bad_request()`, `stop_unauthorized()`,
#' `stop_not_found()` and `stop_payload_too_large()` signal 400, 401, 404 and
#' 413. Raised in a worker, they come back to the server with their status.
#'
#' @param status HTTP status (integer).
#' @param message the client-facing message; for 400 it starts with the field
#'   path, e.g. `"data.week: ..."`.
#' @param condition any condition.
#' @return `http_error()` a condition of classes `http_error_<status>`,
#'   `http_error`, `error`, `condition`; `is_http_error()` `TRUE` for such a
#'   condition; the `stop_*()` functions do not return.
#' @export
http_error <- function(status, message) {
  structure(
    class = c(paste0("http_error_", status), "http_error", "error", "condition"),
    list(message = message, call = NULL, status = as.integer(status))
  )
}

#' @rdname http_error
#' @export
stop_http <- function(status, message) {
  stop(http_error(status, message))
}

#' @rdname http_error
#' @export
stop_bad_request <- function(message) stop_http(400L, message)

#' @rdname http_error
#' @export
stop_unauthorized <- function(message) stop_http(401L, message)

#' @rdname http_error
#' @export
stop_not_found <- function(message) stop_http(404L, message)

#' @rdname http_error
#' @export
stop_payload_too_large <- function(message) stop_http(413L, message)

#' @rdname http_error
#' @export
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
