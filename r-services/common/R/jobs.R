# Fits as jobs (SPEC 5, "Fits are jobs").
#
# `POST /<model>/fit` validates in the server process (400 at once, never a
# job), then `submit_job()` records a job and runs it in a `future` worker:
# 202 + `Location: /jobs/<job_id>`. `GET /jobs/<id>` reads the job's state,
# `DELETE /jobs/<id>` cancels it.
#
# State lives on disk under JOB_DIR (default MODEL_DIR/jobs) so that every
# replica sharing the volume answers for every job:
#   <job_id>.json          status, timestamps, owner, error (written atomically:
#                          temporary file + rename)
#   <job_id>.result.rds    the fit response, exactly what the synchronous
#                          endpoint used to return (serialized by plumber on GET)
#   keys/<sha>.<n>         Idempotency-Key -> job, generation n; created with
#                          link(2), which fails if the file exists, so two
#                          replicas racing on one key agree on one job
#   owners/<owner_id>      touched every JOB_HEARTBEAT_S by the process that
#                          runs the owner's jobs
# A job whose owner stopped heartbeating (or whose process is gone on this
# host) is marked failed with status 503 when anyone looks at it; a submit
# with its key then starts a new generation. A job that failed because of its
# input (400) or a bug (500) keeps its key: resubmitting cannot help.

job_id_pattern <- "^job-[0-9]{8}T[0-9]{6}-[0-9a-f]{16}$"
terminal_job_statuses <- c("succeeded", "failed", "cancelled")
# Failures worth a new job under the same key: the work was lost, not wrong.
retryable_job_error_statuses <- c(502L, 503L, 504L)

job_dir <- function() {
  dir <- Sys.getenv("JOB_DIR", unset = "")
  if (!nzchar(dir)) file.path(model_dir(), "jobs") else dir
}

# Jobs a replica accepts beyond its R_WORKERS running ones before it answers 429.
job_queue_max <- function() env_setting("JOB_QUEUE_MAX", 4L, min = 0)
job_retry_after_s <- function() env_setting("JOB_RETRY_AFTER_S", 10L, min = 1)
job_heartbeat_s <- function() env_setting("JOB_HEARTBEAT_S", 5, min = 0.5)
# An owner silent for this long is dead: its unfinished jobs are failed.
job_stale_s <- function() env_setting("JOB_STALE_S", 60, min = 1)
job_retention_days <- function() env_setting("JOB_RETENTION_DAYS", 7, min = 0)

job_settings <- function() {
  list(
    job_dir = job_dir(),
    queue_max = job_queue_max(),
    retry_after_s = job_retry_after_s(),
    heartbeat_s = job_heartbeat_s(),
    stale_s = job_stale_s(),
    retention_days = job_retention_days()
  )
}

# ---- files -------------------------------------------------------------------

job_state_path <- function(job_id) file.path(job_dir(), paste0(job_id, ".json"))
job_result_path <- function(job_id) file.path(job_dir(), paste0(job_id, ".result.rds"))

write_job_state <- function(state) {
  text <- jsonlite::toJSON(state, auto_unbox = TRUE, null = "null", na = "null", digits = NA)
  write_atomically(job_state_path(state$job_id), function(path) writeLines(text, path))
}

read_job_state <- function(job_id) {
  path <- job_state_path(job_id)
  if (!grepl(job_id_pattern, job_id) || !file.exists(path)) {
    return(NULL)
  }
  # A reader never sees a half-written file (rename), but the file may vanish
  # under retention pruning between the two calls.
  tryCatch(jsonlite::fromJSON(path, simplifyVector = TRUE), error = function(err) NULL)
}

# Applies `changes` unless the job has already finished: a finished job's
# state is final (a cancel is not undone by the worker's late answer).
update_job_state <- function(job_id, ...) {
  state <- read_job_state(job_id)
  if (is.null(state) || state$status %in% terminal_job_statuses) {
    return(state)
  }
  state <- utils::modifyList(state, list(...))
  write_job_state(state)
  state
}

new_job_id <- function() {
  paste("job", format(Sys.time(), "%Y%m%dT%H%M%S", tz = "UTC"), random_hex(8L), sep = "-")
}

