-- Prophet runs dated in [since, until), with the lookback they used.
SELECT run_date,
       max((settings ->> 'PROPHET_LOOKBACK_WEEKS')::integer) AS lookback_weeks,
       count(*) AS n_students
FROM prophet_fit_meta
WHERE run_date >= %(since)s AND run_date < %(until)s
GROUP BY run_date
ORDER BY run_date;
