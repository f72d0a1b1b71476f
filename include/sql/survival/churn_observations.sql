-- Landmark observations of fit_survival_churn: what the Cox model is fitted on and what
-- it scores. Parameters: window_start, window_end (exclusive; the run date W), tz (the
-- platform clock), event_threshold_days (T), baseline_days (B), horizon_days (H).
-- Days are local calendar days on the platform clock (attempt.attempt_date); a day is
-- active when the student made at least one attempt on it. Definitions and reasons:
-- docs/survival.md.
--
-- Landmarks are the days L = W - 1 - 7k (k = 0, 1, ...) whose B-day baseline
-- L - B + 1 .. L lies inside the window; time 0 is the end of day L. At a landmark a
-- student who was active on or before L has days_idle = L - (last active day <= L).
--
-- Churn (the event) is the completion of a gap of T days without attempts: the gap
-- after active day a completes on a + T when the next active day comes after a + T
-- (or never, inside the window). A student with days_idle >= T at L has churned already.
--
-- Two kinds of rows (column "role"):
--
-- 'fit'   one row per student and landmark L with k >= 1 (some follow-up inside the
--         window) and 0 <= days_idle < T (not churned at L: at risk).
--         time_days  D - L where D is the first gap completion after L, when
--                    D - L <= H and D <= W - 1 (event = 1); otherwise censored at
--                    least(H, W - 1 - L) (event = 0). Follow-up stops at the horizon:
--                    the model answers "within H days", and the proportional-hazards
--                    assumption is only needed over those H days.
-- 'score' one row per student active on some day of the window, at L = W - 1 (k = 0):
--         status 'active' (days_idle < T: scored by the model) or 'churned'
--         (days_idle >= T: S = 1, not scored).
--
-- Covariates, all over the baseline L - B + 1 .. L (nothing after time 0):
--   accuracy              share of baseline attempts answered correctly;
--   goal_gap              accuracy - the student's accuracy goal;
--   attempts_per_week     baseline attempts / (B / 7);
--   active_days_per_week  baseline active days / (B / 7);
--   accuracy_trend        least-squares slope of correctness on time, per week (0 when all
--                         attempts fall on one day);
--   i_t_trend             least-squares slope of weekly_kpi.i_t per week over the weeks that
--                         end inside the baseline (0 with fewer than two such weeks);
--   days_idle             L - last active day (0 = active on L);
--   missed_active_days    days_idle * active_days_per_week / 7: the study days the student
--                         would usually have had in the idle stretch (a long silence means
--                         more for a daily learner than for a weekend one).
-- Covariates are NULL for a churned student without attempts in the baseline.
WITH window_attempt AS (
    SELECT a.user_id, a.attempt_date, a.is_correct
    FROM attempt AS a
    WHERE a.attempted_at >= (%(window_start)s::date)::timestamp AT TIME ZONE %(tz)s
      AND a.attempted_at <  (%(window_end)s::date)::timestamp AT TIME ZONE %(tz)s
),
active_day AS (
    SELECT user_id,
           attempt_date AS day,
           count(*) AS n_attempts,
           count(*) FILTER (WHERE is_correct) AS n_correct
    FROM window_attempt
    GROUP BY user_id, attempt_date
),
gap_completion AS (
    -- The T-th idle day of each gap of at least T idle days inside the window.
    SELECT user_id, day + %(event_threshold_days)s AS completed_on
    FROM (
        SELECT user_id, day, lead(day) OVER (PARTITION BY user_id ORDER BY day) AS next_day
        FROM active_day
    ) AS d
    WHERE coalesce(next_day, %(window_end)s::date) - day - 1 >= %(event_threshold_days)s
),
landmark AS (
    SELECT k AS landmark_index, %(window_end)s::date - 1 - 7 * k AS landmark_day
    FROM generate_series(0, ((%(window_end)s::date - %(window_start)s::date) - %(baseline_days)s) / 7) AS k
),
student_landmark AS (
    SELECT l.landmark_index,
           l.landmark_day,
           d.user_id,
           max(d.day) AS last_active_day,
           l.landmark_day - max(d.day) AS days_idle
    FROM landmark AS l
    JOIN active_day AS d ON d.day <= l.landmark_day
    GROUP BY l.landmark_index, l.landmark_day, d.user_id
),
observation AS (
    SELECT CASE WHEN s.landmark_index = 0 THEN 'score' ELSE 'fit' END AS role,
           s.user_id,
           s.landmark_day,
           s.landmark_day - %(baseline_days)s + 1 AS baseline_start,
           s.last_active_day,
           s.days_idle,
           CASE WHEN s.landmark_index > 0 THEN 'at_risk'
                WHEN s.days_idle < %(event_threshold_days)s THEN 'active'
                ELSE 'churned' END AS status,
           min(g.completed_on) AS churn_completed_on,
           least(%(horizon_days)s, %(window_end)s::date - 1 - s.landmark_day) AS follow_up_days
    FROM student_landmark AS s
    LEFT JOIN gap_completion AS g ON g.user_id = s.user_id AND g.completed_on > s.landmark_day
    WHERE s.landmark_index = 0 OR s.days_idle < %(event_threshold_days)s
    GROUP BY s.landmark_index, s.landmark_day, s.user_id, s.last_active_day, s.days_idle
),
timed AS (
    SELECT o.*,
           coalesce(o.role = 'fit' AND o.churn_completed_on - o.landmark_day <= o.follow_up_days, false) AS has_event
    FROM observation AS o
),
baseline_activity AS (
    -- Sums of a regression of correctness on weeks since baseline_start, from daily counts.
    SELECT o.role,
           o.user_id,
           o.landmark_day,
           sum(d.n_attempts) AS n,
           sum(d.n_correct) AS n_correct,
           count(*) AS active_days,
           sum(d.n_attempts * (d.day - o.baseline_start) / 7.0) AS sx,
           sum(d.n_attempts * ((d.day - o.baseline_start) / 7.0) ^ 2) AS sxx,
           sum(d.n_correct * (d.day - o.baseline_start) / 7.0) AS sxy
    FROM timed AS o
    JOIN active_day AS d
      ON d.user_id = o.user_id
     AND d.day BETWEEN o.baseline_start AND o.landmark_day
    GROUP BY o.role, o.user_id, o.landmark_day
),
baseline_index AS (
    SELECT o.role,
           o.user_id,
           o.landmark_day,
           regr_slope(k.i_t, (k.week_start - o.baseline_start) / 7.0) AS i_t_trend
    FROM timed AS o
    JOIN weekly_kpi AS k
      ON k.user_id = o.user_id
     AND k.week_start + 6 >= o.baseline_start
     AND k.week_start + 6 <= o.landmark_day
    GROUP BY o.role, o.user_id, o.landmark_day
)
SELECT o.role,
       o.user_id,
       o.status,
       o.landmark_day,
       o.baseline_start,
       o.last_active_day,
       o.churn_completed_on,
       CASE WHEN o.role = 'fit' THEN
           (CASE WHEN o.has_event THEN o.churn_completed_on - o.landmark_day ELSE o.follow_up_days END)::double precision
       END AS time_days,
       CASE WHEN o.role = 'fit' THEN o.has_event::integer END AS event,
       b.n::integer AS baseline_attempts,
       (b.n_correct::double precision / b.n) AS accuracy,
       (b.n_correct::double precision / b.n - s.accuracy_goal)::double precision AS goal_gap,
       (b.n * 7.0 / %(baseline_days)s)::double precision AS attempts_per_week,
       (b.active_days * 7.0 / %(baseline_days)s)::double precision AS active_days_per_week,
       -- Only from two active days or more: on a single day rounding can leave a tiny
       -- non-zero spread of time and a slope of ~1e14 (students drifting away).
       CASE WHEN b.n IS NULL THEN NULL
            WHEN b.active_days < 2 THEN 0
            ELSE coalesce((b.n * b.sxy - b.sx * b.n_correct) / nullif(b.n * b.sxx - b.sx * b.sx, 0), 0)
       END::double precision AS accuracy_trend,
       CASE WHEN b.n IS NULL THEN NULL ELSE coalesce(i.i_t_trend, 0) END::double precision AS i_t_trend,
       o.days_idle::double precision AS days_idle,
       (o.days_idle * b.active_days / %(baseline_days)s::double precision) AS missed_active_days
FROM timed AS o
JOIN students AS s USING (user_id)
LEFT JOIN baseline_activity AS b USING (role, user_id, landmark_day)
LEFT JOIN baseline_index AS i USING (role, user_id, landmark_day)
ORDER BY o.role, o.landmark_day, o.user_id;
