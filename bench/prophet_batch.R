#!/usr/bin/env Rscript
# Prophet batch benchmark for r-forecast-plumber: this checkout vs another version.
#
#   Rscript bench/prophet_batch.R [n_series] [chunk_size] [baseline_ref] [output.md] [mode]
#   (defaults: 10000 series, chunks of 500, baseline main, docs/bench-prophet.md,
#    mode wall; run from the repo root of a git checkout)
#
# mode "cpu" measures instead the CPU seconds (user + system) one process
# spends in `fit_prophet_batch()` (PROPHET_CORES = 1, no HTTP) for the same
# series, per version: on a machine shared with other jobs, wall-clock time
# measures the other jobs, CPU time much less so.
#
# Starts two service instances on free ports, both with PROPHET_CORES = 2 and
# R_WORKERS = 2: this checkout's r-services and `baseline_ref`'s (exported with
# `git archive`). Sends the same n_series synthetic students (12 weekly points
# of I_t, attempts and active days, forecast 4 weeks) to each as the DAG does:
# one /prophet/fit request per chunk of `chunk_size` series, one after the
# other (one Airflow worker). Reports wall-clock seconds per version. A
# version that does not know a column (activity, active_days, y_max) ignores it.

args <- commandArgs(trailingOnly = TRUE)
n_series <- if (length(args) >= 1) as.integer(args[1]) else 10000L
chunk_size <- if (length(args) >= 2) as.integer(args[2]) else 500L
baseline_ref <- if (length(args) >= 3) args[3] else "main"
output <- if (length(args) >= 4) args[4] else file.path("docs", "bench-prophet.md")
mode <- if (length(args) >= 5) args[5] else "wall"

repo_root <- normalizePath(".")
source(file.path(repo_root, "r-services", "common", "testing.R"))

# Students like the synthetic generator's: sessions ~ Poisson(2-6 a week) of
# ~12-30 attempts; I_t from accuracy and attempts; a few spikes, dips and churns.
simulate_students <- function(n_series, n_weeks = 12, seed = 1) {
  set.seed(seed)
  ds <- format(as.Date("2026-08-31") + 7L * (seq_len(n_weeks) - 1L))
  rows <- lapply(seq_len(n_series), function(i) {
    sessions_per_week <- stats::runif(1, 2, 6)
    factor <- ifelse(stats::runif(n_weeks) < 0.025, sample(c(3.5, 0.15), n_weeks, TRUE), 1)
    if (stats::runif(1) < 0.1) factor[seq(sample(6:11, 1), n_weeks)] <- 0
    sessions <- stats::rpois(n_weeks, sessions_per_week * factor)
    size <- stats::runif(1, 12, 30)
    attempts <- vapply(sessions, function(s) sum(1 + stats::rpois(s, size - 1)), numeric(1))
    accuracy <- pmin(0.95, stats::runif(1, 0.4, 0.7) + stats::rnorm(1, 0.02, 0.01) * seq_len(n_weeks))
    correct <- stats::rbinom(n_weeks, attempts, accuracy)
    i_t <- ifelse(attempts > 0, pmin(100, 100 * correct / pmax(attempts, 1) * log1p(attempts) / log(201)), 0)
    list(y = i_t, activity = attempts, active_days = pmin(7, sessions))
  })
  list(
    series_id = rep(seq_len(n_series), each = n_weeks),
    ds = rep(ds, n_series),
    y = unlist(lapply(rows, `[[`, "y")),
    activity = unlist(lapply(rows, `[[`, "activity")),
    active_days = unlist(lapply(rows, `[[`, "active_days"))
  )
}

fit_body <- function(series, ids) {
  rows <- series$series_id %in% ids
  list(
    series = lapply(series, function(column) I(column[rows])),
    y_min = 0, y_max = 100, forecast_weeks = 4, anomaly_threshold = 2.5
  )
}

# A fit answered synchronously (200, versions before fit jobs) or as a job
# (202, then polled until done: the DAG's way since fit jobs).
post_fit <- function(service, body) {
  response <- http_post(service, "/prophet/fit", body)
  if (response$status == 202L) {
    job <- wait_for_job(service, response$json$job_id, poll_s = 0.1, timeout_s = 1800)
    if (job$status != "succeeded") stop("fit job failed: ", job$error$error %||% job$status)
    return(job$result)
  }
  if (response$status != 200L) stop("fit failed: ", response$text)
  response$json
}

