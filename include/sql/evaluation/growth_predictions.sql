-- Goal probabilities of the growth runs being evaluated, with what happened in
-- each student's target week (from the attempt view) and the baselines' inputs.
-- Parameters: run_dates (date[]), outcome_end (exclusive: nothing on or after it is read).
--
-- target_week_start  Monday of the week P(goal) is about (stored by the run; older rows:
--                    window_start + 7 * target_week);
--                    rows whose target week is not closed by outcome_end are left out,
--                    and so are targets inside the run's own window (not a prediction).
-- n_attempts/n_correct  the student's attempts in the target week (0: no observation).
-- simple_p           weekly_kpi.P of the window's last week when it is the simple estimate.
-- history_weeks/history_hits  weeks of the run's window with attempts, and those whose
--                    accuracy reached the goal (input of the climatological rate).
WITH predictions AS (
    SELECT u.run_date,
           m.status,
           m.window_start,
           m.window_end,
           u.user_id,
           u.p_goal,
           u.slope,
           u.goal,
           coalesce(u.target_week_start, m.window_start + 7 * u.target_week) AS target_week_start
    FROM growth_brms_user AS u
    JOIN growth_brms_meta AS m USING (run_date)
    WHERE u.run_date = ANY(%(run_dates)s::date[])
      AND u.p_goal IS NOT NULL
),
closed AS (
    SELECT *
    FROM predictions
    WHERE target_week_start >= window_end
      AND target_week_start + 7 <= %(outcome_end)s::date
),
target_activity AS (
    SELECT a.user_id,
           date_trunc('week', a.attempt_date)::date AS week_start,
           count(*)::integer AS n_attempts,
           (count(*) FILTER (WHERE a.is_correct))::integer AS n_correct
    FROM attempt AS a
    -- The timestamp bounds (a day of margin for any time zone) let the index on
    -- attempted_at narrow the scan; attempt_date decides.
    WHERE a.attempted_at >= (SELECT min(target_week_start) - 1 FROM closed)::timestamptz
      AND a.attempted_at < (%(outcome_end)s::date + 1)::timestamptz
      AND a.attempt_date >= (SELECT min(target_week_start) FROM closed)
      AND a.attempt_date < %(outcome_end)s::date
      AND a.user_id IN (SELECT user_id FROM closed)
    GROUP BY 1, 2
)
SELECT c.run_date,
       c.status,
       c.user_id,
       c.p_goal,
       c.slope,
       c.goal,
       c.target_week_start,
       coalesce(t.n_attempts, 0) AS n_attempts,
       coalesce(t.n_correct, 0) AS n_correct,
       kpi.p AS simple_p,
       history.history_weeks,
       history.history_hits
FROM closed AS c
LEFT JOIN target_activity AS t ON t.user_id = c.user_id AND t.week_start = c.target_week_start
LEFT JOIN weekly_kpi AS kpi
       ON kpi.user_id = c.user_id AND kpi.week_start = c.window_end - 7 AND kpi.p_source = 'simple'
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE h.accuracy IS NOT NULL) AS history_weeks,
           count(*) FILTER (WHERE h.accuracy >= c.goal) AS history_hits
    FROM weekly_kpi AS h
    WHERE h.user_id = c.user_id AND h.week_start >= c.window_start AND h.week_start < c.window_end
) AS history ON true
ORDER BY c.run_date, c.user_id;
