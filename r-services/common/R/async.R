# Running long jobs off the request thread.
#
# plumber serves one request at a time per process; a model fit run inline
# would block `/health` for minutes. `run_in_worker()` runs a function of the
# service's model code in a `future::multisession` worker and returns a promise,
# which plumber resolves before serializing the response. Errors raised in the
# worker (including `stop_bad_request()` and friends) are re-signalled by
# future with their original class, so they reach `json_error_handler()` with
# the right HTTP status.

#' Worker processes for long jobs
#'
#' `configure_workers()` sets the `future` plan: `workers` multisession
#' workers, or sequential (inline, blocking) for 0. `worker_count()` reads
#' `R_WORKERS` (default 2). `run_in_worker()` runs the function named
#' `fun_name` (of the service's code or of this package) with arguments `...`
#' in a worker and returns a promise; the worker loads this package and the
#' service's `R/` code (see [load_service_code()]) once and reuses them.
#' `stop_bad_request()` and friends raised in the worker keep their status.
#'
#' @param workers number of worker processes.
#' @return `configure_workers()` `workers`, invisibly; `worker_count()` an
#'   integer.
#' @export
configure_workers <- function(workers = worker_count()) {
  if (workers == 0L) {
    future::plan(future::sequential)
  } else {
    # I(): future runs a 1-worker multisession plan in this process otherwise,
    # which would block the server (and /health) for the length of every job.
    future::plan(future::multisession, workers = I(workers))
  }
  invisible(workers)
}

#' @rdname configure_workers
#' @export
worker_count <- function() env_setting("R_WORKERS", 2L, min = 0)

# `fun_name` names a function defined by the service's R/*.R files (or by
# this package); `...` are its arguments and must be plain data (they are
# serialized to the worker). The worker loads this package and the service's
# R/ (option `r_service.code_dir`, set by the launcher) once, as the server
# does (`load_service_code()`), and keeps them for later jobs.
run_in_worker <- function(fun_name, ...) {
  job <- list(
    fun_name = fun_name,
    args = list(...),
    code_dir = getOption("r_service.code_dir"),
    env_vars = as.list(Sys.getenv(c("MODEL_DIR", "JOB_DIR", "R_SERVICE_NAME")))
  )
  promises::future_promise(
    {
      do.call(Sys.setenv, job$env_vars)
      code_env <- get0(".r_service_code", envir = globalenv(), inherits = FALSE)
      if (is.null(code_env) || !identical(attr(code_env, "code_dir"), job$code_dir)) {
        code_env <- rservicecommon::load_service_code(job$code_dir)
        attr(code_env, "code_dir") <- job$code_dir
        assign(".r_service_code", code_env, envir = globalenv())
      }
      do.call(get(job$fun_name, envir = code_env), job$args)
    },
    globals = list(job = job),
    packages = "rservicecommon",
    seed = TRUE,
    stdout = FALSE,
    conditions = character()
  )
}
