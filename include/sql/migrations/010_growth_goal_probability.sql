-- One meaning of P (issue 11): the posterior predictive probability that the
-- student's OBSERVED accuracy in the target week, at their usual weekly attempts,
-- is at least their goal (docs/metrics.md). Both paths store the target week used
-- and, when P is not written, why.

-- p_null_reason: 'inactive_14_days' (no attempt in the 14 days before the week's
-- end), 'no_attempts_in_week', 'too_little_history' (simple path: fewer than 3
-- weeks with attempts in KPI_P_HISTORY_WEEKS), 'diagnostics_failed' (growth run
-- that did not converge).
ALTER TABLE weekly_kpi
    ADD COLUMN IF NOT EXISTS p_target_week date,
    ADD COLUMN IF NOT EXISTS p_null_reason text;

ALTER TABLE growth_brms_user
    ADD COLUMN IF NOT EXISTS target_week_start date,
    ADD COLUMN IF NOT EXISTS usual_attempts double precision,
    ADD COLUMN IF NOT EXISTS slope_lower double precision,
    ADD COLUMN IF NOT EXISTS slope_upper double precision,
    ADD COLUMN IF NOT EXISTS p_null_reason text;

-- fit_mode: 'two_stage' or 'full'; stage1: the stage-1 fit (sample sizes, model_id,
-- diagnostics); min_ess_bulk/max_rhat thresholds live in settings.
ALTER TABLE growth_brms_meta
    ADD COLUMN IF NOT EXISTS fit_mode text,
    ADD COLUMN IF NOT EXISTS stage1 jsonb;

-- Standard normal CDF (PostgreSQL 15 has no erf): Abramowitz & Stegun 26.2.17,
-- absolute error below 7.5e-8.
CREATE OR REPLACE FUNCTION la_normal_cdf(x double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN x >= 0 THEN 1 - tail ELSE tail END
    FROM (
        SELECT 0.3989422804014327 * exp(-x * x / 2)
               * t * (0.319381530 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))))
               AS tail
        FROM (SELECT 1 / (1 + 0.2316419 * abs(x)) AS t) AS s
    ) AS u
$$;
