source(file.path("..", "..", "testing.R"))

common_code <- new.env()
for (file in sort(list.files(file.path("..", "..", "R"), pattern = "\\.R$", full.names = TRUE))) {
  sys.source(file, envir = common_code)
}

fixture_services_root <- normalizePath(file.path("..", "fixtures", "services"))

expect_http_error <- function(response, status, pattern) {
  expect_equal(response$status, status, info = response$text)
  expect_match(response$json$error, pattern, fixed = TRUE)
}
