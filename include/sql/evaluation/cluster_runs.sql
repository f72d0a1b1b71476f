-- Segmentation runs dated before until, newest first within [since, until) plus the
-- run just before since (the previous run of the oldest evaluated one).
SELECT run_date, max(k) AS k, min(window_start) AS window_start, min(window_end) AS window_end
FROM segment_meta
WHERE run_date < %(until)s
  AND run_date >= coalesce((SELECT max(run_date) FROM segment_meta WHERE run_date < %(since)s), %(since)s)
GROUP BY run_date
ORDER BY run_date;
