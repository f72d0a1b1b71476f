run_service <- function(args, env) {
  processx::run(
    file.path(r_services_root(), "run-service"), args,
    env = c("current", R_SERVICES_ROOT = fixture_services_root, env),
    error_on_status = FALSE, timeout = 60
  )
}

test_that("run-service refuses to start without a token", {
  result <- run_service(c("echo-service", as.character(free_port())), c(R_SERVICE_TOKEN = ""))
  expect_false(result$status == 0)
  expect_match(result$stderr, "R_SERVICE_TOKEN is empty or unset")
})

test_that("run-service rejects unknown services and bad ports", {
  unknown <- run_service(c("no-such-service", "8000"), c(R_SERVICE_TOKEN = "x"))
  expect_false(unknown$status == 0)
  expect_match(unknown$stderr, "no service \"no-such-service\"")
  bad_port <- run_service(c("echo-service", "80a"), c(R_SERVICE_TOKEN = "x"))
  expect_false(bad_port$status == 0)
  expect_match(bad_port$stderr, "port must be an integer")
})
