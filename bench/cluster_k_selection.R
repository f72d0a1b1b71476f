# Benchmark of automatic k selection in r-cluster-plumber: silhouette widths on
# a bounded random sample (the service default, 2,000 rows) against the full
# silhouette (all pairwise distances), for growing numbers of students.
#
# Run from the repository root:
#   Rscript bench/cluster_k_selection.R [n ...]
# Prints a Markdown table (docs/bench-cluster.md records a run).

service_root <- file.path("r-services")
# The service's code as the service and its tests load it.
library(rservicecommon)
list2env(as.list(load_service_code(file.path(service_root, "r-cluster-plumber", "R")), all.names = TRUE), globalenv())
source(file.path(service_root, "r-cluster-plumber", "tests", "testthat",
  "helper-segments.R"))

arguments <- commandArgs(trailingOnly = TRUE)
student_counts <- if (length(arguments) > 0) as.integer(arguments) else
  c(2000L, 5000L, 10000L)
bounded_sample_size <- 2000L

# Elapsed seconds and peak R heap (MB, from gc's "max used") of one call.
measure <- function(run) {
  invisible(gc(reset = TRUE))
  heap_before <- sum(gc()[, 2])
  started <- proc.time()[["elapsed"]]
  result <- run()
  elapsed <- proc.time()[["elapsed"]] - started
  peak_heap <- sum(gc()[, 6])
  list(
    result = result,
    seconds = elapsed,
    peak_mb = peak_heap - heap_before
  )
}

select_k <- function(simulated, sample_size) {
  x <- feature_matrix(simulated$data, learner_features)
  fit_segments(x, simulated$data$user_id,
    k_range = c(2L, 8L),
    silhouette_sample_size = sample_size
  )
}

# Warm up (byte-compilation, lazy loading) so the first row is not penalised.
invisible(select_k(simulate_learners(500, seed = 1), bounded_sample_size))

cat(sprintf("R %s, %s, k_range [2, 8], kmeans nstart %d\n\n",
  getRversion(), Sys.info()[["machine"]], kmeans_nstart))
cat("| students | sample | bounded s | full s | time ratio (full/bounded) |",
  "bounded peak MB | full peak MB | memory ratio | k bounded | k full |",
  "max abs silhouette difference | ARI bounded vs truth |\n")
cat("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
for (n in student_counts) {
  simulated <- simulate_learners(n, seed = 11)
  bounded <- measure(function() select_k(simulated, bounded_sample_size))
  full <- measure(function() select_k(simulated, n))
  cat(sprintf(
    "| %d | %d | %.2f | %.2f | %.1f | %.0f | %.0f | %.1f | %d | %d | %.3f | %.3f |\n",
    n, bounded$result$silhouette_sample_size, bounded$seconds, full$seconds,
    full$seconds / bounded$seconds, bounded$peak_mb, full$peak_mb,
    full$peak_mb / bounded$peak_mb, bounded$result$k, full$result$k,
    max(abs(bounded$result$k_selection$silhouette -
      full$result$k_selection$silhouette)),
    adjusted_rand_index(bounded$result$segment, simulated$truth)
  ))
}
