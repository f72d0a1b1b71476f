# Cox proportional-hazards churn model: Surv(time, event) ~ covariates, Efron ties.
#
# risk_score is the centred linear predictor (x - mean_x)' beta: the log hazard
# ratio of a student against a student with average covariates (0 = average,
# > 0 = churns sooner). p_event = 1 - S(horizon | x) with
# S(t | x) = exp(-H0(t) * exp(risk_score)), H0 the baseline cumulative hazard
# at the mean covariates that `survfit()` computes for the fit (Efron-adjusted
# Breslow estimator, matching the ties). This is exactly what
# `survfit(fit, newdata)` returns, but needs only beta, the means and H0 - so
# `/survival/predict` works from a small stored object, without the data.

# Fit the Cox model. Returns list(response, model); `model` is what predict needs.
fit_survival <- function(request) {
  formula <- stats::reformulate(request$covariates, response = "survival::Surv(time, event)")
  warnings <- character()
  fit <- withCallingHandlers(
    tryCatch(
      survival::coxph(formula, data = request$frame, ties = "efron"),
      error = function(e) {
        stop_bad_request(paste("data: the Cox model could not be fitted:", conditionMessage(e)))
      }
    ),
    warning = function(w) {
      warnings <<- c(warnings, conditionMessage(w))
      invokeRestart("muffleWarning")
    }
  )
  aliased <- names(fit$coefficients)[is.na(fit$coefficients)]
  if (length(aliased) > 0) {
    stop_bad_request(sprintf(
      "covariates: '%s' is collinear with the other covariates and cannot be estimated",
      aliased[1]
    ))
  }
  baseline <- survival::survfit(fit, se.fit = FALSE)
  model <- list(
    covariates = request$covariates,
    coefficients = fit$coefficients,
    means = fit$means,
    baseline_time = baseline$time,
    baseline_cumhaz = baseline$cumhaz,
    max_time = max(request$frame$time)
  )
  coefficient_table <- summary(fit)$coefficients
  risk <- score_survival(model, request$frame, request$horizon_days)
  if (request$horizon_days > model$max_time) {
    warnings <- c(warnings, horizon_warning(request$horizon_days, model$max_time))
  }
  response <- list(
    coefficients = data.frame(
      term = rownames(coefficient_table),
      coef = coefficient_table[, "coef"],
      hazard_ratio = coefficient_table[, "exp(coef)"],
      se = coefficient_table[, "se(coef)"],
      p_value = coefficient_table[, "Pr(>|z|)"],
      row.names = NULL,
      stringsAsFactors = FALSE
    ),
    concordance = unname(fit$concordance["concordance"]),
    n = fit$n,
    n_events = fit$nevent,
    horizon_days = request$horizon_days,
    ph_test = proportional_hazards_test(fit),
    risk = list(user_id = request$user_id, risk_score = risk$risk_score, p_event = risk$p_event),
    warnings = unique(warnings)
  )
  list(response = response, model = model)
}

# Schoenfeld-residual test per term plus GLOBAL. Needs the fit's data, so it
# runs at fit time; a failure here must not lose the fit.
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

horizon_warning <- function(horizon_days, max_time) {
  sprintf(
    "horizon_days (%s) is beyond the longest follow-up (%s): the baseline hazard is not observed past it, so p_event is a lower bound",
    format(horizon_days), format(max_time)
  )
}

# Baseline cumulative hazard at time t: a right-continuous step function, 0
# before the first event time, flat after the last.
baseline_cumhaz_at <- function(model, t) {
  index <- findInterval(t, model$baseline_time)
  if (index == 0) 0 else model$baseline_cumhaz[index]
}

score_survival <- function(model, frame, horizon_days) {
  x <- as.matrix(frame[, model$covariates, drop = FALSE])
  centred <- sweep(x, 2, model$means[model$covariates])
  risk_score <- as.numeric(centred %*% model$coefficients[model$covariates])
  cumhaz <- baseline_cumhaz_at(model, horizon_days) * exp(risk_score)
  list(risk_score = risk_score, p_event = 1 - exp(-cumhaz))
}

predict_survival <- function(model, request) {
  risk <- score_survival(model, request$frame, request$horizon_days)
  response <- list(user_id = request$user_id, risk_score = risk$risk_score, p_event = risk$p_event)
  if (request$horizon_days > model$max_time) {
    response$warnings <- horizon_warning(request$horizon_days, model$max_time)
  }
  response
}
