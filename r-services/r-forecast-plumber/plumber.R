# r-forecast-plumber: prophet forecasts with anomaly scores, and the Cox churn model.
# Auth, JSON errors, /health and /openapi.json come from r-services/common;
# fits run in a worker process so /health answers during a long fit.

#* @apiTitle r-forecast-plumber
#* @apiDescription Weekly forecasts and anomalies of the learning index (prophet); churn risk (Cox model).

#* Fit one prophet model per series, forecast and flag anomalous weeks
#* Body: {"series": {"series_id": [...], "ds": ["YYYY-MM-DD", ...], "y": [...]},
#* "forecast_weeks": 4, "anomaly_threshold": 2.5}. Series are fitted in parallel
#* (PROPHET_CORES processes); a series that is skipped (fewer than
#* PROPHET_MIN_POINTS values) or fails is listed in "failures" with its reason
#* and the others are still returned. score = |y - yhat| / sigma; a week is an
#* anomaly when score > anomaly_threshold. yhat_lower/upper = yhat -+ 1.96 sigma.
#* Answers 202 with a job (GET /jobs/<job_id> for status and result).
#* @post /prophet/fit
function(req, res) {
  request <- parse_prophet_fit_request(request_body(req))
  submit_job(req, res, "prophet_fit_job", request = request)
}

#* Forecast stored series of a fitted prophet model
#* Body: {"model_id": "...", "series_id": [...], "weeks": 4}. Weeks continue
#* from each series' last observed week.
#* @post /prophet/predict
function(req) {
  request <- parse_prophet_predict_request(request_body(req))
  run_in_worker("prophet_predict_job", request = request)
}

#* Fit a Cox proportional-hazards model of churn
#* Body: {"data": {"user_id": [...], "time": [...], "event": [0|1, ...], <covariate>: [...]},
#* "covariates": [...], "horizon_days": 14}. Efron ties. risk_score = centred
#* linear predictor (log hazard ratio against a student with mean covariates);
#* p_event = 1 - S(horizon_days | covariates) from the baseline hazard of the fit.
#* ph_test holds cox.zph's tests per term and GLOBAL.
#* Answers 202 with a job (GET /jobs/<job_id> for status and result).
#* @post /survival/fit
function(req, res) {
  request <- parse_survival_fit_request(request_body(req))
  submit_job(req, res, "survival_fit_job", request = request)
}

#* Score students with a fitted Cox model
#* Body: {"model_id": "...", "data": {"user_id": [...], <covariate>: [...]}, "horizon_days": 14}.
#* @post /survival/predict
function(req) {
  survival_predict(request_body(req))
}
