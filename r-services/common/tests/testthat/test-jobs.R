# Fits as jobs (SPEC 5): 202 + Location, polling, Idempotency-Key, cancel,
# bounded queue, and jobs of a dead process marked failed.

submit <- function(service, seconds, key = NULL) {
  headers <- if (is.null(key)) character() else c("Idempotency-Key" = key)
  http_post(service, "/echo/job", list(seconds = seconds), headers = headers)
}

test_that("a job answers 202 with Location, and its result is the function's value", {
  accepted <- submit(echo_service, 0.2)
  expect_equal(accepted$status, 202L)
  expect_equal(accepted$headers$location, paste0("/jobs/", accepted$json$job_id))
  expect_true(accepted$json$status %in% c("queued", "running"))
  job <- wait_for_job(echo_service, accepted$json$job_id)
  expect_equal(job$status, "succeeded")
  expect_equal(job$result, 0.2)
  expect_equal(job$attempt, 1L)
})

test_that("bad input is a 400 at once and never a job", {
  before <- job_files(echo_service)
  expect_http_error(http_post(echo_service, "/echo/job", list(seconds = "x")), 400L, "seconds: must be a single number")
  expect_http_error(
    http_post(echo_service, "/echo/job", list(seconds = 61)), 400L,
    "seconds: must be within [0, 60], got 61"
  )
  expect_equal(job_files(echo_service), before)
})

test_that("the same Idempotency-Key gives the same job; another body under it is refused", {
  key <- paste0("dag/run/fit/", sample.int(1e6, 1))
  first <- submit(echo_service, 0.5, key)
  again <- submit(echo_service, 0.5, key)
  expect_equal(first$status, 202L)
  expect_equal(again$status, 200L)
  expect_equal(again$json$job_id, first$json$job_id)
  expect_http_error(submit(echo_service, 0.7, key), 422L, "Idempotency-Key: already used for a different request body")
  expect_equal(wait_for_job(echo_service, first$json$job_id)$status, "succeeded")
  expect_equal(submit(echo_service, 0.5, key)$json$job_id, first$json$job_id)
  expect_http_error(
    http_post(echo_service, "/echo/job", list(seconds = 1), headers = c("Idempotency-Key" = "has space")),
    400L, "Idempotency-Key: must be"
  )
})

test_that("unknown jobs are 404; job endpoints need the token", {
  expect_http_error(http_get(echo_service, "/jobs/job-20240101T000000-0123456789abcdef"), 404L, "job_id: unknown job")
  expect_http_error(http_get(echo_service, "/jobs/..%2F..%2Fetc"), 404L, "job_id: unknown job")
  expect_equal(http_get(echo_service, "/jobs/job-20240101T000000-0123456789abcdef", token = NULL)$status, 401L)
})

test_that("3 jobs on 2 workers queue, a 4th beyond JOB_QUEUE_MAX = 1 gets 429 with Retry-After, none is lost", {
  accepted <- lapply(1:3, function(i) submit(echo_service, 2))
  expect_equal(vapply(accepted, `[[`, integer(1), "status"), rep(202L, 3))
  full <- submit(echo_service, 2)
  expect_http_error(full, 429L, "retry later")
  expect_equal(full$headers$`retry-after`, "10")
  jobs <- lapply(accepted, function(a) wait_for_job(echo_service, a$json$job_id))
  expect_equal(vapply(jobs, `[[`, "", "status"), rep("succeeded", 3))
  expect_equal(submit(echo_service, 0)$status, 202L)
})

test_that("DELETE cancels a running job and the service keeps working", {
  accepted <- submit(echo_service, 30)
  deadline <- Sys.time() + 20
  job_status <- function() http_get(echo_service, paste0("/jobs/", accepted$json$job_id))$json$status
  while (job_status() != "running" && Sys.time() < deadline) {
    Sys.sleep(0.1)
  }
  cancelled <- http_call(echo_service, "DELETE", paste0("/jobs/", accepted$json$job_id))
  expect_equal(cancelled$status, 200L)
  expect_equal(cancelled$json$status, "cancelled")
  expect_equal(wait_for_job(echo_service, accepted$json$job_id)$status, "cancelled")
  # The killed worker is replaced once the pool is idle; later jobs run.
  later_job <- NULL
  deadline <- Sys.time() + 60
  while (is.null(later_job) && Sys.time() < deadline) {
    attempt <- submit(echo_service, 0.1)
    if (attempt$status == 202L) later_job <- wait_for_job(echo_service, attempt$json$job_id) else Sys.sleep(1)
  }
  expect_equal(later_job$status, "succeeded")
})

