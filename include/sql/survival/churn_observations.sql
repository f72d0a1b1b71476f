-- Survival observations of fit_survival_churn: what the Cox model is fitted on and
-- what it scores. Parameters: window_start, window_end (exclusive; the logical date),
-- event_threshold_days (T), baseline_days (B). Days are UTC calendar days (attempt.attempt_date).
-- See docs/survival.md for the definitions and why they are chosen.
--
-- Two kinds of rows (column "role"):
--
-- 'fit'   one row per student with an attempt in the window.
--         first_day     the student's first active day in the window;
--         baseline      the B days first_day .. first_day + B - 1 (covariates are measured here);
--         origin_day    first_day + B - 1, the last baseline day (time 0);
--         churn_start   first day of the student's first gap of at least T days without any
--                       attempt (a gap runs from the day after an active day to the day before
--                       the next one, or to the window's last day); NULL if there is none;
--         time_days     churn_start - origin_day when the gap starts after the origin (event = 1);
--                       otherwise follow_up_days = (window_end - T) - origin_day (event = 0): a gap
--                       starting after window_end - T cannot be T days long inside the window yet,
--                       so follow-up ends there (censoring at the window end);
--         status        'at_risk' (fitted), 'churned_in_baseline' (churn_start <= origin_day: not
--                       at risk at time 0) or 'short_follow_up' (follow_up_days < 1: started too
--                       late in the window for a churn to be observable).
-- 'score' one row per student still active at the window end (an attempt in the last T days,
--         so not churned yet), covariates measured over the last B days of the window; its
--         time 0 is the window's last day (origin_day = window_end - 1).
--
-- Covariates, all over the B days up to and including origin_day (nothing after time 0):
--   accuracy              share of attempts answered correctly;
--   goal_gap              accuracy - the student's accuracy goal (progress towards the goal);
--   attempts_per_week     attempts / (B / 7);
--   active_days_per_week  days with at least one attempt / (B / 7);
--   accuracy_trend        least-squares slope of correctness on time, per week (0 when all
--                         attempts fall on one day: no trend can be measured);
--   i_t_trend             least-squares slope of weekly_kpi.i_t per week over the ISO weeks that
--                         end inside the baseline (0 with fewer than two such weeks).
WITH window_attempt AS (
    SELECT a.user_id, a.attempt_date, a.attempted_at, a.is_correct
    FROM attempt AS a
    WHERE a.attempted_at >= (%(window_start)s::date)::timestamp AT TIME ZONE 'UTC'
      AND a.attempted_at <  (%(window_end)s::date)::timestamp AT TIME ZONE 'UTC'
),
active_day AS (
    SELECT DISTINCT user_id, attempt_date AS day
    FROM window_attempt
),
gap AS (
    -- The inactive days after each active day: day + 1 .. (next active day or window end) - 1.
    SELECT user_id,
           day + 1 AS gap_start,
           coalesce(lead(day) OVER (PARTITION BY user_id ORDER BY day), %(window_end)s::date) - day - 1 AS gap_days
    FROM active_day
),
history AS (
    SELECT d.user_id,
           min(d.day) AS first_day,
           max(d.day) AS last_active_day,
           (SELECT min(g.gap_start) FROM gap AS g
            WHERE g.user_id = d.user_id AND g.gap_days >= %(event_threshold_days)s) AS churn_start
    FROM active_day AS d
    GROUP BY d.user_id
),
fit_observation AS (
    SELECT user_id,
           first_day,
           last_active_day,
           churn_start,
           first_day + %(baseline_days)s - 1 AS origin_day,
           (%(window_end)s::date - %(event_threshold_days)s) - (first_day + %(baseline_days)s - 1) AS follow_up_days
    FROM history
),
observation AS (
    SELECT 'fit' AS role,
           user_id,
           first_day AS baseline_start,
           origin_day,
           last_active_day,
           churn_start,
           CASE WHEN churn_start <= origin_day THEN 'churned_in_baseline'
                WHEN follow_up_days < 1 THEN 'short_follow_up'
                ELSE 'at_risk' END AS status,
           CASE WHEN churn_start > origin_day THEN churn_start - origin_day ELSE follow_up_days END AS time_days,
           coalesce(churn_start > origin_day, false)::integer AS event
    FROM fit_observation
    UNION ALL
    SELECT 'score',
           user_id,
           %(window_end)s::date - %(baseline_days)s,
           %(window_end)s::date - 1,
           last_active_day,
           NULL,
           'active',
           NULL,
           NULL
    FROM history
    WHERE last_active_day >= %(window_end)s::date - %(event_threshold_days)s
),
baseline_activity AS (
    SELECT o.role,
           o.user_id,
           count(*) AS n_attempts,
           avg(a.is_correct::integer) AS accuracy,
           count(DISTINCT a.attempt_date) AS active_days,
           -- Only with attempts on two days or more: on a single day regr_slope's float
           -- accumulation can leave a tiny non-zero spread of x and return a slope of ~1e14.
           CASE WHEN count(DISTINCT a.attempt_date) >= 2
                THEN regr_slope(a.is_correct::integer, (a.attempt_date - o.baseline_start) / 7.0)
           END AS accuracy_trend
    FROM observation AS o
    JOIN window_attempt AS a
      ON a.user_id = o.user_id
     AND a.attempted_at >= o.baseline_start::timestamp AT TIME ZONE 'UTC'
     AND a.attempted_at <  (o.origin_day + 1)::timestamp AT TIME ZONE 'UTC'
    GROUP BY o.role, o.user_id
),
baseline_index AS (
    SELECT o.role,
           o.user_id,
           regr_slope(k.i_t, (k.week_start - o.baseline_start) / 7.0) AS i_t_trend
    FROM observation AS o
    JOIN weekly_kpi AS k
      ON k.user_id = o.user_id
     AND k.week_start + 6 >= o.baseline_start
     AND k.week_start + 6 <= o.origin_day
    GROUP BY o.role, o.user_id
)
SELECT o.role,
       o.user_id,
       o.status,
       o.baseline_start,
       o.origin_day,
       o.last_active_day,
       o.churn_start,
       o.time_days::double precision AS time_days,
       o.event,
       b.n_attempts::integer AS baseline_attempts,
       b.accuracy::double precision AS accuracy,
       (b.accuracy - s.accuracy_goal)::double precision AS goal_gap,
       (b.n_attempts * 7.0 / %(baseline_days)s)::double precision AS attempts_per_week,
       (b.active_days * 7.0 / %(baseline_days)s)::double precision AS active_days_per_week,
       coalesce(b.accuracy_trend, 0)::double precision AS accuracy_trend,
       coalesce(i.i_t_trend, 0)::double precision AS i_t_trend
FROM observation AS o
JOIN students AS s USING (user_id)
JOIN baseline_activity AS b USING (role, user_id)
LEFT JOIN baseline_index AS i USING (role, user_id)
ORDER BY o.role, o.user_id;
