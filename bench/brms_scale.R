# Fit time and convergence of one growth fit as the number of students grows
# (12 weeks, gaussian, service priors and defaults: iter 1000, chains 2,
# adapt_delta 0.95). Uses the cached template (warm fits).
#   Rscript bench/brms_scale.R [n_users ...]

source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE)[1])), "brms_common.R"))
sizes <- as.integer(commandArgs(trailingOnly = TRUE))
if (length(sizes) == 0) sizes <- c(100L, 200L, 400L)
ensure_templates("gaussian")

cat("| students | obs | fit s | rhat_max | ess_bulk_min | divergences | treedepth hits | slope est [95%] | r(slopes) |\n")
cat("|---|---|---|---|---|---|---|---|---|\n")
for (n_users in sizes) {
  simulated <- simulate_learners(n_users, 12, seed = n_users)
  started_at <- Sys.time()
  result <- fit_growth(simulated$data, "gaussian", iter = 1000L, chains = 2L, seed = 1L,
                       warmup = 500L, adapt_delta = 0.95, max_treedepth = 10L)
  seconds <- seconds_since(started_at)
  slope <- result$fixed_effects[result$fixed_effects$term == "week", ]
  d <- result$diagnostics
  cat(sprintf(
    "| %d | %d | %.1f | %.3f | %.0f | %d | %d | %.4f [%.4f, %.4f] | %.3f |\n",
    n_users, nrow(simulated$data), seconds, d$rhat_max, d$ess_bulk_min, d$divergences,
    d$max_treedepth_hits, slope$estimate, slope$lower, slope$upper,
    cor(as.numeric(result$users$slope), simulated$slope)
  ))
}
