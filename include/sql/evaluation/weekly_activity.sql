-- Weekly attempts of the students of one prophet run over its window (weekly_kpi
-- has a row for every week of a student's enrolment, zeros included): the input of
-- the count-based anomaly rule that baselines prophet's flags.
SELECT k.user_id, k.week_start, k.n_attempts
FROM weekly_kpi AS k
WHERE k.user_id IN (SELECT user_id FROM prophet_fit_meta WHERE run_date = %(run_date)s)
  AND k.week_start >= %(window_start)s AND k.week_start < %(window_end)s
ORDER BY k.user_id, k.week_start;