key_digest <- function(key) {
  paste(as.character(sodium::sha256(charToRaw(enc2utf8(key)))), collapse = "")
}

# Generation files of a key, highest last.
key_generations <- function(digest) {
  files <- list.files(file.path(job_dir(), "keys"), pattern = paste0("^", digest, "\\.[0-9]+$"))
  generations <- as.integer(sub("^.*\\.", "", files))
  sort(generations)
}

key_path <- function(digest, generation) file.path(job_dir(), "keys", paste0(digest, ".", generation))

# Creates `key_path` exclusively; FALSE when another submit won the race.
claim_key <- function(digest, generation, job_id) {
  path <- key_path(digest, generation)
  partial <- temporary_path(path)
  writeLines(job_id, partial)
  on.exit(unlink(partial))
  suppressWarnings(file.link(partial, path))
}

current_job_for_key <- function(digest) {
  generations <- key_generations(digest)
  if (length(generations) == 0) {
    return(NULL)
  }
  generation <- max(generations)
  job_id <- readLines(key_path(digest, generation), n = 1, warn = FALSE)
  list(generation = generation, state = job_state(job_id))
}

# ---- owners and liveness -----------------------------------------------------

job_runtime <- new.env(parent = emptyenv())

owner_id <- function() {
  if (is.null(job_runtime$owner_id)) {
    host <- gsub("[^A-Za-z0-9._-]", "_", Sys.info()[["nodename"]])
    job_runtime$owner_id <- paste(host, Sys.getpid(), random_hex(4L), sep = "-")
  }
  job_runtime$owner_id
}

owner_path <- function(owner) file.path(job_dir(), "owners", owner)

touch_owner <- function() {
  path <- owner_path(owner_id())
  if (!file.exists(path)) {
    file.create(path)
  } else {
    Sys.setFileTime(path, Sys.time())
  }
}

process_alive <- function(pid) isTRUE(tools::pskill(pid, 0L))

owner_alive <- function(state) {
  if (identical(state$owner, owner_id())) {
    return(TRUE)
  }
  same_host <- identical(state$owner_host, Sys.info()[["nodename"]])
  if (same_host && (!process_alive(state$owner_pid) || state$owner_pid == Sys.getpid())) {
    return(FALSE)
  }
  modified <- file.mtime(owner_path(state$owner))
  !is.na(modified) && difftime(Sys.time(), modified, units = "secs") <= job_stale_s()
}

# The job's state, with an unfinished job of a dead owner marked failed.
job_state <- function(job_id) {
  state <- read_job_state(job_id)
  if (!is.null(state) && !state$status %in% terminal_job_statuses && !owner_alive(state)) {
    log_event("warning", "job lost", job_id = job_id, owner = state$owner)
    state <- update_job_state(
      job_id,
      status = "failed",
      finished_at = utc_timestamp(),
      error = list(
        error = "job: lost its worker (the service process running it stopped); submit again",
        status = 503L
      )
    )
  }
  state
}

# ---- worker pool -------------------------------------------------------------

# Jobs wait in this replica's own queue and go to a worker only when one is
# free: `future`'s queue would hand a job to the pool while a killed worker
# still counts as busy and then wait for it for ever. future 1.31 does not
# relaunch a multisession worker that died (killed by a cancel or the OOM
# killer), so the pool is rebuilt once none of its workers runs a job, and
# the queued jobs are dispatched on the new pool.
worker_slots <- function() max(worker_count(), 1L)

queued_job_ids <- function() names(job_runtime$queue %||% list())
running_job_ids <- function() job_runtime$running %||% character()
active_job_count <- function() length(queued_job_ids()) + length(running_job_ids())

mark_pool_broken <- function(err) {
  if (inherits(err, "FutureError")) job_runtime$pool_broken <- TRUE
}

rebuild_pool_if_idle <- function() {
  if (isTRUE(job_runtime$pool_broken) && length(running_job_ids()) == 0L) {
    log_event("warning", "rebuilding the worker pool after a worker died", queued = length(queued_job_ids()))
    future::plan(future::sequential)
    configure_workers(worker_count())
    job_runtime$pool_broken <- FALSE
  }
  !isTRUE(job_runtime$pool_broken)
}