elapsed <- function(expr) {
  started <- Sys.time()
  force(expr)
  as.numeric(difftime(Sys.time(), started, units = "secs"))
}

# How much two processes gain over one on this machine right now, for plain
# R arithmetic (2.0x = two idle cores; a shared machine shows less).
cpu_parallel_capacity <- function() {
  busy <- function(i) {
    total <- 0
    for (j in 1:1e7) total <- total + j
    total
  }
  elapsed(lapply(1:4, busy)) / elapsed(parallel::mclapply(1:4, busy, mc.cores = 2))
}

export_version <- function(ref) {
  directory <- tempfile("prophet-baseline-")
  dir.create(directory)
  status <- system(sprintf("git archive %s r-services | tar -x -C %s", shQuote(ref), shQuote(directory)))
  if (status != 0) stop("could not export r-services of ", ref)
  file.path(directory, "r-services")
}

measure <- function(services_dir, series) {
  Sys.setenv(R_SERVICES_DIR = services_dir)
  service <- start_test_service("r-forecast-plumber", env = c(PROPHET_CORES = "2"), timeout_s = 900)
  on.exit(stop_test_service(service))
  # Both workers source the code and load prophet's Stan model on their first
  # jobs: start-up, not throughput.
  for (i in 1:4) post_fit(service, fit_body(series, 1:4))
  chunks <- split(seq_len(n_series), ceiling(seq_len(n_series) / chunk_size))
  in_r <- 0
  seconds <- elapsed(for (ids in chunks) {
    in_r <- in_r + post_fit(service, fit_body(series, ids))$elapsed_s
  })
  list(seconds = seconds, in_r = in_r, n_chunks = length(chunks))
}

# CPU seconds of fit_prophet_batch() in a fresh R process that sources one
# version's service code (as the service does), on the series saved in `input`.
measure_cpu <- function(services_dir, input) {
  script <- tempfile(fileext = ".R")
  writeLines(c(
    sprintf("for (d in file.path(%s, c('common', 'r-forecast-plumber'), 'R'))", deparse(services_dir)),
    "  for (f in sort(list.files(d, '[.]R$', full.names = TRUE))) source(f)",
    sprintf("body <- readRDS(%s)", deparse(input)),
    "request <- validate_prophet_fit_request(body)",
    "settings <- utils::modifyList(prophet_settings(), list(cores = 1L))",
    "warm_up_prophet()",
    "before <- proc.time()",
    "invisible(fit_prophet_batch(request, settings))",
    "used <- proc.time() - before",
    "cat(used[['user.self']] + used[['sys.self']], used[['elapsed']], '\\n')"
  ), script)
  out <- system2("Rscript", script, stdout = TRUE)
  values <- as.numeric(strsplit(trimws(utils::tail(out, 1)), " +")[[1]])
  list(cpu = values[1], wall = values[2])
}

series <- simulate_students(n_series)
load_before <- readLines("/proc/loadavg")
capacity_before <- cpu_parallel_capacity()
commit <- system("git rev-parse --short HEAD", intern = TRUE)
baseline_commit <- system(sprintf("git rev-parse --short %s", shQuote(baseline_ref)), intern = TRUE)

if (mode == "cpu") {
  input <- tempfile(fileext = ".rds")
  saveRDS(fit_body(series, seq_len(n_series)), input)
  current <- measure_cpu(file.path(repo_root, "r-services"), input)
  baseline <- measure_cpu(export_version(baseline_ref), input)
  per_series <- c(current$cpu, baseline$cpu) / n_series
  table_lines <- c(
    "| version | CPU seconds (one process) | wall seconds | CPU ms per series | 10,000 series on 2 cores (CPU / 2) |",
    "|---|---:|---:|---:|---:|",
    sprintf(
      "| %s | %.1f | %.1f | %.1f | %.0f s |",
      c(sprintf("this checkout (%s)", commit), sprintf("%s (%s)", baseline_ref, baseline_commit)),
      c(current$cpu, baseline$cpu), c(current$wall, baseline$wall), 1000 * per_series, 10000 * per_series / 2
    )
  )
  report <- c(
    "# Prophet fit cost per series (r-forecast-plumber), this checkout vs another version",
    "",
    "Command (from the repository root):",
    "",
    "```sh",
    sprintf("Rscript bench/prophet_batch.R %d %d %s %s cpu", n_series, chunk_size, baseline_ref, output),
    "```",
    "",
    sprintf(
      paste(
        "%d synthetic students (12 weekly points of I_t, attempts and active days) fitted by `fit_prophet_batch()`",
        "in one R process per version (PROPHET_CORES=1, no HTTP), after a warm-up fit; CPU = user + system seconds",
        "of that process. The last column extrapolates to 10,000 series on 2 cores (forked fits scale with the",
        "cores when they are free); HTTP, JSON and the model file add about a second per 500-series request."
      ),
      n_series
    ),
    sprintf(
      "Machine: %d cores (`nproc`), R %s, prophet %s, rstan %s; load average before the run: %s (a shared machine: wall seconds are inflated, CPU seconds much less).",
      parallel::detectCores(), getRversion(), utils::packageVersion("prophet"), utils::packageVersion("rstan"),
      paste(strsplit(load_before, " ")[[1]][1:3], collapse = " ")
    ),
    "",
    table_lines,
    ""
  )
  cat(table_lines, sep = "\n")
  dir.create(dirname(output), recursive = TRUE, showWarnings = FALSE)
  writeLines(report, output)
  cat("wrote", output, "\n")
  quit(save = "no")
}

