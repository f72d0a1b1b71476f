# The growth service's two programs side by side on the same data, for both
# families: brms' own (non-centred group effects) and the centred one
# (growth_model.R centred_stan_code). One run each at the service's defaults
# (iter 1000, warm-up 500, 2 chains on 2 cores, adapt_delta 0.95, seed 1), no
# second run; plus the coefficient noise share the service chooses by.
# Templates come from BRMS_TEMPLATE_DIR when set (compiled there if missing).
#   Rscript bench/brms_parameterisation.R [stage-1 sample CSV] [output.md]
# The CSV (user_id, week, accuracy, n_attempts, n_correct) is a stage-1 sample,
# e.g. from `python bench/growth_scale.py --sizes 10000 --save-stage1-sample
# FILE`; without it, 600 simulated students x 12 weeks.

source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE)[1])), "brms_common.R"))
rstan::rstan_options(boost_lib = "/usr/include")
args <- commandArgs(trailingOnly = TRUE)
output <- if (length(args) >= 2) args[2] else file.path(bench_dir, "..", "docs", "bench-brms-parameterisation.md")

if (length(args) >= 1) {
  data <- utils::read.csv(args[1])
  data_label <- sprintf("`%s`", basename(args[1]))
} else {
  data <- simulate_learners(600, 12, seed = 1)$data
  data$n_attempts <- 60L
  data$n_correct <- as.integer(round(data$accuracy * 60))
  data_label <- "600 simulated students x 12 weeks"
}
data$user_id <- as.character(data$user_id)

population <- c(
  "b_Intercept", "b_week", "sd_user_id__Intercept", "sd_user_id__week", "cor_user_id__Intercept__week", "sigma"
)

measure <- function(template, family, program) {
  started_at <- Sys.time()
  fit <- sample_growth(template, data, sampler_settings(1000L, 500L, 2L, 1L, 0.95, 10L))
  seconds <- seconds_since(started_at)
  variables <- intersect(population, posterior::variables(posterior::as_draws(fit)))
  draws <- posterior::as_draws_array(fit, variable = variables)
  summary <- posterior::summarise_draws(draws, "mean", "sd", "rhat", "ess_bulk")
  elapsed <- rstan::get_elapsed_time(fit$fit)
  weakest <- which.min(summary$ess_bulk)
  list(
    family = family, program = program, seconds = seconds,
    warmup = sum(elapsed[, "warmup"]) / nrow(elapsed), sample = sum(elapsed[, "sample"]) / nrow(elapsed),
    leapfrog = mean(rstan::get_num_leapfrog_per_iteration(fit$fit)),
    divergences = sum(rstan::get_divergent_iterations(fit$fit)),
    rhat_max = max(summary$rhat), ess_min = summary$ess_bulk[weakest], weakest = summary$variable[weakest],
    summary = summary
  )
}

results <- list()
choices <- list()
for (family in growth_families) {
  choices[[family]] <- choose_parameterisation(data, family)
  ensure_templates(family)
  results[[length(results) + 1]] <- measure(load_template(family, "non_centred"), family, "non-centred (brms as written)")
  results[[length(results) + 1]] <- measure(load_template(family, "centred"), family, "centred")
  for (result in tail(results, 2)) message(family, ": ", result$program, ": ", round(result$seconds), " s")
}

row <- function(r) {
  sprintf(
    "| %s | %s | %.0f | %.0f / %.0f | %.0f | %.0f (%s) | %.1f | %.3f | %d |",
    r$family, r$program, r$seconds, r$warmup, r$sample, r$leapfrog, r$ess_min, r$weakest,
    r$ess_min / r$seconds, r$rhat_max, r$divergences
  )
}
posterior_row <- function(family_results, variable) {
  cells <- vapply(family_results, function(r) {
    s <- r$summary[r$summary$variable == variable, ]
    sprintf("%.5f (%.5f)", s$mean, s$sd)
  }, character(1))
  sprintf("| %s | %s | %s | %s |", family_results[[1]]$family, variable, cells[1], cells[2])
}
lines <- c(
  "# Growth fits: brms' non-centred program vs the centred one",
  "",
  "```",
  sprintf("Rscript bench/brms_parameterisation.R %s", paste(args, collapse = " ")),
  "```",
  "",
  sprintf(
    "Measured %s UTC on %s (%d students, %d student-weeks): one run of each program per family at the service's defaults (iter 1000, warm-up 500, 2 chains on 2 cores, adapt_delta 0.95, seed 1; no second run). Times are per chain (chains run in parallel).",
    format(Sys.time(), "%Y-%m-%d %H:%M", tz = "UTC"), data_label, length(unique(data$user_id)), nrow(data)
  ),
  "",
  "| family | program | wall s | warm-up / sampling s per chain | leapfrog steps per iteration | min bulk ESS (parameter) | min ESS per wall second | max Rhat | divergences |",
  "|---|---|---|---|---|---|---|---|---|",
  vapply(results, row, character(1)),
  "",
  "Ratios in this run (centred vs non-centred, same family):",
  ""
)
for (family in growth_families) {
  pair <- Filter(function(r) r$family == family, results)
  lines <- c(lines, sprintf(
    "* %s: wall time x%.2f, min bulk ESS x%.2f, min ESS per second x%.2f; coefficient noise share %.2f: the service fits %s.",
    family, pair[[2]]$seconds / pair[[1]]$seconds, pair[[2]]$ess_min / pair[[1]]$ess_min,
    (pair[[2]]$ess_min / pair[[2]]$seconds) / (pair[[1]]$ess_min / pair[[1]]$seconds),
    choices[[family]]$noise_share, choices[[family]]$parameterisation
  ))
}
lines <- c(
  lines, "",
  "Same posterior: population parameters, mean (sd) of the draws:", "",
  "| family | parameter | non-centred | centred |", "|---|---|---|---|"
)
for (family in growth_families) {
  pair <- Filter(function(r) r$family == family, results)
  for (variable in intersect(population, pair[[1]]$summary$variable)) {
    lines <- c(lines, posterior_row(pair, variable))
  }
}
writeLines(lines, output)
cat(lines, sep = "\n")
