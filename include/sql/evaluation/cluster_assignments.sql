-- Segments of one run, with each student's attempts in the run's window (input of
-- the activity-level segmentation that baselines the segments).
SELECT s.user_id,
       s.segment,
       coalesce(sum(k.n_attempts), 0) AS n_attempts
FROM user_segment AS s
LEFT JOIN weekly_kpi AS k
       ON k.user_id = s.user_id AND k.week_start >= %(window_start)s AND k.week_start < %(window_end)s
WHERE s.run_date = %(run_date)s
GROUP BY s.user_id, s.segment
ORDER BY s.user_id;
