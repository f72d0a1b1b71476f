-- Churn risks of the survival runs dated in [since, until) whose horizon has closed
-- by outcome_end: every student scored as active at the run's window end.
-- horizon_days / threshold_days: the run's SURVIVAL_HORIZON_DAYS and
-- SURVIVAL_EVENT_THRESHOLD_DAYS (from its meta row).
SELECT r.run_date,
       r.user_id,
       r.last_active_day,
       r.p_event,
       m.horizon_days,
       (m.settings ->> 'SURVIVAL_EVENT_THRESHOLD_DAYS')::integer AS threshold_days
FROM survival_active_risk AS r
JOIN survival_fit_meta AS m USING (run_date)
WHERE m.status = 'ok'
  AND r.run_date >= %(since)s AND r.run_date < %(until)s
  AND r.run_date + m.horizon_days <= %(outcome_end)s::date
ORDER BY r.run_date, r.user_id;
