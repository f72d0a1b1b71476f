# Helpers for testthat suites that test a service over real HTTP.
# Source from a service's tests/testthat/helper-*.R:
#   source(file.path(r_services_root(), "common", "testing.R"))
# (or with a relative path; see README.md). Needs processx and curl.

r_services_root <- function() {
  root <- Sys.getenv("R_SERVICES_DIR", unset = "")
  if (nzchar(root)) {
    return(normalizePath(root))
  }
  # testthat runs with the working directory at tests/testthat of a service.
  normalizePath(file.path(getwd(), "..", "..", ".."))
}

`%||%` <- function(x, y) if (is.null(x)) y else x

free_port <- function() {
  httpuv::randomPort(min = 20000L, max = 40000L, host = "127.0.0.1")
}

# Starts `r-services/run-service <service_name> <port>` in the background and
# waits until /health answers. Returns a handle for http_call() and
# stop_test_service(). `env` adds environment variables (e.g. MODEL_DIR,
# R_SERVICES_ROOT for fixture services). The port is free when chosen but may be
# taken before the service binds it (another process on the host): then the
# service exits at once and is started again on another port.
start_test_service <- function(service_name, env = character(), timeout_s = 120,
                               token = paste0("test-", paste(sample(c(letters, 0:9), 24, TRUE), collapse = "")),
                               port_attempts = 3L) {
  for (attempt in seq_len(port_attempts)) {
    service <- start_service_on(free_port(), service_name, env, timeout_s, token)
    if (!identical(service, "port taken")) {
      return(service)
    }
  }
  stop("service ", service_name, ": every port tried was taken (", port_attempts, " attempts)")
}

start_service_on <- function(port, service_name, env, timeout_s, token) {
  model_dir <- tempfile("models-")
  stdout_file <- tempfile("service-stdout-", fileext = ".log")
  stderr_file <- tempfile("service-stderr-", fileext = ".log")
  service_env <- c(
    "current",
    R_SERVICE_TOKEN = token,
    MODEL_DIR = model_dir,
    HOST = "127.0.0.1",
    env
  )
  process <- processx::process$new(
    file.path(r_services_root(), "run-service"),
    c(service_name, as.character(port)),
    env = service_env,
    stdout = stdout_file,
    stderr = stderr_file,
    cleanup = TRUE,
    cleanup_tree = TRUE
  )
  service <- list(
    name = service_name,
    url = paste0("http://127.0.0.1:", port),
    port = port,
    token = token,
    model_dir = model_dir,
    process = process,
    stdout_file = stdout_file,
    stderr_file = stderr_file
  )
  deadline <- Sys.time() + timeout_s
  repeat {
    if (!process$is_alive()) {
      stderr_text <- paste(readLines(stderr_file, warn = FALSE), collapse = "\n")
      unlink(model_dir, recursive = TRUE)
      if (grepl("Failed to create server", stderr_text, fixed = TRUE)) {
        return("port taken")
      }
      stop("service ", service_name, " exited with status ", process$get_exit_status(), ":\n", stderr_text)
    }
    health <- tryCatch(http_call(service, "GET", "/health", token = NULL, timeout_s = 5), error = function(err) NULL)
    # The service name tells our process from another server that took the port.
    if (!is.null(health) && health$status == 200L && identical(health$json$service, service_name)) {
      return(service)
    }
    if (Sys.time() > deadline) {
      stop_test_service(service)
      stop("service ", service_name, " did not answer /health within ", timeout_s, " s")
    }
    Sys.sleep(0.25)
  }
}

stop_test_service <- function(service) {
  if (service$process$is_alive()) {
    service$process$kill_tree()
  }
  unlink(service$model_dir, recursive = TRUE)
  invisible(NULL)
}

# One HTTP request. `body` (an R object) is sent as JSON; `raw_body` (a string)
# is sent as is. `token` defaults to the service's; NULL sends no
# Authorization header. Returns list(status, json, text, headers).
http_call <- function(service, method, path, body = NULL, raw_body = NULL,
                      token = service$token, headers = character(), timeout_s = 600) {
  handle <- curl::new_handle(customrequest = method, timeout = timeout_s)
  request_headers <- c("Content-Type" = "application/json", headers)
  if (!is.null(token)) {
    request_headers <- c(request_headers, Authorization = paste("Bearer", token))
  }
  payload <- raw_body
  if (!is.null(body)) {
    payload <- jsonlite::toJSON(body, auto_unbox = TRUE, digits = NA, null = "null", na = "null")
  }
  if (!is.null(payload)) {
    curl::handle_setopt(handle, postfields = as.character(payload))
  }
  curl::handle_setheaders(handle, .list = as.list(request_headers))
  response <- curl::curl_fetch_memory(paste0(service$url, path), handle = handle)
  text <- rawToChar(response$content)
  Encoding(text) <- "UTF-8"
  json <- tryCatch(jsonlite::fromJSON(text, simplifyVector = TRUE), error = function(err) NULL)
  list(
    status = response$status_code,
    json = json,
    text = text,
    headers = curl::parse_headers_list(response$headers)
  )
}

http_post <- function(service, path, body = NULL, ...) http_call(service, "POST", path, body = body, ...)

http_get <- function(service, path, ...) http_call(service, "GET", path, ...)

# The service's stdout so far, one parsed JSON object per line (NULL for a line
# that is not JSON, so tests can assert there is none).
service_log_records <- function(service) {
  lines <- readLines(service$stdout_file, warn = FALSE)
  lapply(lines, function(line) tryCatch(jsonlite::fromJSON(line), error = function(err) NULL))
}

# A fit through its job: POST (202 or 200 with a job), then GET /jobs/<id>
# until the job has finished. Returns list(status, json, job) shaped like the
# synchronous answer: status 200 and the job's result, or the job's error
# status and `{"error": ...}`. A POST that is not accepted comes back as is.
http_fit <- function(service, path, body = NULL, ..., poll_s = 0.2, timeout_s = 600) {
  submitted <- http_post(service, path, body, ...)
  if (!submitted$status %in% c(200L, 202L)) {
    return(submitted)
  }
  job <- wait_for_job(service, submitted$json$job_id, poll_s = poll_s, timeout_s = timeout_s)
  if (job$status == "succeeded") {
    return(list(status = 200L, json = job$result, job = job, submitted = submitted))
  }
  list(status = job$error$status %||% 500L, json = list(error = job$error$error), job = job, submitted = submitted)
}

wait_for_job <- function(service, job_id, poll_s = 0.2, timeout_s = 600) {
  deadline <- Sys.time() + timeout_s
  repeat {
    job <- http_get(service, paste0("/jobs/", job_id))$json
    if (job$status %in% c("succeeded", "failed", "cancelled")) {
      return(job)
    }
    if (Sys.time() > deadline) stop("job ", job_id, " did not finish within ", timeout_s, " s")
    Sys.sleep(poll_s)
  }
}

# Job state files of a service (one per job ever submitted).
job_files <- function(service) {
  list.files(file.path(service$model_dir, "jobs"), pattern = "^job-.*\\.json$")
}
