-- Weekly accuracy per student over the growth window, aggregated from the attempt view.
-- Parameters: window_start, window_end (Mondays, end exclusive), n_weeks,
-- goal_horizon_weeks, min_weekly_attempts, tz (the platform clock: local weeks).
--
-- week        0 = the window's first week (sent to brms as is).
-- goal        the student's accuracy goal.
-- target_week the week at which P(goal) is evaluated: the student's exam week,
--             at least the window's last week (exam passed: judge now) and at most
--             goal_horizon_weeks past it (extrapolating a line further is not credible).
-- Weeks with fewer than min_weekly_attempts attempts are left out: their accuracy
-- is too noisy to be an observation of the student's level.
SELECT a.user_id,
       (date_trunc('week', a.attempt_date)::date - %(window_start)s::date) / 7 AS week,
       count(*)::integer AS n_attempts,
       (count(*) FILTER (WHERE a.is_correct))::integer AS n_correct,
       avg(a.is_correct::integer)::double precision AS accuracy,
       s.accuracy_goal::double precision AS goal,
       least(
           greatest((date_trunc('week', s.exam_date)::date - %(window_start)s::date) / 7, %(n_weeks)s - 1),
           %(n_weeks)s - 1 + %(goal_horizon_weeks)s
       ) AS target_week
FROM attempt AS a
JOIN students AS s USING (user_id)
WHERE a.attempted_at >= (%(window_start)s::date)::timestamp AT TIME ZONE %(tz)s
  AND a.attempted_at <  (%(window_end)s::date)::timestamp AT TIME ZONE %(tz)s
GROUP BY a.user_id, 2, s.accuracy_goal, s.exam_date
HAVING count(*) >= %(min_weekly_attempts)s
ORDER BY a.user_id, week;
