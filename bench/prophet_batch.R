#!/usr/bin/env Rscript
# Prophet batch benchmark for r-forecast-plumber.
#
#   Rscript bench/prophet_batch.R [n_series] [repeats] [output.md]
#   (defaults: 200 series, 3 repeats, docs/bench-prophet.md; run from the repo root)
#
# Starts its own service instances on free ports (PROPHET_CORES = 2 and = 1)
# and measures series fitted per second for
#   (a) one request carrying N series,
#   (b) N sequential requests of one series each (one HTTP round trip, one
#       worker job and one model file per series),
#   (c) (a) again with PROPHET_CORES = 1, for the speed-up of parallel fits.
# Each series is 12 weekly points, forecast 4 weeks. Reports the median of
# `repeats` runs and writes a markdown table.

args <- commandArgs(trailingOnly = TRUE)
n_series <- if (length(args) >= 1) as.integer(args[1]) else 200L
repeats <- if (length(args) >= 2) as.integer(args[2]) else 3L
output <- if (length(args) >= 3) args[3] else file.path("docs", "bench-prophet.md")

repo_root <- normalizePath(".")
Sys.setenv(R_SERVICES_DIR = file.path(repo_root, "r-services"))
source(file.path(repo_root, "r-services", "common", "testing.R"))

simulate_series <- function(n_series, n_weeks = 12, seed = 1) {
  set.seed(seed)
  ds <- format(as.Date("2026-01-05") + 7L * (seq_len(n_weeks) - 1L))
  y <- unlist(lapply(seq_len(n_series), function(i) {
    50 + stats::rnorm(1) * seq_len(n_weeks) + stats::rnorm(n_weeks, 0, 2)
  }))
  list(series_id = rep(seq_len(n_series), each = n_weeks), ds = rep(ds, n_series), y = y)
}

fit_body <- function(series, ids) {
  rows <- series$series_id %in% ids
  list(series = lapply(series, function(column) I(column[rows])), forecast_weeks = 4, anomaly_threshold = 2.5)
}

post_fit <- function(service, body) {
  response <- http_post(service, "/prophet/fit", body)
  if (response$status != 200L) stop("fit failed: ", response$text)
  response$json
}

elapsed <- function(expr) {
  started <- Sys.time()
  force(expr)
  as.numeric(difftime(Sys.time(), started, units = "secs"))
}

# Both workers of the service source the code and load prophet's Stan model
# on their first job; those seconds are start-up, not throughput.
warm_up <- function(service, series) {
  for (i in 1:4) post_fit(service, fit_body(series, 1:4))
}

# How much two processes gain over one on this machine right now, for plain
# R arithmetic. On a shared machine other jobs can take the second core; then
# no code can show a 2-core speed-up, and this number says so.
cpu_parallel_capacity <- function() {
  busy <- function(i) {
    total <- 0
    for (j in 1:1e7) total <- total + j
    total
  }
  elapsed(lapply(1:4, busy)) / elapsed(parallel::mclapply(1:4, busy, mc.cores = 2))
}

series <- simulate_series(n_series)
load_before <- readLines("/proc/loadavg")
capacity_before <- cpu_parallel_capacity()

measure_service <- function(cores, one_by_one) {
  service <- start_test_service("r-forecast-plumber", env = c(PROPHET_CORES = as.character(cores)))
  on.exit(stop_test_service(service))
  warm_up(service, series)
  batch_s <- replicate(repeats, elapsed(post_fit(service, fit_body(series, seq_len(n_series)))))
  single_s <- if (one_by_one) {
    replicate(repeats, elapsed(for (id in seq_len(n_series)) post_fit(service, fit_body(series, id))))
  } else {
    NA_real_
  }
  list(batch_s = stats::median(batch_s), single_s = stats::median(single_s))
}

two_cores <- measure_service(2L, one_by_one = TRUE)
one_core <- measure_service(1L, one_by_one = FALSE)
capacity_after <- cpu_parallel_capacity()

rate <- function(seconds) n_series / seconds
rows <- data.frame(
  mode = c(
    sprintf("one request of %d series, PROPHET_CORES=2", n_series),
    sprintf("%d requests of 1 series, PROPHET_CORES=2", n_series),
    sprintf("one request of %d series, PROPHET_CORES=1", n_series)
  ),
  seconds = c(two_cores$batch_s, two_cores$single_s, one_core$batch_s)
)
rows$series_per_s <- rate(rows$seconds)
batch_vs_single <- two_cores$single_s / two_cores$batch_s
two_vs_one <- one_core$batch_s / two_cores$batch_s

table_lines <- c(
  "| mode | seconds (median) | series/s |",
  "|---|---:|---:|",
  sprintf("| %s | %.2f | %.1f |", rows$mode, rows$seconds, rows$series_per_s)
)
ratio_lines <- c(
  sprintf("- batch vs one-series requests (2 cores): **%.1fx** series/s", batch_vs_single),
  sprintf("- 2 cores vs 1 core (batch request): **%.2fx** series/s", two_vs_one),
  sprintf(
    "- for reference, 2 processes vs 1 on plain R arithmetic on this machine at the time: %.2fx before, %.2fx after the run (2.0x = two idle cores)",
    capacity_before, capacity_after
  )
)
cat(table_lines, "", ratio_lines, sep = "\n")

report <- c(
  "# Prophet batch benchmark (r-forecast-plumber)",
  "",
  "Command (from the repository root):",
  "",
  "```sh",
  sprintf("Rscript bench/prophet_batch.R %d %d %s", n_series, repeats, output),
  "```",
  "",
  sprintf(
    "%d synthetic weekly series of 12 points, 4-week forecast, anomaly threshold 2.5; median of %d runs after warm-up. The script starts its own service instances (`R_WORKERS=2`, default) on free ports. One-series requests are sent sequentially by one client.",
    n_series, repeats
  ),
  sprintf(
    "Machine: %d cores (`nproc`), R %s, prophet %s; load average before the run: %s.",
    parallel::detectCores(), getRversion(), utils::packageVersion("prophet"),
    paste(strsplit(load_before, " ")[[1]][1:3], collapse = " ")
  ),
  "",
  table_lines,
  "",
  ratio_lines,
  "",
  "Reading the numbers:",
  "",
  "- A one-series request pays a fixed cost per call (HTTP, JSON, handing the job to a worker process, writing one model file) that is larger than the fit itself (a 12-point prophet fit with `uncertainty.samples = 0` takes ~30 ms, two passes when an outlier is screened out). Batching amortises it, which is why the DAG sends chunks of students per request.",
  "- `PROPHET_CORES` forks that many processes per request (`parallel::mclapply`). Its speed-up is bounded by the reference line above: when other jobs occupy the machine's cores, forking cannot help (and costs a little). Below 2x even on idle cores because validation, forking, collecting results, storing the model and serializing the response are serial.",
  ""
)
dir.create(dirname(output), recursive = TRUE, showWarnings = FALSE)
writeLines(report, output)
cat("wrote", output, "\n")