test_that("a job queued behind a cancelled running job runs once the killed worker is replaced", {
  # One worker: the queued job can only run on the pool rebuilt after the
  # cancelled job's worker is killed (it once stayed queued for good). The
  # cancelled job's worker has forked a child, as rstan forks its chains: the
  # child is killed too (it would keep the worker's connection open and its
  # future would never report the worker gone).
  service <- start_test_service("echo-service", env = c(R_SERVICES_ROOT = fixture_services_root, R_WORKERS = "1"))
  withr::defer(stop_test_service(service))
  pid_file <- tempfile("child-pid-")
  running <- http_post(service, "/echo/fork-job", list(seconds = 30, pid_file = pid_file))
  deadline <- Sys.time() + 20
  while (!file.exists(pid_file) && Sys.time() < deadline) {
    Sys.sleep(0.1)
  }
  child_pid <- as.integer(readLines(pid_file))
  queued <- submit(service, 0.1)
  expect_equal(queued$status, 202L)
  expect_equal(http_call(service, "DELETE", paste0("/jobs/", running$json$job_id))$json$status, "cancelled")
  expect_equal(wait_for_job(service, queued$json$job_id, timeout_s = 20)$status, "succeeded")
  # Gone, or a zombie left to whichever process adopted it.
  child_stat <- tryCatch(readLines(file.path("/proc", child_pid, "stat"), warn = FALSE), error = function(err) "")
  expect_true(!nzchar(child_stat) || grepl("^[0-9]+ \\(.*\\) Z ", child_stat), info = child_stat)
  expect_equal(wait_for_job(service, submit(service, 0.1)$json$job_id, timeout_s = 20)$status, "succeeded")
})

test_that("a job whose service died is failed (503) for any replica sharing JOB_DIR, and its key starts a new job", {
  job_dir <- tempfile("jobs-")
  env <- c(R_SERVICES_ROOT = fixture_services_root, JOB_DIR = job_dir)
  first <- start_test_service("echo-service", env = env)
  accepted <- submit(first, 30, key = "shard-7")
  Sys.sleep(1)
  stop_test_service(first)
  replica <- start_test_service("echo-service", env = env, token = first$token)
  withr::defer(stop_test_service(replica))
  lost <- http_get(replica, paste0("/jobs/", accepted$json$job_id))$json
  expect_equal(lost$status, "failed")
  expect_equal(lost$error$status, 503L)
  expect_match(lost$error$error, "lost its worker")
  resubmitted <- submit(replica, 30, key = "shard-7")
  expect_equal(resubmitted$status, 202L)
  expect_false(resubmitted$json$job_id == accepted$json$job_id)
  expect_equal(http_get(replica, paste0("/jobs/", resubmitted$json$job_id))$json$attempt, 2L)
  expect_equal(submit(replica, 30, key = "shard-7")$json$job_id, resubmitted$json$job_id)
  http_call(replica, "DELETE", paste0("/jobs/", resubmitted$json$job_id))
  expect_length(list.files(job_dir, pattern = "^job-.*\\.json$"), 2L)
})

test_that("junk that JSON parsing would hide is a 400 naming the field", {
  post_raw <- function(text) http_post(echo_service, "/echo/table", raw_body = text)
  expect_http_error(
    post_raw('{"data": {"user_id": [1, 2], "x": [true, 0.5]}}'), 400L,
    "data.x: values must all be booleans (row 2 is number 0.5)"
  )
  expect_http_error(
    post_raw('{"data": {"user_id": [1, "b"], "x": [0.1, 0.5]}}'), 400L,
    "data.user_id: values must all be numbers (row 2 is string \"b\")"
  )
  expect_http_error(
    post_raw('{"data": {"user_id": [1, 2], "x": [0.1, 0.5], "x": [0.2, 0.3]}}'), 400L,
    "data: duplicate key \"x\""
  )
  expect_http_error(
    post_raw('{"data": {"user_id": [1, 2], "x": [true, false]}}'), 400L,
    "data.x: values must be numbers, not booleans (row 1 is true)"
  )
  expect_http_error(
    post_raw('{"data": {"user_id": [1, 2], "x": [0.1, 0.5]}, "scale": true}'), 400L,
    "scale: must be a single number"
  )
  expect_http_error(
    post_raw('{"data": {"user_id": [1, 2], "x": [1, 1e400]}}'), 400L,
    "data.x: values must be finite numbers within +-1e+12 (row 2 is Inf)"
  )
})
