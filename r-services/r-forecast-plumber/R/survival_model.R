# Cox proportional-hazards churn model: Surv(time, event) ~ covariates, Efron ties.
#
# Rows may repeat a user_id (a landmark model has one row per student and
# landmark): standard errors are then robust, clustered by user_id, and the
# held-out concordance keeps every row of a student in the same fold.
#
# Three things beyond a plain coxph():
# * Proportional hazards are acted on: a covariate whose cox.zph test has
#   p < ph_alpha gets a time interaction, i.e. separate effects before and after
#   a cut time (the median event time): terms `<x>.early` (t <= cut) and
#   `<x>.late` (t > cut) instead of `<x>`.
# * Monotone covariates (request field `monotone`, e.g. days idle) have every
#   effect held non-negative: a term of theirs with a negative estimate is fixed
#   at 0 (left out) and the model refitted, the most negative first, until none
#   is negative. Then p_event can only grow with them, whatever the other
#   covariates: p_event = 1 - exp(-sum_t dH0(t) exp(lp(t))) and every term of a
#   monotone covariate enters lp(t) with a coefficient >= 0.
# * concordance is out of sample: 5-fold cross-validation by user_id (the same
#   terms refitted without the fold, p_event of the fold's rows), Harrell's C of
#   p_event against (time, event). The in-sample C is concordance_in_sample.
#
# The baseline hazard dH0(t) is Efron's estimator at the covariate means (risk
# sets of the split (start, stop] data); risk_score = centred linear predictor at
# time 0 (log hazard ratio against a student with mean covariates). The stored
# model holds only coefficients, means, cut and dH0, so /survival/predict works
# without the data.

ph_alpha_default <- function() 0.01
cv_folds <- function() 5L

term_table <- function(covariates, interacted = character()) {
  rows <- lapply(covariates, function(covariate) {
    if (covariate %in% interacted) {
      data.frame(term = paste0(covariate, c(".early", ".late")), covariate = covariate, period = c("early", "late"))
    } else {
      data.frame(term = covariate, covariate = covariate, period = "all")
    }
  })
  do.call(rbind, rows)
}

# (start, stop] rows: split at `cut` when any term is period-specific. Follow-up
# starts just before 0 so that a row with time 0 is at risk at 0, as in Surv(time, event).
follow_up_start <- -1e-6
split_follow_up <- function(frame, cut) {
  whole <- cbind(frame, start = follow_up_start, stop = frame$time, status = frame$event, late = 0)
  if (is.null(cut)) {
    return(whole)
  }
  early <- whole
  early$stop <- pmin(frame$time, cut)
  early$status <- ifelse(frame$time <= cut, frame$event, 0L)
  late <- whole[frame$time > cut, , drop = FALSE]
  late$start <- rep(cut, nrow(late))
  late$late <- rep(1, nrow(late))
  rbind(early, late)
}

# Design matrix of the terms for rows with covariates and a 0/1 `late` column.
term_matrix <- function(frame, terms) {
  columns <- lapply(seq_len(nrow(terms)), function(i) {
    x <- frame[[terms$covariate[i]]]
    switch(terms$period[i], all = x, early = x * (1 - frame$late), late = x * frame$late)
  })
  matrix(unlist(columns), ncol = nrow(terms), dimnames = list(NULL, terms$term))
}

cox_fit <- function(split, terms, cluster) {
  design <- as.data.frame(term_matrix(split, terms))
  design$start <- split$start
  design$stop <- split$stop
  design$status <- split$status
  formula <- stats::reformulate(terms$term, response = "survival::Surv(start, stop, status)")
  args <- list(formula = formula, data = design, ties = "efron")
  if (cluster) {
    args$cluster <- split$user_id
  }
  fit <- tryCatch(
    do.call(survival::coxph, args),
    error = function(e) stop_bad_request(paste("data: the Cox model could not be fitted:", conditionMessage(e)))
  )
  aliased <- names(fit$coefficients)[is.na(fit$coefficients)]
  if (length(aliased) > 0) {
    stop_bad_request(sprintf(
      "covariates: '%s' is collinear with the other covariates and cannot be estimated",
      aliased[1]
    ))
  }
  fit
}

# Fit, then fix negative effects of monotone covariates at 0 one at a time.
constrained_fit <- function(split, terms, monotone, cluster) {
  dropped <- character()
  repeat {
    fit <- cox_fit(split, terms, cluster)
    coefficient <- fit$coefficients
    negative <- terms$term[terms$covariate %in% monotone & coefficient[terms$term] < 0]
    if (length(negative) == 0 || nrow(terms) == 1) {
      return(list(fit = fit, terms = terms, dropped = dropped))
    }
    worst <- negative[which.min(coefficient[negative])]
    dropped <- c(dropped, worst)
    terms <- terms[terms$term != worst, , drop = FALSE]
  }
}

