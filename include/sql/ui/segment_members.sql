-- The members of one segment of a cluster run, closest to the centre first.
SELECT user_id, distance
FROM user_segment
WHERE run_date = %(run_date)s AND segment = %(segment)s
ORDER BY distance, user_id
LIMIT %(limit)s;