# Parent pid of every process (Linux procfs; empty elsewhere), named by pid.
parent_pids <- function() {
  pids <- list.files("/proc", pattern = "^[0-9]+$")
  parents <- vapply(pids, function(pid) {
    line <- tryCatch(readLines(file.path("/proc", pid, "stat"), n = 1L, warn = FALSE), error = function(err) "")
    # "pid (command) state ppid ...": the command may hold spaces and parentheses.
    suppressWarnings(as.integer(strsplit(sub("^.*\\) ", "", line), " ", fixed = TRUE)[[1]][2]))
  }, integer(1))
  names(parents) <- pids
  parents
}

# The process and every process it started, at any depth.
process_tree <- function(pid) {
  parents <- parent_pids()
  tree <- as.integer(pid)
  repeat {
    children <- setdiff(as.integer(names(parents)[parents %in% tree]), tree)
    if (length(children) == 0L) {
      return(tree)
    }
    tree <- c(tree, children)
  }
}

# Stops a cancelled job's worker with every process it started: rstan forks
# its chains, and killed alone the worker would leave them sampling and holding
# its connection to this server open, so that its future would never report
# the worker gone (the job's slot stayed taken and the pool was never rebuilt).
stop_worker <- function(worker_pid) {
  tools::pskill(process_tree(worker_pid), tools::SIGKILL)
}

enqueue_job <- function(job_id, fun_name, args) {
  queue <- job_runtime$queue %||% list()
  queue[[job_id]] <- list(fun_name = fun_name, args = args)
  job_runtime$queue <- queue
  dispatch_jobs()
}

# Starts queued jobs, oldest first, while a worker of a healthy pool is free.
dispatch_jobs <- function() {
  while (length(queued_job_ids()) > 0 && rebuild_pool_if_idle() && length(running_job_ids()) < worker_slots()) {
    job_id <- queued_job_ids()[[1]]
    job <- job_runtime$queue[[job_id]]
    job_runtime$queue[[job_id]] <- NULL
    if (!identical(read_job_state(job_id)$status, "queued")) {
      next # cancelled while it waited: nothing to run
    }
    job_runtime$running <- union(running_job_ids(), job_id)
    launch_job(job_id, job$fun_name, job$args)
  }
  invisible(NULL)
}

# Every JOB_HEARTBEAT_S: show this owner is alive; stop the worker of a job
# cancelled meanwhile (by this or another replica).
job_heartbeat <- function() {
  tryCatch(
    {
      touch_owner()
      for (job_id in running_job_ids()) {
        state <- read_job_state(job_id)
        if (identical(state$status, "cancelled") && !is.null(state$worker_pid) && process_alive(state$worker_pid)) {
          log_event("info", "stopping the worker of a cancelled job", job_id = job_id, worker_pid = state$worker_pid)
          stop_worker(state$worker_pid)
        }
      }
    },
    error = function(err) log_event("error", "job heartbeat failed", error = conditionMessage(err))
  )
  later::later(job_heartbeat, job_heartbeat_s())
}

# Removes finished jobs older than JOB_RETENTION_DAYS and their keys.
prune_jobs <- function(now = Sys.time()) {
  cutoff <- now - job_retention_days() * 86400
  removed <- character()
  for (path in list.files(job_dir(), pattern = "^job-.*\\.json$", full.names = TRUE)) {
    state <- tryCatch(jsonlite::fromJSON(path), error = function(err) NULL)
    finished <- if (is.null(state$finished_at)) NA else as.POSIXct(state$finished_at, "%Y-%m-%dT%H:%M:%OSZ", tz = "UTC")
    if (!is.na(finished) && finished < cutoff) {
      unlink(c(path, job_result_path(state$job_id)))
      removed <- c(removed, state$job_id)
    }
  }
  for (path in list.files(file.path(job_dir(), "keys"), full.names = TRUE)) {
    if (readLines(path, n = 1, warn = FALSE) %in% removed) unlink(path)
  }
  for (path in list.files(file.path(job_dir(), "owners"), full.names = TRUE)) {
    if (difftime(now, file.mtime(path), units = "days") > max(1, job_retention_days())) unlink(path)
  }
  invisible(removed)
}

