-- Weekly learning index I_t, attempts, correct answers and active days of every student who gets a prophet series this run.
-- Parameters: window_start, window_end (Mondays, end exclusive), min_active_weeks.
--
-- Who gets a series (the same rule decides who is recorded as skipped, see
-- insufficient_activity.sql):
-- * still preparing: the student has a weekly_kpi row for the window's last week
--   (weekly_kpi has a row for every week from the first attempt to the exam week),
--   so every series ends in the same week and every forecast starts right after the window;
-- * active in at least min_active_weeks weeks of the window (attempts > 0): a mostly
--   empty series has no trend to continue and no normal level to be anomalous against.
-- Weeks without attempts stay in the series as I_t = 0 (inactivity is a signal, e.g. a
-- dip); weeks before a student's first attempt have no row and are not sent.
WITH window_kpi AS (
    SELECT k.user_id,
           k.week_start,
           k.i_t,
           k.n_attempts,
           k.n_correct,
           k.active_days,
           count(*) FILTER (WHERE k.n_attempts > 0) OVER student AS active_weeks,
           max(k.week_start) OVER student AS last_week
    FROM weekly_kpi AS k
    WHERE k.week_start >= %(window_start)s AND k.week_start < %(window_end)s
    WINDOW student AS (PARTITION BY k.user_id)
)
SELECT user_id, week_start, i_t, n_attempts, n_correct, active_days
FROM window_kpi
WHERE active_weeks >= %(min_active_weeks)s
  AND last_week = %(window_end)s::date - 7
ORDER BY user_id, week_start;
