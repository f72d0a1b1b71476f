-- Weekly accuracy per student over the growth window, aggregated from the attempt view.
-- Parameters: window_start, window_end (Mondays, end exclusive), n_weeks,
-- goal_horizon_weeks, min_weekly_attempts, tz (the platform clock: local weeks).
--
-- week              0 = the window's first week (sent to brms as is).
-- goal              the student's accuracy goal.
-- target_week       the week at which P(goal) is evaluated: the student's exam week,
--                   at least the window's last week (exam passed: judge now) and at most
--                   goal_horizon_weeks past it (extrapolating a line further is not credible).
-- usual_attempts    median weekly attempts over the student's weeks with attempts in the
--                   window: P is about one week's observed accuracy at this many attempts.
-- last_week_attempts attempts in the window's last week (0: no P for that week).
-- last_attempt_date the student's last attempt before the window's end (no P when it is
--                   14 days or more before the end).
-- Weeks with fewer than min_weekly_attempts attempts are left out as observations: their
-- accuracy is too noisy to be an observation of the student's level.
WITH weekly AS (
    SELECT a.user_id,
           (date_trunc('week', a.attempt_date)::date - %(window_start)s::date) / 7 AS week,
           count(*)::integer AS n_attempts,
           (count(*) FILTER (WHERE a.is_correct))::integer AS n_correct,
           avg(a.is_correct::integer)::double precision AS accuracy,
           max(a.attempt_date) AS last_attempt_date
    FROM attempt AS a
    WHERE a.attempted_at >= (%(window_start)s::date)::timestamp AT TIME ZONE %(tz)s
      AND a.attempted_at <  (%(window_end)s::date)::timestamp AT TIME ZONE %(tz)s
    GROUP BY a.user_id, 2
),
per_user AS (
    SELECT user_id,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY n_attempts) AS usual_attempts,
           coalesce(sum(n_attempts) FILTER (WHERE week = %(n_weeks)s - 1), 0)::integer AS last_week_attempts,
           max(last_attempt_date) AS last_attempt_date
    FROM weekly
    GROUP BY user_id
)
SELECT w.user_id,
       w.week,
       w.n_attempts,
       w.n_correct,
       w.accuracy,
       s.accuracy_goal::double precision AS goal,
       least(
           greatest((date_trunc('week', s.exam_date)::date - %(window_start)s::date) / 7, %(n_weeks)s - 1),
           %(n_weeks)s - 1 + %(goal_horizon_weeks)s
       ) AS target_week,
       round(u.usual_attempts)::integer AS usual_attempts,
       u.last_week_attempts,
       u.last_attempt_date
FROM weekly AS w
JOIN per_user AS u USING (user_id)
JOIN students AS s USING (user_id)
WHERE w.n_attempts >= %(min_weekly_attempts)s
ORDER BY w.user_id, w.week;
