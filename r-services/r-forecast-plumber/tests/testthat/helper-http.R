# HTTP test helpers shared by the r-services (start_test_service, http_post...).
source(file.path("..", "..", "..", "common", "testing.R"))

expect_http_error <- function(response, status, pattern) {
  expect_equal(response$status, status, info = response$text)
  expect_match(response$json$error, pattern, fixed = TRUE)
}
