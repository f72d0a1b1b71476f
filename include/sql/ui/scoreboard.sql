-- The scoreboard of one evaluation date: each metric of each model run, with its baseline.
SELECT model, run_date, horizon, metric, value, baseline, baseline_value, n, note
FROM model_evaluation
WHERE evaluated_for = %(evaluated_for)s
ORDER BY model, metric, horizon, run_date;
