-- Rebuild weekly_kpi activity columns and P for the weeks [window_start, window_end).
-- Parameters: window_start, window_end (Mondays), run_date, p_history_weeks,
-- goal_horizon_weeks, metrics_use_bayesian, tz (the platform clock, LA_TIMEZONE: weeks
-- start on Monday 00:00 local time).
--
-- A student has a row for every week from the week of their first attempt until
-- their exam week (inactive weeks included: I_t = 0 is a signal for the models).
-- Columns written by the models (S, s_run_date) are kept; P is recomputed.
-- built_for is the latest run date that built a row (order-independent); updated_at is
-- when it was last written (wall clock: not part of the compared state).

CREATE TEMPORARY TABLE kpi_week ON COMMIT DROP AS
WITH weeks AS (
    SELECT generate_series(%(window_start)s::date, %(window_end)s::date - 7, interval '7 days')::date AS week_start
),
enrolled AS (
    SELECT s.user_id,
           date_trunc('week', min(a.attempted_at AT TIME ZONE %(tz)s))::date AS first_week,
           date_trunc('week', s.exam_date)::date AS exam_week
    FROM students AS s
    JOIN attempt AS a USING (user_id)
    WHERE a.attempted_at < (%(window_end)s::date)::timestamp AT TIME ZONE %(tz)s
    GROUP BY s.user_id, s.exam_date
),
activity AS (
    SELECT a.user_id,
           date_trunc('week', a.attempt_date)::date AS week_start,
           count(*) AS n_attempts,
           count(*) FILTER (WHERE a.is_correct) AS n_correct,
           count(DISTINCT a.attempt_date) AS active_days,
           sum(a.time_spent_s) AS time_spent_s
    FROM attempt AS a
    WHERE a.attempted_at >= (%(window_start)s::date)::timestamp AT TIME ZONE %(tz)s
      AND a.attempted_at <  (%(window_end)s::date)::timestamp AT TIME ZONE %(tz)s
    GROUP BY 1, 2
)
SELECT e.user_id,
       w.week_start,
       coalesce(act.n_attempts, 0)::integer AS n_attempts,
       coalesce(act.n_correct, 0)::integer AS n_correct,
       act.n_correct::double precision / nullif(act.n_attempts, 0) AS accuracy,
       coalesce(act.active_days, 0)::smallint AS active_days,
       coalesce(act.time_spent_s, 0)::bigint AS time_spent_s,
       -- Learning index: accuracy times log-effort, the effort capped at 200 attempts a
       -- week, so I_t is in [0, 100] (100 = 200+ attempts at 100%%). Zero without
       -- attempts. See docs/metrics.md.
       coalesce(100.0 * act.n_correct / nullif(act.n_attempts, 0) * least(1, ln(1 + act.n_attempts) / ln(201)), 0) AS i_t
FROM enrolled AS e
JOIN weeks AS w ON w.week_start >= e.first_week AND w.week_start <= e.exam_week
LEFT JOIN activity AS act ON act.user_id = e.user_id AND act.week_start = w.week_start;

DELETE FROM weekly_kpi AS k
WHERE k.week_start >= %(window_start)s AND k.week_start < %(window_end)s
  AND NOT EXISTS (SELECT 1 FROM kpi_week AS n WHERE n.user_id = k.user_id AND n.week_start = k.week_start);

INSERT INTO weekly_kpi (
    user_id, week_start, n_attempts, n_correct, accuracy, active_days, time_spent_s, i_t, built_for, updated_at
)
SELECT user_id, week_start, n_attempts, n_correct, accuracy, active_days, time_spent_s, i_t, %(run_date)s, now()
FROM kpi_week
ON CONFLICT (user_id, week_start) DO UPDATE
SET n_attempts = EXCLUDED.n_attempts,
    n_correct = EXCLUDED.n_correct,
    accuracy = EXCLUDED.accuracy,
    active_days = EXCLUDED.active_days,
    time_spent_s = EXCLUDED.time_spent_s,
    i_t = EXCLUDED.i_t,
    -- The latest run date that built the row, whatever order runs come in: reruns,
    -- backfills and concurrent runs of the same dates leave the same value.
    built_for = greatest(weekly_kpi.built_for, EXCLUDED.built_for),
    updated_at = EXCLUDED.updated_at;

