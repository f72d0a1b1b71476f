-- Rebuild features_topic_daily for the days [window_start, window_end).
-- Parameters: window_start, window_end (local dates), run_date, tz (the platform clock, LA_TIMEZONE).
-- day = attempt.attempt_date, the local calendar day.
DELETE FROM features_topic_daily
WHERE day >= %(window_start)s AND day < %(window_end)s;

INSERT INTO features_topic_daily (
    user_id, topic_id, day, n_attempts, n_correct, accuracy, time_spent_s, mean_difficulty, built_for
)
SELECT a.user_id,
       a.topic_id,
       a.attempt_date,
       count(*),
       count(*) FILTER (WHERE a.is_correct),
       avg(a.is_correct::int),
       sum(a.time_spent_s),
       avg(q.difficulty),
       %(run_date)s
FROM attempt AS a
JOIN questions AS q USING (question_id)
WHERE a.attempted_at >= (%(window_start)s::date)::timestamp AT TIME ZONE %(tz)s
  AND a.attempted_at <  (%(window_end)s::date)::timestamp AT TIME ZONE %(tz)s
GROUP BY a.user_id, a.topic_id, a.attempt_date;
