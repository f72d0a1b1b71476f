expect_bad_request <- function(expr, message) {
  err <- tryCatch(expr, http_error = function(condition) condition)
  expect_s3_class(err, "http_error")
  expect_equal(err$status, 400L)
  expect_equal(conditionMessage(err), message)
}

test_that("validate_table returns a data frame of the columns", {
  table <- common_code$validate_table(list(a = c(1, 2), b = c("x", "y")), "data", required = "a")
  expect_equal(nrow(table), 2)
  expect_equal(table$b, c("x", "y"))
})

test_that("column checks name the field and the first bad row", {
  table <- data.frame(week = c(0, 1.5, 2), goal = c(0.2, 0.3, -1))
  expect_bad_request(
    common_code$check_numeric_column(table, "week", integer = TRUE),
    "data.week: values must be whole numbers (row 2 is 1.5)"
  )
  expect_bad_request(
    common_code$check_probability_column(table, "goal", field = "targets"),
    "targets.goal: values must be within [0, 1] (row 3 is -1)"
  )
  expect_bad_request(
    common_code$check_choice_column(data.frame(m = c("a", "c")), "m", c("a", "b")),
    "data.m: values must be one of \"a\", \"b\" (row 2 is \"c\")"
  )
})

test_that("scalar helpers apply defaults and ranges", {
  expect_equal(common_code$scalar_number(list(), "iter", default = 1000, min = 10), 1000)
  expect_identical(common_code$scalar_number(list(iter = 200), "iter", integer = TRUE), 200L)
  expect_bad_request(common_code$scalar_number(list(), "iter"), "iter: required field is missing")
  expect_bad_request(
    common_code$scalar_string(list(family = "poisson"), "family", choices = c("gaussian", "binomial")),
    "family: must be one of \"gaussian\", \"binomial\", got \"poisson\""
  )
  expect_bad_request(common_code$string_array(list(f = c("a", "a")), "f"), "f: values must be distinct (\"a\" repeats)")
})

test_that("tokens_equal compares whole tokens", {
  expect_true(common_code$tokens_equal("abc", "abc"))
  expect_false(common_code$tokens_equal("abc", "abcd"))
  expect_false(common_code$tokens_equal("abd", "abc"))
  expect_false(common_code$tokens_equal("", "abc"))
})

test_that("check_numeric_column names the first offending row and refuses huge or non-finite values", {
  check <- function(values, ...) common_code$check_numeric_column(list(x = values), "x", ...)
  expect_error(check(c("1", "2", "high")), "data.x: values must be numbers (row 3 is \"high\")", fixed = TRUE)
  expect_error(check(c("1", "2")), "data.x: values must be numbers, not strings (row 1 is \"1\")", fixed = TRUE)
  expect_error(check(c(1, 2e12)), "data.x: values must be finite numbers within +-1e+12 (row 2 is 2e+12)", fixed = TRUE)
  expect_error(check(c(-Inf, 1)), "(row 1 is -Inf)", fixed = TRUE)
  expect_equal(check(c(1, -1e12)), c(1, -1e12))
  # A NaN is a broken value, not a missing one, even where nulls are allowed.
  expect_error(
    check(c(1, NA, NaN), allow_missing = TRUE),
    "data.x: values must be numbers or null, not NaN (row 3)", fixed = TRUE
  )
  expect_equal(check(c(1, NA), allow_missing = TRUE), c(1, NA))
})

test_that("check_unique_rows names the repeated key", {
  table <- data.frame(user_id = c(1, 2, 1), week = c(0, 0, 0))
  expect_error(
    common_code$check_unique_rows(table, c("user_id", "week")),
    "data: rows must be unique on (user_id, week); row 3 repeats user_id 1, week 0", fixed = TRUE
  )
})
