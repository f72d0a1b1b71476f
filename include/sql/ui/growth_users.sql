-- Per-student growth results of one run: P(goal) and the predicted accuracy at the target week.
SELECT user_id, shard, shard_converged, intercept, slope, goal, target_week, p_goal, mean, lower, upper
FROM growth_brms_user
WHERE run_date = %(run_date)s
ORDER BY user_id;
