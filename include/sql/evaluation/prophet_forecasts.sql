-- Forecasts of one prophet run for weeks closed by outcome_end, beside what happened
-- (weekly_kpi.i_t, built from attempts) and the naive forecast: the student's mean
-- I_t over the 4 weeks before the run's window end.
-- Parameters: run_date, window_end (Monday the run's window ended), outcome_end.
SELECT f.user_id,
       f.week_start,
       (f.week_start - %(window_end)s::date) / 7 + 1 AS horizon_weeks,
       f.yhat,
       f.yhat_lower,
       f.yhat_upper,
       actual.i_t AS actual,
       naive.i_t AS naive
FROM prophet_forecast AS f
JOIN weekly_kpi AS actual ON actual.user_id = f.user_id AND actual.week_start = f.week_start
JOIN LATERAL (
    SELECT avg(h.i_t) AS i_t
    FROM weekly_kpi AS h
    WHERE h.user_id = f.user_id
      AND h.week_start >= %(window_end)s::date - 28 AND h.week_start < %(window_end)s::date
) AS naive ON naive.i_t IS NOT NULL
WHERE f.run_date = %(run_date)s
  AND f.week_start + 7 <= %(outcome_end)s::date
ORDER BY f.user_id, f.week_start;
