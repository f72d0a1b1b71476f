-- weekly_kpi.P (+ p_source, p_target_week, p_null_reason) for the weeks
-- [window_start, window_end): the one definition of P, run by the KPI builder after the
-- activity columns (weekly_kpi.sql) and by the growth DAG's persist for the week its
-- run is about (after writing growth_brms_meta/user, in the same transaction).
-- Parameters: window_start, window_end (Mondays), p_history_weeks, goal_horizon_weeks,
-- metrics_use_bayesian.
--
-- P = the probability that the student's OBSERVED accuracy in the target week, at
-- their usual weekly attempts, is at least their goal (docs/metrics.md). Target week =
-- the exam week, at most goal_horizon_weeks ahead, never before the row's week.
-- No P (NULL + p_null_reason) for a week without attempts, for a student with no
-- attempt in the 14 days before the week's end (this week and the one before), and,
-- for the simple estimate, with fewer than 3 weeks with attempts in p_history_weeks.
--
-- Simple (non-Bayesian) estimate: a weighted least-squares line through the empirical
-- logits z = ln((k + 0.5) / (n - k + 0.5)) of the weeks with attempts among the last
-- p_history_weeks (weights 1 / var(z), var(z) = 1/(k + 0.5) + 1/(n - k + 0.5)),
-- projected to the target week; overdispersion phi = max(1, weighted RSS / (weeks - 2)).
-- The future week's observed logit at the usual attempts m is normal around the
-- projection with variance se^2 (the line's) + phi * var(z at m), and the observed
-- accuracy reaches the goal when the correct answers reach c = ceil(goal m), i.e. when
-- the logit passes ln(c / (m - c + 1)) (continuity-corrected k = c - 1/2).
WITH history AS MATERIALIZED (
    SELECT k.user_id,
           k.week_start,
           k.n_attempts AS week_attempts,
           count(h.*) FILTER (WHERE h.n_attempts > 0) AS n_weeks,
           sum(h.n_attempts) FILTER (WHERE h.week_start >= k.week_start - 7) AS recent_attempts,
           sum(v.w) AS sw,
           sum(v.w * v.x) AS swx,
           sum(v.w * v.x * v.x) AS swxx,
           sum(v.w * v.z) AS swz,
           sum(v.w * v.x * v.z) AS swxz,
           sum(v.w * v.z * v.z) AS swzz,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY h.n_attempts) FILTER (WHERE h.n_attempts > 0) AS usual_attempts
    FROM weekly_kpi AS k
    JOIN weekly_kpi AS h
      ON h.user_id = k.user_id
     AND h.week_start <= k.week_start
     AND h.week_start > k.week_start - 7 * %(p_history_weeks)s
    LEFT JOIN LATERAL (
        SELECT (h.week_start - k.week_start) / 7.0 AS x,
               ln((h.n_correct + 0.5) / (h.n_attempts - h.n_correct + 0.5)) AS z,
               1 / (1 / (h.n_correct + 0.5) + 1 / (h.n_attempts - h.n_correct + 0.5)) AS w
        WHERE h.n_attempts > 0
    ) AS v ON true
    WHERE k.week_start >= %(window_start)s AND k.week_start < %(window_end)s
    GROUP BY k.user_id, k.week_start, k.n_attempts
),
line AS (
    SELECT hi.*,
           s.accuracy_goal::double precision AS goal,
           greatest(0, least((date_trunc('week', s.exam_date)::date - hi.week_start) / 7, %(goal_horizon_weeks)s)) AS x_target,
           hi.swx / hi.sw AS x_mean,
           hi.swxx - hi.swx * hi.swx / hi.sw AS sxx,
           hi.swxz - hi.swx * hi.swz / hi.sw AS sxz,
           round(hi.usual_attempts)::integer AS m
    FROM history AS hi
    JOIN students AS s USING (user_id)
    WHERE hi.n_weeks >= 3
),
projection AS (
    SELECT l.*,
           l.swz / l.sw + l.sxz / l.sxx * (l.x_target - l.x_mean) AS eta,
           greatest(1, (l.swzz - l.swz * l.swz / l.sw - l.sxz * l.sxz / l.sxx) / greatest(l.n_weeks - 2, 1)) AS phi,
           ceil(l.goal * l.m - 1e-9) AS needed
    FROM line AS l
    WHERE l.sxx > 0
),
simple AS MATERIALIZED (
    SELECT pr.user_id,
           pr.week_start,
           pr.week_start + 7 * pr.x_target::integer AS target_week,
           CASE WHEN pr.needed <= 0 THEN 1.0
                WHEN pr.needed > pr.m THEN 0.0
                ELSE la_normal_cdf(
                    (pr.eta - ln(pr.needed / (pr.m - pr.needed + 1)))
                    / sqrt(pr.phi * (1 / pr.sw + (pr.x_target - pr.x_mean) ^ 2 / pr.sxx)
                           + pr.phi * (1 / (pr.m / (1 + exp(-pr.eta)) + 0.5)
                                       + 1 / (pr.m / (1 + exp(pr.eta)) + 0.5)))
                ) END AS p
    FROM projection AS pr
),
bayesian AS (
    -- P of the converged growth run whose window ended right after this week.
    -- Latest such run if a week was fitted more than once.
    SELECT DISTINCT ON (g.user_id, m.window_end)
           g.user_id, m.window_end - 7 AS week_start, g.p_goal, g.target_week_start
    FROM growth_brms_user AS g
    JOIN growth_brms_meta AS m USING (run_date)
    WHERE %(metrics_use_bayesian)s AND m.converged AND g.p_goal IS NOT NULL
    ORDER BY g.user_id, m.window_end, m.run_date DESC
),
estimate AS MATERIALIZED (
    SELECT hi.user_id,
           hi.week_start,
           CASE WHEN hi.week_attempts = 0 AND coalesce(hi.recent_attempts, 0) = 0 THEN 'inactive_14_days'
                WHEN hi.week_attempts = 0 THEN 'no_attempts_in_week'
           END AS inactive_reason,
           b.p_goal,
           b.target_week_start,
           si.p AS simple_p,
           si.target_week AS simple_target_week
    FROM history AS hi
    LEFT JOIN simple AS si USING (user_id, week_start)
    LEFT JOIN bayesian AS b USING (user_id, week_start)
)
UPDATE weekly_kpi AS k
SET p = CASE WHEN e.inactive_reason IS NULL THEN coalesce(e.p_goal, e.simple_p) END,
    p_source = CASE WHEN e.inactive_reason IS NOT NULL THEN NULL
                    WHEN e.p_goal IS NOT NULL THEN 'brms'
                    WHEN e.simple_p IS NOT NULL THEN 'simple' END,
    p_target_week = CASE WHEN e.inactive_reason IS NULL THEN coalesce(e.target_week_start, e.simple_target_week) END,
    p_null_reason = CASE WHEN e.inactive_reason IS NOT NULL THEN e.inactive_reason
                         WHEN e.p_goal IS NULL AND e.simple_p IS NULL THEN 'too_little_history' END
FROM estimate AS e
WHERE k.user_id = e.user_id AND k.week_start = e.week_start;
