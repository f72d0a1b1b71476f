-- Every run date with results, per page of the Learning analytics view (newest first).
-- The scoreboard is keyed by the evaluation's own date (evaluated_for).
SELECT 'growth' AS page, run_date FROM growth_brms_meta
UNION SELECT 'prophet', run_date FROM prophet_fit_meta
UNION SELECT 'survival', run_date FROM survival_fit_meta
UNION SELECT 'cluster', run_date FROM segment_meta
UNION SELECT 'scoreboard', evaluated_for FROM model_evaluation
ORDER BY page, run_date DESC;