# Efron baseline hazard increments at the covariate means.
efron_baseline <- function(split, terms, coefficients, means) {
  x <- term_matrix(split, terms)
  centred <- sweep(x, 2, means[terms$term])
  risk <- exp(as.numeric(centred %*% coefficients[terms$term]))
  times <- sort(unique(split$stop[split$status == 1]))
  hazard <- vapply(times, function(t) {
    at_risk <- split$start < t & split$stop >= t
    dying <- split$stop == t & split$status == 1
    deaths <- sum(dying)
    total <- sum(risk[at_risk])
    dying_risk <- sum(risk[dying])
    sum(1 / (total - (seq_len(deaths) - 1) / deaths * dying_risk))
  }, numeric(1))
  list(time = times, hazard = hazard)
}

make_model <- function(fitted, split, covariates, cut, monotone) {
  terms <- fitted$terms
  coefficients <- fitted$fit$coefficients[terms$term]
  # Centre at the covariate means (a late term is left uncentred, so that the linear
  # predictor at time 0, the risk_score, is that of the whole-follow-up and early
  # terms). p_event does not depend on the centring: dH0 is computed with the same one.
  means <- stats::setNames(
    ifelse(terms$period == "late", 0, colMeans(split[split$late == 0, terms$covariate, drop = FALSE])),
    terms$term
  )
  baseline <- efron_baseline(split, terms, coefficients, means)
  list(
    covariates = covariates,
    terms = terms,
    coefficients = coefficients,
    means = means,
    cut = cut,
    monotone = monotone,
    baseline_time = baseline$time,
    baseline_hazard = baseline$hazard,
    max_time = max(split$stop)
  )
}

# Risk at time 0 and p_event = 1 - S(horizon | x) for rows of covariates.
score_survival <- function(model, frame, horizon_days) {
  terms <- model$terms
  at_time <- function(late) {
    x <- term_matrix(cbind(frame, late = late), terms)
    as.numeric(sweep(x, 2, model$means[terms$term]) %*% model$coefficients[terms$term])
  }
  early_lp <- at_time(0)
  late_lp <- at_time(1)
  within <- model$baseline_time <= horizon_days
  in_late <- !is.null(model$cut) & model$baseline_time > (model$cut %||% Inf)
  early_hazard <- sum(model$baseline_hazard[within & !in_late])
  late_hazard <- sum(model$baseline_hazard[within & in_late])
  cumhaz <- early_hazard * exp(early_lp) + late_hazard * exp(late_lp)
  list(risk_score = early_lp, p_event = 1 - exp(-cumhaz))
}

concordance_of <- function(time, event, p_event) {
  unname(survival::concordance(survival::Surv(time, event) ~ p_event, reverse = TRUE)$concordance)
}

# Out-of-sample C: each fold's rows scored by the model fitted without them.
held_out_concordance <- function(frame, user_id, terms, monotone, cut, covariates, horizon_days, cluster) {
  users <- unique(user_id)
  if (length(users) < 2 * cv_folds()) {
    return(NULL)
  }
  fold_of_user <- stats::setNames(sample(rep_len(seq_len(cv_folds()), length(users))), users)
  fold <- fold_of_user[as.character(user_id)]
  p_event <- rep(NA_real_, nrow(frame))
  for (k in seq_len(cv_folds())) {
    train <- fold != k
    if (sum(frame$event[train]) == 0) {
      return(NULL)
    }
    split <- split_follow_up(cbind(frame[train, , drop = FALSE], user_id = user_id[train]), cut)
    fitted <- suppressWarnings(constrained_fit(split, terms, monotone, cluster))
    model <- make_model(fitted, split, covariates, cut, monotone)
    p_event[!train] <- score_survival(model, frame[!train, , drop = FALSE], horizon_days)$p_event
  }
  concordance_of(frame$time, frame$event, p_event)
}

# Schoenfeld-residual test per term plus GLOBAL. A failure here must not lose the fit.
proportional_hazards_test <- function(fit) {
  table <- tryCatch(survival::cox.zph(fit)$table, error = function(e) NULL)
  if (is.null(table)) {
    return(NULL)
  }
  list(
    term = rownames(table),
    chisq = unname(table[, "chisq"]),
    df = unname(table[, "df"]),
    p_value = unname(table[, "p"])
  )
}

