-- One student's prophet results of a run: the fit row, forecast weeks and flagged weeks.
SELECT 'forecast' AS kind, week_start, yhat AS value, yhat_lower AS lower, yhat_upper AS upper, NULL::double precision AS score
FROM prophet_forecast
WHERE run_date = %(run_date)s AND user_id = %(user_id)s
UNION ALL
SELECT 'anomaly', week_start, y, yhat, NULL, score
FROM prophet_anomalies
WHERE run_date = %(run_date)s AND user_id = %(user_id)s
ORDER BY kind, week_start;
