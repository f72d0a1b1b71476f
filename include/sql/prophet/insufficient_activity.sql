-- Record, as status 'skipped', the students still preparing who were active in the
-- window but too few weeks to get a series (the complement of weekly_series.sql's rule;
-- students without any attempt in the window are not recorded).
-- Parameters: run_date, window_start, window_end, min_active_weeks, settings (JSON text).
INSERT INTO prophet_fit_meta (run_date, user_id, status, reason, n_points, settings)
SELECT %(run_date)s,
       user_id,
       'skipped',
       format('too little activity: attempts in %%s of the %%s weeks in the window, at least %%s needed',
              active_weeks, n_weeks, %(min_active_weeks)s),
       n_weeks,
       %(settings)s::jsonb
FROM (
    SELECT k.user_id,
           count(*) AS n_weeks,
           count(*) FILTER (WHERE k.n_attempts > 0) AS active_weeks,
           max(k.week_start) AS last_week
    FROM weekly_kpi AS k
    WHERE k.week_start >= %(window_start)s AND k.week_start < %(window_end)s
    GROUP BY k.user_id
) AS activity
WHERE active_weeks BETWEEN 1 AND %(min_active_weeks)s - 1
  AND last_week = %(window_end)s::date - 7
ON CONFLICT (run_date, user_id) DO NOTHING;
