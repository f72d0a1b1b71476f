# r-brms-plumber routes. Model code: R/growth_*.R; shared machinery:
# ../common (auth, errors, validation, model store, workers, /health).

#* @apiTitle r-brms-plumber
#* @apiDescription Bayesian growth model (brms): accuracy ~ 1 + week + (1 + week | user_id).

#* Fit the growth model
#* Body: {"data": {"user_id", "week", "accuracy" | "n_attempts", "n_correct"},
#* "family": "gaussian"|"binomial", "iter": 1000, "chains": 2, "seed": 1,
#* optional "warmup", "adapt_delta" (0.95), "max_treedepth" (10), "max_rhat" (1.01)
#* and "min_ess_bulk" (400): the thresholds of diagnostics.converged.
#* Answers 202 with a job (GET /jobs/<job_id> for status and result).
#* @post /growth/fit
function(req, res) {
  request <- parse_growth_fit_request(request_body(req))
  do.call(submit_job, c(list(req, res, "fit_growth"), request))
}

#* Goal probabilities from a fitted growth model
#* Body: {"model_id": "...", "data": {"user_id", "week", "goal", optional "n_attempts"}};
#* p_goal = P(observed accuracy in that week, at n_attempts (default: the
#* student's usual weekly attempts in the fit), >= goal).
#* @post /growth/predict
function(req) {
  request <- parse_growth_predict_request(request_body(req))
  predict_growth(request$model, request$user_id, request$week, request$goal, request$n_attempts)
}
