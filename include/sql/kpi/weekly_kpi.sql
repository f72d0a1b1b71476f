-- Rebuild weekly_kpi activity columns for the weeks [window_start, window_end); P is
-- computed after it by weekly_kpi_p.sql (in the same transaction).
-- Parameters: window_start, window_end (Mondays), run_date, tz (the platform clock,
-- LA_TIMEZONE: weeks start on Monday 00:00 local time).
--
-- A student has a row for every week from the week of their first attempt until
-- their exam week (inactive weeks included: I_t = 0 is a signal for the models).
-- Columns written by the models (S, s_run_date) are kept.
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
