# Starts one service in the foreground. Called by `r-services/run-service`:
#   Rscript launch.R <services_root> <service_name> <port>
# Environment: R_SERVICE_TOKEN (required), HOST (default 127.0.0.1),
# MODEL_DIR (default <working directory>/models), R_WORKERS (default 2),
# MAX_BODY_BYTES (default 50 MiB), JOB_DIR (default MODEL_DIR/jobs) and the
# other JOB_* settings of R/jobs.R.
#
# Shared code comes from the installed package rservicecommon (this directory,
# installed by scripts/install-r-common.sh or the image's R CMD INSTALL); the
# service's R/*.R are sourced into their own environment whose parent is the
# package namespace (rservicecommon::load_service_code()), and plumber.R is
# evaluated there.

fail <- function(...) {
  message("run-service: ", ...)
  quit(save = "no", status = 2)
}

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 3) {
  fail("usage: run-service <service-name> <port>")
}
services_root <- normalizePath(args[1], mustWork = TRUE)
service_name <- args[2]
port <- suppressWarnings(as.integer(args[3]))

if (!grepl("^[A-Za-z0-9._-]+$", service_name)) {
  fail("invalid service name ", encodeString(service_name, quote = "\""))
}
service_dir <- file.path(services_root, service_name)
if (!file.exists(file.path(service_dir, "plumber.R"))) {
  fail("no service ", encodeString(service_name, quote = "\""), " (expected ", file.path(service_dir, "plumber.R"), ")")
}
if (is.na(port) || port < 1L || port > 65535L || as.character(port) != args[3]) {
  fail("port must be an integer in 1..65535, got ", encodeString(args[3], quote = "\""))
}
if (!nzchar(Sys.getenv("R_SERVICE_TOKEN"))) {
  fail("R_SERVICE_TOKEN is empty or unset; refusing to start without an auth token")
}
host <- Sys.getenv("HOST", unset = "")
if (!nzchar(host)) host <- "127.0.0.1"

if (!requireNamespace("rservicecommon", quietly = TRUE)) {
  fail(
    "the R package rservicecommon is not installed in ", paste(.libPaths(), collapse = ":"),
    " (run scripts/install-r-common.sh)"
  )
}
model_dir_path <- Sys.getenv("MODEL_DIR", unset = "")
if (!nzchar(model_dir_path)) model_dir_path <- file.path(getwd(), "models")
dir.create(model_dir_path, recursive = TRUE, showWarnings = FALSE)
# Absolute paths in the environment so that workers agree with this process.
Sys.setenv(
  MODEL_DIR = normalizePath(model_dir_path, mustWork = TRUE),
  R_SERVICE_NAME = service_name
)

# The service's code directory, for the workers (run_in_worker()) and for
# service code that finds files beside it.
options(r_service.code_dir = file.path(service_dir, "R"))
code_env <- rservicecommon::load_service_code(file.path(service_dir, "R"))

invisible(tryCatch(rservicecommon::max_body_bytes(), error = function(err) fail(conditionMessage(err))))
workers <- tryCatch(rservicecommon::worker_count(), error = function(err) fail(conditionMessage(err)))

# A service may prepare expensive state (e.g. compiled Stan models) before it
# accepts requests.
on_service_start <- get0("on_service_start", envir = code_env, inherits = FALSE)
if (is.function(on_service_start)) {
  rservicecommon::log_event("info", "preparing service")
  on_service_start()
}

rservicecommon::configure_workers(workers)
invisible(tryCatch(rservicecommon::start_job_system(), error = function(err) fail(conditionMessage(err))))
router <- rservicecommon::build_service(service_dir, service_name, code_env)
rservicecommon::log_event(
  "info", "service starting",
  host = host, port = port, model_dir = Sys.getenv("MODEL_DIR"), workers = workers
)
router$run(host = host, port = port, docs = TRUE, quiet = TRUE)
