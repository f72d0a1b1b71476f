# One fixture service for the whole suite; a small body limit makes 413 cheap
# to provoke.
echo_service <- start_test_service(
  "echo-service",
  env = c(R_SERVICES_ROOT = fixture_services_root, MAX_BODY_BYTES = "4000", JOB_QUEUE_MAX = "1")
)
withr::defer(stop_test_service(echo_service), teardown_env())
