-- Growth runs that could be scored: fitted (not skipped) and dated in [since, until).
SELECT run_date, status, window_start, window_end, settings
FROM growth_brms_meta
WHERE status <> 'skipped' AND run_date >= %(since)s AND run_date < %(until)s
ORDER BY run_date;
