-- Days with at least one attempt of the given students in [first_day, outcome_end).
SELECT DISTINCT a.user_id, a.attempt_date AS day
FROM attempt AS a
WHERE a.user_id = ANY(%(user_ids)s::bigint[])
  AND a.attempted_at >= (%(first_day)s::date - 1)::timestamptz
  AND a.attempted_at < (%(outcome_end)s::date + 1)::timestamptz
  AND a.attempt_date >= %(first_day)s AND a.attempt_date < %(outcome_end)s::date
ORDER BY 1, 2;
