# Running long jobs off the request thread.
#
# plumber serves one request at a time per process; a model fit run inline
# would block `/health` for minutes. `run_in_worker()` runs a function of the
# service's model code in a `future::multisession` worker and returns a promise,
# which plumber resolves before serializing the response. Errors raised in the
# worker (including `stop_bad_request()` and friends) are re-signalled by
# future with their original class, so they reach `json_error_handler()` with
# the right HTTP status.

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

worker_count <- function() env_setting("R_WORKERS", 2L, min = 0)

# `fun_name` names a function defined by the service's R/*.R files (or by
# common); `...` are its arguments and must be plain data (they are serialized
# to the worker). The worker sources common/R and the service's R/ once and
# keeps them for later jobs.
run_in_worker <- function(fun_name, ...) {
  job <- list(
    fun_name = fun_name,
    args = list(...),
    code_dirs = c(getOption("r_service.common_r_dir"), getOption("r_service.code_dir")),
    env_vars = as.list(Sys.getenv(c("MODEL_DIR", "JOB_DIR", "R_SERVICE_NAME")))
  )
  promises::future_promise(
    {
      do.call(Sys.setenv, job$env_vars)
      cache_key <- paste(job$code_dirs, collapse = "|")
      code_env <- get0(".r_service_code", envir = globalenv(), inherits = FALSE)
      if (is.null(code_env) || !identical(attr(code_env, "key"), cache_key)) {
        code_env <- new.env(parent = globalenv())
        for (dir in job$code_dirs) {
          for (file in sort(list.files(dir, pattern = "\\.[Rr]$", full.names = TRUE))) {
            sys.source(file, envir = code_env)
          }
        }
        attr(code_env, "key") <- cache_key
        assign(".r_service_code", code_env, envir = globalenv())
      }
      do.call(get(job$fun_name, envir = code_env), job$args)
    },
    globals = list(job = job),
    packages = character(),
    seed = TRUE,
    stdout = FALSE,
    conditions = character()
  )
}
