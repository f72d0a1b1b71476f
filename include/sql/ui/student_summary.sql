-- What every model said about one student in its latest run (student search).
SELECT 'growth' AS model, run_date, format('P(goal) %%s', round(p_goal::numeric, 3)) AS result
FROM growth_brms_user WHERE user_id = %(user_id)s AND run_date = (SELECT max(run_date) FROM growth_brms_user)
UNION ALL
SELECT 'prophet', run_date, format('%%s, %%s flagged week(s)', status,
       (SELECT count(*) FROM prophet_anomalies a WHERE a.run_date = m.run_date AND a.user_id = m.user_id))
FROM prophet_fit_meta m WHERE user_id = %(user_id)s AND run_date = (SELECT max(run_date) FROM prophet_fit_meta)
UNION ALL
SELECT 'survival', run_date, format('P(churn within horizon) %%s', round(p_event::numeric, 3))
FROM survival_active_risk WHERE user_id = %(user_id)s AND run_date = (SELECT max(run_date) FROM survival_active_risk)
UNION ALL
SELECT 'cluster', u.run_date, format('segment %%s: %%s', u.segment, s.profile)
FROM user_segment u JOIN segment_meta s USING (run_date, segment)
WHERE u.user_id = %(user_id)s AND u.run_date = (SELECT max(run_date) FROM user_segment);
