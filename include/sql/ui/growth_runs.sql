-- The population slope of every growth run (the trend across runs) with its 95 per cent interval.
SELECT run_date, window_start, window_end, status, message, family, n_users, n_obs, n_shards,
       fixed_effects, slope, slope_lower, slope_upper, rhat_max, divergences, converged
FROM growth_brms_meta
ORDER BY run_date;
