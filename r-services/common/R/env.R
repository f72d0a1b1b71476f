# The one reader of settings a service takes from the environment. Unset or
# empty gives the default; any other value must parse and lie in bounds, or the
# call fails naming the variable (a service checks its settings at start, so a
# typo stops it instead of running with a value nobody chose).
#
#   env_setting("R_WORKERS", 2L, min = 0)            integer (the default's type)
#   env_setting("JOB_HEARTBEAT_S", 5, min = 0.5)     number
#   env_setting("PROPHET_GROWTH", "linear", choices = c("linear", "flat"))
#
# `env` (a named character vector, e.g. c(R_WORKERS = "4")) replaces the
# process environment, for tests.
#' A setting from the environment, or a loud failure
#'
#' The one reader of environment settings. Unset or empty gives `default`;
#' otherwise the value is parsed by the default's type (integer for `2L`,
#' number for `2`, one of `choices` for a string) and must lie in
#' `[min, max]`, or the call fails with `environment variable NAME must be
#' ... got '...'`.
#'
#' @param name the variable's name.
#' @param default value when unset or empty; its type decides the parsing.
#' @param min,max allowed range of a number.
#' @param choices allowed values of a string.
#' @param env a named character vector standing in for the environment
#'   (tests); `NULL` reads the process environment.
#' @return the value.
#' @export
env_setting <- function(name, default, min = -Inf, max = Inf, choices = NULL, env = NULL) {
  text <- if (is.null(env)) Sys.getenv(name, unset = "") else unname(env[name])
  if (length(text) != 1 || is.na(text) || !nzchar(trimws(text))) {
    return(default)
  }
  text <- trimws(text)
  shown <- encodeString(text, quote = "'")
  if (!is.null(choices)) {
    if (!text %in% choices) {
      stop(sprintf("environment variable %s must be one of %s, got %s", name, paste(choices, collapse = ", "), shown))
    }
    return(text)
  }
  integer <- is.integer(default)
  value <- suppressWarnings(as.numeric(text))
  if (is.na(value) || (integer && value != round(value)) || value < min || value > max) {
    stop(sprintf(
      "environment variable %s must be %s in [%s, %s], got %s",
      name, if (integer) "an integer" else "a number", format(min), format(max), shown
    ))
  }
  if (integer) as.integer(value) else value
}
