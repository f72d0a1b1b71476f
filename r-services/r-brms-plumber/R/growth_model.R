# Bayesian growth model: accuracy ~ 1 + week + (1 + week | user_id).
#
# The Stan program is compiled once per family into a "template" (a brmsfit
# from `brm(..., chains = 0)`) cached on disk; every fit is
# `update(template, newdata = d, recompile = FALSE)`, so a request never
# compiles. The priors are part of the compiled program, so the cache key
# covers family, formula, priors and the brms/rstan versions.
#
# Priors are weakly informative on the scale of accuracy data. brms' defaults
# (flat slope, wide half-t group sds) let 1,000-student fits wander into
# regions with divergences and non-mixing chains; these keep the sampler on
# plausible values without pulling estimates (data of ~100+ students dominate).

growth_families <- c("gaussian", "binomial")

growth_formula <- function(family) {
  if (family == "binomial") {
    brms::bf(n_correct | trials(n_attempts) ~ 1 + week + (1 + week | user_id))
  } else {
    brms::bf(accuracy ~ 1 + week + (1 + week | user_id))
  }
}

growth_family <- function(family) {
  if (family == "binomial") stats::binomial(link = "logit") else stats::gaussian()
}

growth_priors <- function(family) {
  if (family == "binomial") {
    # Logit scale: accuracies mostly within 0.2-0.8 (logit -1.4..1.4); weekly
    # change of at most a few tenths of a logit; student spread ~0.5 logit.
    c(
      brms::prior_string("normal(0, 1.5)", class = "Intercept"),
      brms::prior_string("normal(0, 0.25)", class = "b", coef = "week"),
      brms::prior_string("normal(0, 1)", class = "sd", group = "user_id", coef = "Intercept"),
      brms::prior_string("normal(0, 0.25)", class = "sd", group = "user_id", coef = "week"),
      brms::prior_string("lkj(2)", class = "cor")
    )
  } else {
    # Accuracy scale: intercept around 0.5; slopes of a few points per week;
    # students differ by ~0.1 in level and ~0.01-0.03 in weekly growth; weekly
    # noise of a few points.
    c(
      brms::prior_string("normal(0.5, 0.25)", class = "Intercept"),
      brms::prior_string("normal(0, 0.05)", class = "b", coef = "week"),
      brms::prior_string("normal(0, 0.2)", class = "sd", group = "user_id", coef = "Intercept"),
      brms::prior_string("normal(0, 0.05)", class = "sd", group = "user_id", coef = "week"),
      brms::prior_string("lkj(2)", class = "cor"),
      brms::prior_string("exponential(10)", class = "sigma")
    )
  }
}

prior_table <- function(family) {
  priors <- as.data.frame(growth_priors(family))
  priors[, c("prior", "class", "coef", "group")]
}

template_dir <- function() {
  dir <- Sys.getenv("BRMS_TEMPLATE_DIR", unset = "")
  if (nzchar(dir)) dir else file.path(model_dir(), "brms-templates")
}

template_path <- function(family) {
  key <- rlang::hash(list(
    family = family,
    formula = format(growth_formula(family)$formula),
    priors = prior_table(family),
    brms = as.character(utils::packageVersion("brms")),
    rstan = as.character(utils::packageVersion("rstan"))
  ))
  file.path(template_dir(), sprintf("growth-%s-%s.rds", family, substr(key, 1, 16)))
}

# Data only shape the template's Stan data, not its code; any valid table
# will do.
template_data <- function() {
  data.frame(
    user_id = rep(c("a", "b", "c"), each = 3),
    week = rep(0:2, times = 3),
    accuracy = c(0.4, 0.5, 0.6, 0.5, 0.5, 0.6, 0.3, 0.4, 0.4),
    n_attempts = 10L,
    n_correct = c(4L, 5L, 6L, 5L, 5L, 6L, 3L, 4L, 4L)
  )
}

build_template <- function(family) {
  # Debian's r-cran-bh is empty; the Boost headers come from libboost-dev.
  rstan::rstan_options(boost_lib = "/usr/include")
  started_at <- Sys.time()
  template <- suppressMessages(brms::brm(
    growth_formula(family),
    data = template_data(),
    family = growth_family(family),
    prior = growth_priors(family),
    chains = 0,
    silent = 2,
    refresh = 0
  ))
  path <- template_path(family)
  dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
  save_rds_atomically(template, path)
  log_event(
    "info", "compiled growth template",
    family = family, path = path,
    seconds = round(as.numeric(difftime(Sys.time(), started_at, units = "secs")), 1)
  )
  path
}

# Compiles the templates that are not cached yet, in parallel (one process per
# family).
ensure_templates <- function(families = growth_families) {
  missing <- families[!file.exists(vapply(families, template_path, character(1)))]
  if (length(missing) == 0) {
    return(invisible(character()))
  }
  results <- parallel::mclapply(
    missing,
    function(family) tryCatch(build_template(family), error = function(err) err),
    mc.cores = length(missing)
  )
  for (result in results) {
    if (inherits(result, "error") || inherits(result, "try-error")) {
      stop("could not compile a growth template: ", conditionMessage(result))
    }
  }
  invisible(missing)
}

template_cache <- new.env()

load_template <- function(family) {
  path <- template_path(family)
  cached <- template_cache[[path]]
  if (!is.null(cached)) {
    return(cached)
  }
  if (!file.exists(path)) {
    stop("growth template missing: ", path, " (the service compiles it at start; see compile.R)")
  }
  template <- readRDS(path)
  template_cache[[path]] <- template
  template
}

# Missing templates are compiled by compile.R in a child process: the Stan
# toolchain writes to stdout, which in the server is reserved for JSON logs, so
# the child's output is forwarded to stderr.
on_service_start <- function() {
  # A bad BRMS_CORES stops the service here rather than failing its first fit.
  sampling_cores(1L)
  if (all(file.exists(vapply(growth_families, template_path, character(1))))) {
    return(invisible())
  }
  compile_script <- file.path(dirname(getOption("r_service.code_dir")), "compile.R")
  to_stderr <- function(text, process) cat(text, file = stderr())
  result <- processx::run(
    file.path(R.home("bin"), "Rscript"), c("--vanilla", compile_script),
    error_on_status = FALSE, stdout_callback = to_stderr, stderr_callback = to_stderr
  )
  if (result$status != 0) {
    stop("compiling the growth templates failed (exit status ", result$status, ")")
  }
  invisible()
}

health_details <- function() {
  list(families = I(growth_families))
}
