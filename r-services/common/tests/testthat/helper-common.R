source(file.path("..", "..", "testing.R"))

# The package under test, installed by r-services/run-tests; internal
# functions are reached through its namespace.
common_code <- asNamespace("rservicecommon")

fixture_services_root <- normalizePath(file.path("..", "fixtures", "services"))

expect_http_error <- function(response, status, pattern) {
  expect_equal(response$status, status, info = response$text)
  expect_match(response$json$error, pattern, fixed = TRUE)
}