coefficient_table <- function(fit) {
  table <- summary(fit)$coefficients
  se_column <- if ("robust se" %in% colnames(table)) "robust se" else "se(coef)"
  data.frame(
    term = rownames(table),
    coef = table[, "coef"],
    hazard_ratio = table[, "exp(coef)"],
    se = table[, se_column],
    p_value = table[, "Pr(>|z|)"],
    row.names = NULL,
    stringsAsFactors = FALSE
  )
}

# Fit the Cox model. Returns list(response, model); `model` is what predict needs.
fit_survival <- function(request) {
  frame <- request$frame
  covariates <- request$covariates
  monotone <- request$monotone %||% character()
  ph_alpha <- request$ph_alpha %||% ph_alpha_default()
  cluster <- anyDuplicated(request$user_id) > 0
  warnings <- character()
  collect <- function(expr) {
    withCallingHandlers(expr, warning = function(w) {
      warnings <<- c(warnings, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  }
  with_ids <- cbind(frame, user_id = request$user_id)

  # 1. Every covariate with one effect; test proportional hazards on that fit.
  plain_terms <- term_table(covariates)
  plain <- collect(constrained_fit(split_follow_up(with_ids, NULL), plain_terms, monotone, cluster))
  ph_test <- proportional_hazards_test(plain$fit)
  failing <- character()
  if (!is.null(ph_test)) {
    tested <- ph_test$term != "GLOBAL"
    failing <- intersect(covariates, ph_test$term[tested & ph_test$p_value < ph_alpha])
  }
  # 2. A time interaction for each covariate that failed, split at the median event time.
  event_times <- frame$time[frame$event == 1]
  cut <- if (length(failing) > 0) stats::median(event_times) else NULL
  if (!is.null(cut) && (cut <= min(frame$time) || cut >= max(frame$time))) {
    warnings <- c(warnings, sprintf(
      "proportional hazards fail for %s but no cut time splits the follow-up", paste(failing, collapse = ", ")
    ))
    failing <- character()
    cut <- NULL
  }
  fitted <- if (length(failing) > 0) {
    collect(constrained_fit(split_follow_up(with_ids, cut), term_table(covariates, failing), monotone, cluster))
  } else {
    plain
  }
  split <- split_follow_up(with_ids, cut)
  model <- make_model(fitted, split, covariates, cut, monotone)
  risk <- score_survival(model, frame, request$horizon_days)
  if (request$horizon_days > model$max_time) {
    warnings <- c(warnings, horizon_warning(request$horizon_days, model$max_time))
  }
  set.seed(request$seed %||% 1L)
  held_out <- held_out_concordance(
    frame, request$user_id, fitted$terms, monotone, cut, covariates, request$horizon_days, cluster
  )
  ph_actions <- lapply(failing, function(covariate) {
    list(
      covariate = covariate,
      p_value = ph_test$p_value[ph_test$term == covariate],
      action = "time_interaction",
      terms = I(paste0(covariate, c(".early", ".late"))),
      cut_days = cut
    )
  })
  response <- list(
    coefficients = coefficient_table(fitted$fit),
    concordance = held_out %||% NA_real_,
    concordance_in_sample = concordance_of(frame$time, frame$event, risk$p_event),
    concordance_method = sprintf("%d-fold cross-validation by user_id, Harrell's C of p_event", cv_folds()),
    n = nrow(frame),
    n_users = length(unique(request$user_id)),
    n_events = sum(frame$event),
    horizon_days = request$horizon_days,
    ph_test = ph_test,
    ph_alpha = ph_alpha,
    ph_actions = ph_actions,
    constraints = list(monotone = I(monotone), fixed_at_zero = I(fitted$dropped)),
    risk = list(user_id = request$user_id, risk_score = risk$risk_score, p_event = risk$p_event),
    warnings = unique(warnings)
  )
  list(response = response, model = model)
}

horizon_warning <- function(horizon_days, max_time) {
  sprintf(
    paste(
      "horizon_days (%s) is beyond the longest follow-up (%s):",
      "the baseline hazard is not observed past it, so p_event is a lower bound"
    ),
    format(horizon_days), format(max_time)
  )
}

predict_survival <- function(model, request) {
  risk <- score_survival(model, request$frame, request$horizon_days)
  response <- list(user_id = request$user_id, risk_score = risk$risk_score, p_event = risk$p_event)
  if (request$horizon_days > model$max_time) {
    response$warnings <- horizon_warning(request$horizon_days, model$max_time)
  }
  response
}