-- Simple (non-Bayesian) P: least-squares line through the student's weekly accuracy
-- over the last p_history_weeks weeks, projected to the target week (exam week,
-- capped at goal_horizon_weeks ahead), and P = Phi((projection - goal) / se) with the
-- prediction standard error of that line (logistic approximation of Phi, floor on se).
WITH history AS (
    SELECT k.user_id,
           k.week_start,
           regr_slope(h.accuracy, (h.week_start - k.week_start) / 7.0) AS slope,
           regr_intercept(h.accuracy, (h.week_start - k.week_start) / 7.0) AS intercept,
           regr_count(h.accuracy, (h.week_start - k.week_start) / 7.0) AS n,
           regr_avgx(h.accuracy, (h.week_start - k.week_start) / 7.0) AS mean_x,
           regr_sxx(h.accuracy, (h.week_start - k.week_start) / 7.0) AS sxx,
           regr_syy(h.accuracy, (h.week_start - k.week_start) / 7.0) AS syy,
           regr_sxy(h.accuracy, (h.week_start - k.week_start) / 7.0) AS sxy,
           sum(h.n_correct)::double precision / nullif(sum(h.n_attempts), 0) AS pooled_accuracy,
           sum(h.n_attempts) AS pooled_attempts
    FROM weekly_kpi AS k
    JOIN weekly_kpi AS h
      ON h.user_id = k.user_id
     AND h.week_start <= k.week_start
     AND h.week_start > k.week_start - 7 * %(p_history_weeks)s
    WHERE k.week_start >= %(window_start)s AND k.week_start < %(window_end)s
    GROUP BY k.user_id, k.week_start
),
projection AS (
    SELECT s.accuracy_goal::double precision AS goal,
           greatest(0, least((date_trunc('week', s.exam_date)::date - hi.week_start) / 7, %(goal_horizon_weeks)s)) AS x_target,
           hi.*
    FROM history AS hi
    JOIN students AS s USING (user_id)
),
estimate AS (
    SELECT user_id,
           week_start,
           goal,
           CASE WHEN n >= 3 AND sxx > 0
                THEN least(1, greatest(0, intercept + slope * x_target))
                ELSE pooled_accuracy END AS projected,
           greatest(0.02, CASE WHEN n >= 3 AND sxx > 0
                THEN sqrt(greatest(syy - sxy * sxy / sxx, 0) / greatest(n - 2, 1)
                          * (1 + 1.0 / n + (x_target - mean_x) ^ 2 / sxx))
                ELSE sqrt(pooled_accuracy * (1 - pooled_accuracy) / nullif(pooled_attempts, 0)) END) AS se
    FROM projection
),
bayesian AS (
    -- P of the converged growth run whose window ended right after this week.
    -- Latest such run if a week was fitted more than once.
    SELECT DISTINCT ON (g.user_id, m.window_end) g.user_id, m.window_end - 7 AS week_start, g.p_goal
    FROM growth_brms_user AS g
    JOIN growth_brms_meta AS m USING (run_date)
    WHERE %(metrics_use_bayesian)s AND g.shard_converged AND g.p_goal IS NOT NULL
    ORDER BY g.user_id, m.window_end, m.run_date DESC
)
UPDATE weekly_kpi AS k
SET p = coalesce(b.p_goal, 1 / (1 + exp(-1.702 * (e.projected - e.goal) / e.se))),
    p_source = CASE WHEN b.p_goal IS NOT NULL THEN 'brms'
                    WHEN e.projected IS NOT NULL THEN 'simple' END
FROM estimate AS e
LEFT JOIN bayesian AS b USING (user_id, week_start)
WHERE k.user_id = e.user_id AND k.week_start = e.week_start;
