-- The latest run's flagged weeks, strongest first (stable columns only: others are optional).
SELECT user_id, week_start, y, yhat, score
FROM prophet_anomalies
WHERE run_date = %(run_date)s
ORDER BY score DESC, user_id, week_start
LIMIT %(limit)s;
