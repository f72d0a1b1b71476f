-- The churn risk of the students still active at a survival run, highest first.
SELECT user_id, last_active_day, risk_score, p_event
FROM survival_active_risk
WHERE run_date = %(run_date)s
ORDER BY p_event DESC, user_id;
