-- Every student of a survival run's fit: follow-up time, event and risk (Kaplan-Meier input).
SELECT user_id, time_days, event, risk_score, p_event
FROM survival_risk
WHERE run_date = %(run_date)s;
