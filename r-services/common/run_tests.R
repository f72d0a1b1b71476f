# Runs one testthat directory and writes "<passed> <failed> <skipped>" (counted
# in test_that() blocks) to the file given as the second argument.
#   Rscript run_tests.R <tests/testthat dir> <counts file>

args <- commandArgs(trailingOnly = TRUE)
test_dir_path <- normalizePath(args[1], mustWork = TRUE)
counts_file <- args[2]

results <- testthat::test_dir(
  test_dir_path,
  reporter = testthat::ProgressReporter$new(show_praise = FALSE),
  stop_on_failure = FALSE,
  stop_on_warning = FALSE
)
summary_table <- as.data.frame(results)
skipped <- summary_table$skipped
failed <- (summary_table$failed > 0 | summary_table$error) & !skipped
passed <- !failed & !skipped
writeLines(paste(sum(passed), sum(failed), sum(skipped)), counts_file)
