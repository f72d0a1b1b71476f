-- Injected anomalies of a synthetic data set in [window_start, window_end) for the
-- students of one prophet run. kind: spike (activity multiplied up) or dip (down).
SELECT t.user_id,
       t.week_start,
       CASE WHEN t.activity_factor > 1 THEN 'spike' ELSE 'dip' END AS kind
FROM synthetic_truth_anomaly AS t
WHERE t.user_id IN (SELECT user_id FROM prophet_fit_meta WHERE run_date = %(run_date)s)
  AND t.week_start >= %(window_start)s AND t.week_start < %(window_end)s;
