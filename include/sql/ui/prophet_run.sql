-- One prophet run's fit status counts.
SELECT status, count(*)::integer AS n
FROM prophet_fit_meta
WHERE run_date = %(run_date)s
GROUP BY status
ORDER BY status;