# Called by the launcher before the service listens.
#' @rdname submit_job
#' @export
start_job_system <- function() {
  invisible(job_settings())
  for (dir in c(job_dir(), file.path(job_dir(), c("keys", "owners")))) {
    dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  }
  Sys.setenv(JOB_DIR = normalizePath(job_dir(), mustWork = TRUE))
  pruned <- prune_jobs()
  if (length(pruned) > 0) log_event("info", "pruned old jobs", n = length(pruned))
  job_heartbeat()
}

# ---- running a job -----------------------------------------------------------

# Runs in the worker: `job_fun` with `job_args`, result stored next to the state.
execute_job <- function(job_id, job_fun, job_args) {
  state <- read_job_state(job_id)
  if (is.null(state) || state$status != "queued") {
    return(list(status = state$status %||% "missing"))
  }
  update_job_state(job_id, status = "running", started_at = utc_timestamp(), worker_pid = Sys.getpid())
  outcome <- tryCatch(
    {
      result <- do.call(get(job_fun, envir = service_code(), mode = "function"), job_args)
      save_rds_atomically(result, job_result_path(job_id))
      list(status = "succeeded")
    },
    error = function(err) {
      if (is_http_error(err)) {
        list(status = "failed", error = list(error = conditionMessage(err), status = err$status))
      } else {
        list(
          status = "failed",
          error = list(error = paste0("internal error (job ", job_id, ")"), status = 500L),
          internal_error = conditionMessage(err)
        )
      }
    }
  )
  update_job_state(job_id, status = outcome$status, finished_at = utc_timestamp(), error = outcome$error)
  outcome
}

launch_job <- function(job_id, fun_name, args) {
  finish <- function(outcome) {
    job_runtime$running <- setdiff(running_job_ids(), job_id)
    log_event(
      if (is.null(outcome$internal_error)) "info" else "error",
      "job finished",
      job_id = job_id, status = outcome$status, error = outcome$internal_error
    )
    dispatch_jobs()
  }
  promise <- run_in_worker("execute_job", job_id = job_id, job_fun = fun_name, job_args = args)
  promises::then(
    promise,
    onFulfilled = finish,
    onRejected = function(err) {
      mark_pool_broken(err)
      worker_died <- inherits(err, "FutureError")
      update_job_state(
        job_id,
        status = "failed",
        finished_at = utc_timestamp(),
        error = if (worker_died) {
          list(error = "job: lost its worker (the worker process died); submit again", status = 503L)
        } else {
          list(error = paste0("internal error (job ", job_id, ")"), status = 500L)
        }
      )
      finish(list(status = "failed", internal_error = conditionMessage(err)))
    }
  )
  invisible(NULL)
}

job_location <- function(job_id) paste0("/jobs/", job_id)

job_accepted <- function(res, state, status) {
  res$status <- status
  res$setHeader("Location", job_location(state$job_id))
  list(job_id = state$job_id, status = state$status)
}

unavailable <- function(res, status, message) {
  res$setHeader("Retry-After", as.character(job_retry_after_s()))
  stop_http(status, message)
}

valid_idempotency_key <- function(key) {
  !is.null(key) && nchar(key, type = "bytes") <= 255 && grepl("^[\\x21-\\x7e]+$", key, perl = TRUE)
}

