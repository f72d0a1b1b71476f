-- The scoreboard one evaluate_models run wrote. Parameter: evaluated_for.
SELECT model, run_date, horizon, metric, value, baseline, baseline_value, n, note
FROM model_evaluation
WHERE evaluated_for = %(evaluated_for)s
ORDER BY array_position(ARRAY['growth', 'prophet', 'survival', 'cluster'], model), run_date, horizon, metric;
