# Bayesian growth model: accuracy ~ 1 + week + (1 + week | user_id).
#
# The Stan program is compiled once per family into a "template" (a brmsfit
# whose stanfit holds the compiled program but no draws) cached on disk; every
# fit is `update(template, newdata = d, recompile = FALSE)`, so a request never
# compiles. The priors are part of the compiled program, so the cache key
# covers family, formula, priors, the parameterisation and the brms/rstan
# versions.
#
# Two programs per family: brms' own (group effects non-centred) and the same
# with the students' effects centred (centred_stan_code()); each fit picks the
# one that mixes on its data (choose_parameterisation()).
#
# Priors are weakly informative on the scale of accuracy data. brms' defaults
# (flat slope, wide half-t group sds) let 1,000-student fits wander into
# regions with divergences and non-mixing chains; these keep the sampler on
# plausible values without pulling estimates (data of ~100+ students dominate).

growth_families <- c("gaussian", "binomial")
growth_parameterisations <- c("centred", "non_centred")

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

template_path <- function(family, parameterisation) {
  key <- rlang::hash(list(
    family = family,
    formula = format(growth_formula(family)$formula),
    priors = prior_table(family),
    # The centred program's text is part of the key: editing it recompiles.
    parameterisation = if (parameterisation == "centred") deparse(centred_stan_code) else parameterisation,
    brms = as.character(utils::packageVersion("brms")),
    rstan = as.character(utils::packageVersion("rstan"))
  ))
  file.path(template_dir(), sprintf("growth-%s-%s-%s.rds", family, parameterisation, substr(key, 1, 16)))
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

# brms writes group effects non-centred: z ~ N(0, 1) and r = diag(sd) L z.
# That suits groups the data say little about; here every student has up to
# 12 weekly points, which pin their intercept and slope down, and the
# non-centred geometry then mixes slowly (600 students x 12 weeks: bulk ESS of
# b_Intercept 206 per 1,000 draws, so most stage-1 fits needed a second,
# longer run). Centred, each student's coefficients are parameters with prior
# MVN(0, diag(sd) L L' diag(sd)) on their deviation r_1 from the population:
# the sampler moves each student's level at their own mean week and slope
# (nearly uncorrelated a posteriori, unlike intercept at week 0 and slope) and
# r_1 is a linear map of these with unit Jacobian, so the posterior, the
# likelihood, the names and everything brms reads after sampling are
# unchanged. Measured in docs/bench-brms-parameterisation.md. Each edit must
# find brms' text: a brms version that writes other code fails here, when the
# template is compiled, not in a fit.
centred_stan_code <- function(code) {
  population_mean <- "[Intercept - dot_product(means_X, b), b[1]]"
  edits <- list(
    c(
      "  vector[Kc] means_X;  // column means of X before centering\n",
      paste0(
        "  vector[Kc] means_X;  // column means of X before centering\n",
        "  vector[N_1] mean_week_1 = rep_vector(0, N_1);  // each student's mean week\n",
        "  vector[N_1] n_obs_1 = rep_vector(0, N_1);\n"
      )
    ),
    c(
      "  for (i in 2:K) {\n",
      paste0(
        "  for (n in 1:N) {\n",
        "    mean_week_1[J_1[n]] += Z_1_2[n];\n",
        "    n_obs_1[J_1[n]] += 1;\n",
        "  }\n",
        "  mean_week_1 = mean_week_1 ./ n_obs_1;\n",
        "  for (i in 2:K) {\n"
      )
    ),
    c(
      "  matrix[M_1, N_1] z_1;  // standardized group-level effects\n",
      "  matrix[N_1, M_1] beta_1;  // each student's level at their mean week, and slope\n"
    ),
    c(
      "  r_1 = scale_r_cor(z_1, sd_1, L_1);\n",
      sprintf(
        "  r_1 = append_col(beta_1[, 1] - mean_week_1 .* beta_1[, 2], beta_1[, 2]) - rep_matrix(%s, N_1);\n",
        population_mean
      )
    ),
    c(
      "  target += std_normal_lpdf(to_vector(z_1));\n",
      paste0(
        "  {\n",
        "    row_vector[M_1] r_rows_1[N_1];\n",
        "    for (j in 1:N_1) r_rows_1[j] = r_1[j];\n",
        "    target += multi_normal_cholesky_lpdf(r_rows_1 | rep_row_vector(0, M_1), diag_pre_multiply(sd_1, L_1));\n",
        "  }\n"
      )
    )
  )
  for (edit in edits) {
    if (!grepl(edit[1], code, fixed = TRUE)) {
      stop("brms' Stan code has changed: cannot find `", trimws(edit[1]), "` to parameterise centred")
    }
    code <- sub(edit[1], edit[2], code, fixed = TRUE)
  }
  code
}

build_template <- function(family, parameterisation) {
  # Debian's r-cran-bh is empty; the Boost headers come from libboost-dev.
  rstan::rstan_options(boost_lib = "/usr/include")
  started_at <- Sys.time()
  # brms builds the model (code, data layout, priors) without compiling it.
  template <- suppressMessages(brms::brm(
    growth_formula(family),
    data = template_data(),
    family = growth_family(family),
    prior = growth_priors(family),
    empty = TRUE
  ))
  if (parameterisation == "centred") template$model <- centred_stan_code(template$model)
  program <- rstan::stan_model(
    model_code = template$model, model_name = paste("growth", family, parameterisation, sep = "_")
  )
  # A stanfit without draws carries the compiled program that update() samples.
  template$fit <- suppressMessages(rstan::sampling(program, data = brms::standata(template), chains = 0))
  path <- template_path(family, parameterisation)
  dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
  save_rds_atomically(template, path)
  log_event(
    "info", "compiled growth template",
    family = family, parameterisation = parameterisation, path = path,
    seconds = round(as.numeric(difftime(Sys.time(), started_at, units = "secs")), 1)
  )
  path
}

# The programs (family, parameterisation) not cached yet.
missing_templates <- function(families = growth_families) {
  programs <- expand.grid(
    family = families, parameterisation = growth_parameterisations, stringsAsFactors = FALSE
  )
  paths <- mapply(template_path, programs$family, programs$parameterisation)
  programs[!file.exists(paths), , drop = FALSE]
}

# Compiles the templates that are not cached yet, in parallel (one process per
# program).
ensure_templates <- function(families = growth_families) {
  missing <- missing_templates(families)
  if (nrow(missing) == 0) {
    return(invisible(character()))
  }
  results <- parallel::mclapply(
    seq_len(nrow(missing)),
    function(i) {
      tryCatch(build_template(missing$family[i], missing$parameterisation[i]), error = function(err) err)
    },
    mc.cores = nrow(missing)
  )
  for (result in results) {
    if (inherits(result, "error") || inherits(result, "try-error")) {
      stop("could not compile a growth template: ", conditionMessage(result))
    }
  }
  invisible(paste(missing$family, missing$parameterisation, sep = "/"))
}

template_cache <- new.env()

load_template <- function(family, parameterisation) {
  path <- template_path(family, parameterisation)
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

# How much of the spread of the students' own least-squares coefficients
# (level at their mean week, weekly slope; link scale, empirical logits for
# the binomial family) is their sampling noise, by the method of moments:
# mean(se^2) / var(estimates), the larger of the two. Near 0 the data pin each
# student down, near 1 the population prior does the work. Students with at
# least 3 weeks; NA when fewer than 5 such students.
coefficient_noise_share <- function(data, family) {
  if (family == "binomial") {
    rate <- (data$n_correct + 0.5) / (data$n_attempts + 1)
    y <- stats::qlogis(rate)
    noise_var <- 1 / ((data$n_attempts + 1) * rate * (1 - rate))
  } else {
    y <- data$accuracy
    noise_var <- rep(NA_real_, length(y))
  }
  students <- split(data.frame(week = data$week, y = y, noise_var = noise_var), id_key(data$user_id))
  students <- Filter(function(s) nrow(s) >= 3 && stats::var(s$week) > 0, students)
  if (length(students) < 5) {
    return(NA_real_)
  }
  per_student <- do.call(rbind, lapply(students, function(s) {
    centred_week <- s$week - mean(s$week)
    sxx <- sum(centred_week^2)
    slope <- sum(centred_week * s$y) / sxx
    residuals <- s$y - mean(s$y) - slope * centred_week
    c(level = mean(s$y), slope = slope, n = nrow(s), sxx = sxx, rss = sum(residuals^2), noise = mean(s$noise_var))
  }))
  noise <- if (family == "binomial") {
    per_student[, "noise"]
  } else {
    # Gaussian: the weekly noise pooled over students.
    sum(per_student[, "rss"]) / sum(per_student[, "n"] - 2)
  }
  level_share <- mean(noise / per_student[, "n"]) / stats::var(per_student[, "level"])
  slope_share <- mean(noise / per_student[, "sxx"]) / stats::var(per_student[, "slope"])
  max(level_share, slope_share)
}

# Centred where the data pin the students down (noise share <= 0.5: a
# 600-student x 12-week stage-1 sample), brms' non-centred otherwise (few
# weeks, few attempts): each mixes well where the other funnels or crawls.
choose_parameterisation <- function(data, family) {
  noise_share <- coefficient_noise_share(data, family)
  list(
    parameterisation = if (!is.na(noise_share) && noise_share <= 0.5) "centred" else "non_centred",
    noise_share = noise_share
  )
}

# Missing templates are compiled by compile.R in a child process: the Stan
# toolchain writes to stdout, which in the server is reserved for JSON logs, so
# the child's output is forwarded to stderr.
on_service_start <- function() {
  # A bad BRMS_CORES stops the service here rather than failing its first fit.
  sampling_cores(1L)
  if (nrow(missing_templates()) == 0) {
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