# Call from a fit endpoint once its input is valid: answers 202 with the new
# job, or 200 with the job already holding this request's Idempotency-Key.
# `fun_name` (with `...`) runs in a worker and returns the fit response.
#' Fit jobs
#'
#' `submit_job()` records a job that runs `fun_name(...)` in a worker and
#' answers 202 with `Location: /jobs/<job_id>` (or 200 with the job already
#' submitted under the request's `Idempotency-Key`, 422 for that key with
#' another body, 429 when the replica's queue is full). `get_job()` and
#' `cancel_job()` serve `GET` and `DELETE /jobs/<job_id>`.
#' `start_job_system()` prepares `JOB_DIR`, prunes old jobs and starts the
#' heartbeat; the launcher calls it once.
#'
#' @param req,res the plumber request and response.
#' @param fun_name name of the worker function.
#' @param ... its arguments (evaluated before any job exists, so validation
#'   failures are 400s).
#' @return `submit_job()`, `get_job()`, `cancel_job()` the job's public view.
#' @export
submit_job <- function(req, res, fun_name, ...) {
  # Arguments first: validation code passed as an argument must fail before a job exists.
  args <- list(...)
  key <- req$HTTP_IDEMPOTENCY_KEY
  if (!is.null(key) && !valid_idempotency_key(key)) {
    stop_bad_request("Idempotency-Key: must be 1-255 printable ASCII characters without spaces")
  }
  fingerprint <- paste(as.character(sodium::sha256(req$bodyRaw %||% raw())), collapse = "")
  digest <- if (is.null(key)) NULL else key_digest(key)
  generation <- 1L
  if (!is.null(digest)) {
    current <- current_job_for_key(digest)
    if (!is.null(current) && !is.null(current$state)) {
      if (!identical(current$state$request_sha256, fingerprint)) {
        stop_http(422L, "Idempotency-Key: already used for a different request body")
      }
      replaceable <- current$state$status == "cancelled" ||
        (current$state$status == "failed" && isTRUE(current$state$error$status %in% retryable_job_error_statuses))
      if (!replaceable) {
        return(job_accepted(res, current$state, 200L))
      }
    }
    if (!is.null(current)) generation <- current$generation + 1L
  }
  capacity <- worker_slots() + job_queue_max()
  if (active_job_count() >= capacity) {
    unavailable(res, 429L, sprintf(
      "service: %d jobs are running or queued on this replica (the limit); retry later", active_job_count()
    ))
  }
  state <- list(
    job_id = new_job_id(),
    status = "queued",
    endpoint = req$PATH_INFO,
    attempt = generation,
    request_sha256 = fingerprint,
    idempotency_key = key,
    owner = owner_id(),
    owner_host = Sys.info()[["nodename"]],
    owner_pid = Sys.getpid(),
    created_at = utc_timestamp()
  )
  write_job_state(state)
  if (!is.null(digest) && !claim_key(digest, generation, state$job_id)) {
    # Another submit (maybe on another replica) claimed this generation first.
    unlink(job_state_path(state$job_id))
    winner <- current_job_for_key(digest)
    return(job_accepted(res, winner$state, 200L))
  }
  log_event("info", "job queued", job_id = state$job_id, endpoint = state$endpoint, attempt = generation)
  enqueue_job(state$job_id, fun_name, args)
  job_accepted(res, state, 202L)
}

# ---- job endpoints -----------------------------------------------------------

job_or_404 <- function(job_id) {
  state <- if (grepl(job_id_pattern, job_id)) job_state(job_id) else NULL
  if (is.null(state)) {
    stop_not_found(paste0("job_id: unknown job ", format_value(job_id)))
  }
  state
}

job_view <- function(state) {
  view <- state[intersect(
    c("job_id", "status", "attempt", "created_at", "started_at", "finished_at", "error"),
    names(state)
  )]
  if (state$status == "running" && !is.null(state$started_at)) {
    started <- as.POSIXct(state$started_at, "%Y-%m-%dT%H:%M:%OSZ", tz = "UTC")
    view$progress <- list(running_s = round(as.numeric(difftime(Sys.time(), started, units = "secs")), 1))
  }
  if (state$status == "succeeded") {
    view$result <- readRDS(job_result_path(state$job_id))
  }
  view
}

#' @rdname submit_job
#' @param job_id the job's id.
#' @export
get_job <- function(job_id) job_view(job_or_404(job_id))

#' @rdname submit_job
#' @export
cancel_job <- function(job_id) {
  state <- job_or_404(job_id)
  if (!state$status %in% terminal_job_statuses) {
    state <- update_job_state(job_id, status = "cancelled", finished_at = utc_timestamp())
    log_event("info", "job cancelled", job_id = job_id)
  }
  job_view(state)
}
