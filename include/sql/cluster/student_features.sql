-- Per-student behaviour features for cluster_segments over the weeks
-- [window_start, window_end) (Mondays). One row per student with at least one
-- attempt in the window; the pipeline leaves out students active in too few weeks.
--
-- A week is "active" when the student made at least one attempt in it. Rates are
-- taken over active weeks so that a student who stopped studying part-way through
-- the window is described by how they studied, not by when they stopped.
-- weekly_kpi gives accuracy, trend, I_t, active days and time; features_topic_daily
-- gives the topic mix, attempts per study day and the weekend share (Saturday and Sunday
-- local time: features_topic_daily.day is the local day on the platform clock). A feature is
-- NULL only when features_topic_daily lacks the student's days (not built yet), or
-- the trend when the student has a single active week.
WITH kpi AS (
    SELECT user_id,
           (week_start - %(window_start)s::date) / 7 AS week_index,
           n_attempts,
           n_correct,
           accuracy,
           active_days,
           time_spent_s,
           i_t
    FROM weekly_kpi
    WHERE week_start >= %(window_start)s AND week_start < %(window_end)s
      AND n_attempts > 0
),
weekly AS (
    SELECT user_id,
           count(*) AS active_weeks,
           sum(n_attempts) AS n_attempts,
           sum(n_correct)::double precision / sum(n_attempts) AS accuracy_mean,
           regr_slope(accuracy, week_index) AS accuracy_trend,
           avg(i_t) AS i_t_mean,
           avg(active_days)::double precision AS active_days_per_week,
           sum(time_spent_s)::double precision / sum(n_attempts) AS seconds_per_question
    FROM kpi
    GROUP BY user_id
),
topics AS (
    SELECT user_id,
           count(DISTINCT topic_id) AS topic_breadth,
           sum(n_attempts)::double precision / count(DISTINCT day) AS attempts_per_active_day,
           coalesce(sum(n_attempts) FILTER (WHERE extract(isodow FROM day) >= 6), 0)::double precision
               / sum(n_attempts) AS weekend_share
    FROM features_topic_daily
    WHERE day >= %(window_start)s AND day < %(window_end)s
    GROUP BY user_id
)
SELECT w.user_id,
       w.active_weeks,
       w.n_attempts,
       w.accuracy_mean,
       w.accuracy_trend,
       w.i_t_mean,
       w.active_days_per_week,
       w.seconds_per_question,
       t.topic_breadth::double precision AS topic_breadth,
       t.attempts_per_active_day,
       t.weekend_share
FROM weekly AS w
LEFT JOIN topics AS t USING (user_id)
ORDER BY w.user_id;
