# The shared environment reader and the atomic file writer.

test_that("env_setting gives the default when unset or empty and parses by the default's type", {
  setting <- common_code$env_setting
  expect_identical(setting("X", 2L, env = c(Y = "1")), 2L)
  expect_identical(setting("X", 2L, env = c(X = "")), 2L)
  expect_identical(setting("X", 2L, min = 0, env = c(X = " 4 ")), 4L)
  expect_identical(setting("X", 0.5, env = c(X = "1e-3")), 1e-3)
  expect_identical(setting("X", "a", choices = c("a", "b"), env = c(X = "b")), "b")
})

test_that("env_setting fails loudly, naming the variable, on any bad value", {
  setting <- common_code$env_setting
  expect_error(
    setting("R_WORKERS", 2L, min = 0, env = c(R_WORKERS = "two")),
    "environment variable R_WORKERS must be an integer in [0, Inf], got 'two'", fixed = TRUE
  )
  expect_error(setting("R_WORKERS", 2L, min = 0, env = c(R_WORKERS = "1.5")), "must be an integer", fixed = TRUE)
  expect_error(setting("R_WORKERS", 2L, min = 0, env = c(R_WORKERS = "-1")), "got '-1'", fixed = TRUE)
  expect_error(
    setting("WIDTH", 0.8, max = 0.99, env = c(WIDTH = "1.5")),
    "WIDTH must be a number in [-Inf, 0.99]", fixed = TRUE
  )
  expect_error(
    setting("MODE", "a", choices = c("a", "b"), env = c(MODE = "c")),
    "MODE must be one of a, b, got 'c'", fixed = TRUE
  )
  # The process environment is read when no `env` is given.
  withr::with_envvar(c(JOB_QUEUE_MAX = "lots"), expect_error(common_code$job_queue_max(), "JOB_QUEUE_MAX"))
})

test_that("write_atomically replaces the file whole and fails when the rename fails", {
  dir <- withr::local_tempdir()
  path <- file.path(dir, "model.rds")
  common_code$save_rds_atomically(list(a = 1), path)
  expect_equal(readRDS(path), list(a = 1))
  expect_equal(list.files(dir), "model.rds")
  # A directory in the way: the rename cannot replace it, and nothing is left behind.
  blocked <- file.path(dir, "blocked")
  dir.create(file.path(blocked, "inside"), recursive = TRUE)
  expect_error(common_code$save_rds_atomically(1, blocked), "could not write")
  expect_equal(sort(list.files(dir)), c("blocked", "model.rds"))
})
