-- Rebuild features_topic_daily for the days [window_start, window_end).
-- Parameters: window_start, window_end (dates, UTC days), run_date.
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
WHERE a.attempted_at >= (%(window_start)s::date)::timestamp AT TIME ZONE 'UTC'
  AND a.attempted_at <  (%(window_end)s::date)::timestamp AT TIME ZONE 'UTC'
GROUP BY a.user_id, a.topic_id, a.attempt_date;
