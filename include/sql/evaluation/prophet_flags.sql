-- Student-weeks one prophet run flagged as anomalous (any series).
SELECT DISTINCT user_id, week_start
FROM prophet_anomalies
WHERE run_date = %(run_date)s;
