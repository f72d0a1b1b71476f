# Cold fit (brm: compile + sample) vs warm fit (update of the cached template
# with recompile = FALSE, as the service does), side by side on the same data:
# 100 simulated students x 8 weeks, gaussian, service priors, iter 1000,
# chains 2, seed 1.
#   Rscript bench/brms_warm_vs_cold.R

source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE)[1])), "brms_common.R"))
rstan::rstan_options(boost_lib = "/usr/include")
simulated <- simulate_learners(100, 8, seed = 1)
data <- simulated$data
data$user_id <- as.character(data$user_id)
sampling <- list(iter = 1000, chains = 2, cores = 2, seed = 1, refresh = 0,
                 control = list(adapt_delta = 0.95))

cold_started <- Sys.time()
cold <- suppressMessages(suppressWarnings(do.call(brms::brm, c(
  list(growth_formula("gaussian"), data = data, family = growth_family("gaussian"),
       prior = growth_priors("gaussian"), silent = 2),
  sampling
))))
cold_seconds <- seconds_since(cold_started)

ensure_templates("gaussian")
warm_started <- Sys.time()
template <- load_template("gaussian", "non_centred")
warm <- suppressMessages(suppressWarnings(do.call(stats::update, c(
  list(template, newdata = data, recompile = FALSE, silent = 2),
  sampling
))))
warm_seconds <- seconds_since(warm_started)

slope <- function(fit) brms::fixef(fit)["week", "Estimate"]
cat(sprintf("R %s, brms %s, rstan %s, %d cores\n", getRversion(), utils::packageVersion("brms"),
            utils::packageVersion("rstan"), parallel::detectCores()))
cat("data: 100 students x 8 weeks (800 rows), gaussian, iter 1000, chains 2, seed 1\n\n")
cat("| fit | seconds | slope estimate |\n|---|---|---|\n")
cat(sprintf("| cold (brm: compile + sample) | %.1f | %.4f |\n", cold_seconds, slope(cold)))
cat(sprintf("| warm (update, recompile = FALSE; incl. loading the template) | %.1f | %.4f |\n", warm_seconds, slope(warm)))
cat(sprintf("\ncold / warm = %.1fx\n", cold_seconds / warm_seconds))
