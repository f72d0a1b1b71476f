-- One survival run: status, coefficients (term, coef, hazard_ratio, se, p_value) and sizes.
SELECT run_date, status, message, window_start, window_end, horizon_days, coefficients, concordance, n, n_events
FROM survival_fit_meta
WHERE run_date = %(run_date)s;