current <- measure(file.path(repo_root, "r-services"), series)
baseline <- measure(export_version(baseline_ref), series)
capacity_after <- cpu_parallel_capacity()

table_lines <- c(
  "| version | chunks | seconds (wall) | seconds in R (sum of elapsed_s) | series/s |",
  "|---|---:|---:|---:|---:|",
  sprintf(
    "| %s | %d | %.1f | %.1f | %.1f |",
    c(sprintf("this checkout (%s)", commit), sprintf("%s (%s)", baseline_ref, baseline_commit)),
    c(current$n_chunks, baseline$n_chunks), c(current$seconds, baseline$seconds),
    c(current$in_r, baseline$in_r), n_series / c(current$seconds, baseline$seconds)
  )
)
ratio_line <- sprintf(
  "- for reference, 2 processes vs 1 on plain R arithmetic on this machine at the time: %.2fx before, %.2fx after the run (2.0x = two idle cores)",
  capacity_before, capacity_after
)
cat(table_lines, "", ratio_line, sep = "\n")

report <- c(
  "# Prophet batch benchmark (r-forecast-plumber)",
  "",
  "Command (from the repository root):",
  "",
  "```sh",
  sprintf("Rscript bench/prophet_batch.R %d %d %s %s", n_series, chunk_size, baseline_ref, output),
  "```",
  "",
  sprintf(
    paste(
      "%d synthetic students (12 weekly points of I_t, attempts and active days; forecast 4 weeks, anomaly threshold 2.5)",
      "sent as the DAG sends them: one `/prophet/fit` request per chunk of %d series, chunks one after the other.",
      "Each version runs in its own service instance (`PROPHET_CORES=2`, `R_WORKERS=2`) started by the script;",
      "the older version ignores the columns it does not know."
    ),
    n_series, chunk_size
  ),
  sprintf(
    "Machine: %d cores (`nproc`), R %s, prophet %s, rstan %s; load average before the run: %s.",
    parallel::detectCores(), getRversion(), utils::packageVersion("prophet"), utils::packageVersion("rstan"),
    paste(strsplit(load_before, " ")[[1]][1:3], collapse = " ")
  ),
  "",
  table_lines,
  "",
  ratio_line,
  "",
  "Reading the numbers:",
  "",
  paste(
    "- This checkout fits prophet's Stan model directly (`fit_prophet_map()`: same model, priors, scaling and",
    "initialisation as `prophet::prophet()`, checked in `test-prophet-model.R`) instead of through `prophet::prophet()`,",
    "whose data-frame set-up costs about 3x the optimisation on a 12-point series; it also scores a second series",
    "(activity) and fits with an effort regressor."
  ),
  paste(
    "- A one-series request pays a fixed cost per call (HTTP, JSON, a worker job, a model file) larger than the fit",
    "itself; batching amortises it, which is why the DAG sends chunks (earlier measurement: one request of 100 series",
    "6.8x faster than 100 requests of one)."
  ),
  "- On a shared machine the reference line bounds what two cores can give; seconds are inflated when it is below 2.",
  ""
)
dir.create(dirname(output), recursive = TRUE, showWarnings = FALSE)
writeLines(report, output)
cat("wrote", output, "\n")
