-- One student's weekly KPI rows up to (excluding) a date: accuracy, activity, I_t, P, S.
SELECT week_start, n_attempts, accuracy, i_t, p, s
FROM weekly_kpi
WHERE user_id = %(user_id)s AND week_start < %(until)s
ORDER BY week_start;
