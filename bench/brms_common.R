# Shared by the brms benchmarks: loads the service code and simulates
# learners (per-user intercept ~ N(0.55, 0.1), slope ~ N(0.02, 0.01), weekly
# noise sd 0.05, accuracy clipped to [0, 1]).

bench_dir <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE)[1])))
service_dir <- file.path(bench_dir, "..", "r-services", "r-brms-plumber")
# The service's code as the service and its tests load it (rservicecommon's
# load_service_code()), its functions copied here to be called by name.
library(rservicecommon)
list2env(as.list(load_service_code(file.path(service_dir, "R")), all.names = TRUE), globalenv())
Sys.setenv(R_SERVICE_NAME = "bench")
if (!nzchar(Sys.getenv("MODEL_DIR"))) Sys.setenv(MODEL_DIR = tempfile("bench-models-"))

simulate_learners <- function(n_users, n_weeks, seed = 1) {
  set.seed(seed)
  intercept <- rnorm(n_users, 0.55, 0.1)
  slope <- rnorm(n_users, 0.02, 0.01)
  data <- expand.grid(week = seq_len(n_weeks) - 1L, user_id = seq_len(n_users))[, c("user_id", "week")]
  data$accuracy <- pmin(1, pmax(0, intercept[data$user_id] + slope[data$user_id] * data$week +
    rnorm(nrow(data), 0, 0.05)))
  list(data = data, slope = slope, intercept = intercept)
}

seconds_since <- function(started_at) as.numeric(difftime(Sys.time(), started_at, units = "secs"))
