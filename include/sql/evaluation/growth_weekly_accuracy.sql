-- Weekly accuracy of the given students over [window_start, window_end) from weekly_kpi:
-- the input of the per-student least-squares slope that baselines the growth slopes.
SELECT user_id, (week_start - %(window_start)s::date) / 7 AS week, accuracy
FROM weekly_kpi
WHERE user_id = ANY(%(user_ids)s::bigint[])
  AND week_start >= %(window_start)s AND week_start < %(window_end)s
  AND accuracy IS NOT NULL
ORDER BY user_id, week;
