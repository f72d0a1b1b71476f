#!/usr/bin/env Rscript
# Other tail probabilities of prophet's activity test, offline, against the
# synthetic truth (issue 12: why dips are missed, and what another tail buys).
#
#   python bench/prophet_quality.py --seeds 42 1 3 --dump-dir .local/anomaly-data ...
#   Rscript bench/prophet_anomaly_tails.R .local/anomaly-data 42 1 3 [output.md]
#
# Each seed's request (`request_<seed>.json`, as the DAG sends it) goes through
# the service's own fit_prophet_batch() (no HTTP), once per tail: the
# service's `session_tail()` is swapped in the environment the service code is
# sourced into, so everything else (the sessions model, references,
# screening, the weeks scored) is the service's. Tails of the same noise model:
# - service (mid-p): the week's attempts in sessions (count / attempts per
#   session), continuous, against the negative binomial prediction of the
#   sessions, with half the probability of the observed count (the usual
#   correction of a discrete test that is conservative);
# - whole-count: the same with all of it (the service's tail before mid-p);
# - attempts: the tail of the attempts themselves, sessions negative binomial
#   and attempts given N sessions Poisson(N x attempts per session).
# Flags at each threshold: activity alone, and with the learning_index flags
# (which do not depend on the tail); precision and recall against the
# injected weeks, and the share of ordinary weeks flagged by activity.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 2) stop("usage: Rscript bench/prophet_anomaly_tails.R DATA_DIR SEED... [output.md]")
data_dir <- args[1]
output <- if (grepl("[.]md$", args[length(args)])) args[length(args)] else NULL
seeds <- setdiff(args[-1], output)
thresholds <- c(2, 2.5, 3)

# The service's code as the service loads it; its functions look each other up
# in this environment, so a tail assigned here is the one they use.
service <- rservicecommon::load_service_code(file.path("r-services", "r-forecast-plumber", "R"))
service_tail <- service$session_tail

whole_count_tail <- function(count, per_session, sessions, share, spike) {
  observed <- count / per_session
  if (spike) {
    stats::pbeta(share, sessions, observed, lower.tail = FALSE)
  } else {
    stats::pbeta(share, sessions, observed + 1)
  }
}

attempts_tail <- function(count, per_session, sessions, share, spike) {
  n <- 0:(stats::qnbinom(1e-12, size = sessions, prob = share, lower.tail = FALSE) + 2)
  p_sessions <- stats::dnbinom(n, size = sessions, prob = share)
  if (spike) {
    sum(p_sessions * stats::ppois(count - 1, n * per_session, lower.tail = FALSE))
  } else {
    sum(p_sessions * stats::ppois(count, n * per_session))
  }
}

tails <- list(`service (mid-p)` = service_tail, `whole-count` = whole_count_tail, attempts = attempts_tail)

# Every scored week of every student with its score (threshold -1: all of them).
score_weeks <- function(request) {
  request$anomaly_threshold <- -1
  request$forecast_weeks <- 0L
  anomalies <- as.data.frame(service$fit_prophet_batch(request, service$prophet_settings())$anomalies)
  names(anomalies)[names(anomalies) == "series_id"] <- "user_id"
  anomalies
}

detection <- function(flagged, truth) {
  key <- paste(truth$user_id, truth$week_start)
  hit <- key %in% flagged
  c(
    flags = length(flagged), precision = mean(flagged %in% key), recall = mean(hit),
    spike_recall = mean(hit[truth$kind == "spike"]), dip_recall = mean(hit[truth$kind == "dip"])
  )
}

rows <- list()
for (seed in seeds) {
  request <- service$parse_prophet_fit_request(jsonlite::fromJSON(file.path(data_dir, sprintf("request_%s.json", seed))))
  sent <- request$series
  truth <- utils::read.csv(file.path(data_dir, sprintf("truth_%s.csv", seed)))
  truth <- truth[truth$user_id %in% sent$series_id & as.Date(truth$week_start) >= min(sent$ds) &
    as.Date(truth$week_start) <= max(sent$ds), ]
  truth$kind <- ifelse(truth$activity_factor > 1, "spike", "dip")
  for (tail_name in names(tails)) {
    assign("session_tail", tails[[tail_name]], envir = service)
    scores <- score_weeks(request)
    scores$key <- paste(scores$user_id, scores$ds)
    activity <- scores[scores$series == "activity", ]
    ordinary <- !activity$key %in% paste(truth$user_id, truth$week_start)
    for (threshold in thresholds) {
      activity_flags <- unique(activity$key[activity$score > threshold])
      learning_index_flags <- unique(scores$key[scores$series == "learning_index" & scores$score > threshold])
      rows[[length(rows) + 1]] <- data.frame(
        seed = seed, tail = tail_name, threshold = threshold,
        ordinary_flagged = mean(activity$score[ordinary] > threshold),
        t(detection(activity_flags, truth)),
        t(stats::setNames(detection(union(activity_flags, learning_index_flags), truth), paste0("both_", c(
          "flags", "precision", "recall", "spike_recall", "dip_recall"
        ))))
      )
    }
  }
  assign("session_tail", service_tail, envir = service)
}
results <- do.call(rbind, rows)
results <- results[order(results$threshold, match(results$tail, names(tails)), results$seed), ]

fmt <- function(x) sprintf("%.2f", x)
table_lines <- c(
  "| threshold | tail | seed | ordinary weeks flagged (activity) | activity: flags, precision / recall (spike, dip) | with learning_index: flags, precision / recall |",
  "|---:|---|---:|---:|---|---|",
  sprintf(
    "| %s | %s | %s | %.4f | %d, %s / %s (%s, %s) | %d, %s / %s |",
    results$threshold, results$tail, results$seed, results$ordinary_flagged,
    results$flags, fmt(results$precision), fmt(results$recall), fmt(results$spike_recall), fmt(results$dip_recall),
    results$both_flags, fmt(results$both_precision), fmt(results$both_recall)
  )
)
cat(table_lines, sep = "\n")
if (!is.null(output)) {
  writeLines(c(
    "# Tail probabilities of prophet's activity test vs the synthetic truth",
    "",
    "Command (from the repository root; the data from `bench/prophet_quality.py --dump-dir`):",
    "",
    "```sh",
    sprintf("Rscript bench/prophet_anomaly_tails.R %s %s %s", data_dir, paste(seeds, collapse = " "), output),
    "```",
    "",
    "Nominal share of ordinary weeks flagged by a calibrated two-sided score: ",
    paste(sprintf("%.4f at %s", 2 * stats::pnorm(-thresholds), thresholds), collapse = ", "),
    "",
    table_lines,
    ""
  ), output)
}
