-- 030: the platform's clock, and the outputs of the landmark survival model.

-- The platform's clock (LA_TIMEZONE): the IANA zone whose days and weeks (Monday
-- 00:00 local) every metric and model uses. One row. A view cannot read a run's
-- settings, so the zone lives here for the attempt view; `python -m
-- learning_analytics.warehouse migrate` writes LA_TIMEZONE into it, and every run checks
-- at its start that its LA_TIMEZONE is this zone (a run on another clock fails, naming
-- both). The CHECK rejects names PostgreSQL does not know.
CREATE TABLE IF NOT EXISTS platform_clock (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    timezone    text        NOT NULL CHECK (('2000-01-01 00:00+00'::timestamptz AT TIME ZONE timezone) IS NOT NULL),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO platform_clock (timezone) VALUES ('Asia/Seoul') ON CONFLICT DO NOTHING;

-- attempt_date is now the local calendar day on the platform's clock (was the UTC day).
-- The scalar subquery runs once per query, not per row.
CREATE OR REPLACE VIEW attempt AS
SELECT a.attempt_id,
       a.user_id,
       a.question_id,
       a.topic_id,
       a.is_correct,
       a.time_spent_s,
       a.attempted_at,
       (a.attempted_at AT TIME ZONE (SELECT c.timezone FROM platform_clock AS c))::date AS attempt_date
FROM attempt_log AS a;

-- Landmark survival model (docs/survival.md). concordance now holds the held-out
-- (cross-validated by student) concordance; the in-sample one is kept next to it.
-- ph_actions: what was done about each covariate that failed the proportional-hazards
-- test; constraints: covariates whose effect is held non-negative (days idle) and
-- which terms the constraint set to 0.
ALTER TABLE survival_fit_meta
    ADD COLUMN IF NOT EXISTS concordance_in_sample double precision,
    ADD COLUMN IF NOT EXISTS ph_actions jsonb,
    ADD COLUMN IF NOT EXISTS constraints jsonb;

-- One fitted row per student and landmark. Rows of runs before this migration (one per
-- student, time 0 at the end of their own baseline) keep landmark_day NULL.
ALTER TABLE survival_risk
    DROP CONSTRAINT IF EXISTS survival_risk_pkey,
    ADD COLUMN IF NOT EXISTS landmark_day date,
    ADD COLUMN IF NOT EXISTS days_idle integer;
CREATE UNIQUE INDEX IF NOT EXISTS survival_risk_run_user_landmark
    ON survival_risk (run_date, user_id, landmark_day) NULLS NOT DISTINCT;

-- Students already idle for SURVIVAL_EVENT_THRESHOLD_DAYS at the run date are recorded
-- as churned (p_event = 1, no model score) instead of being left out.
ALTER TABLE survival_active_risk
    ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'churned')),
    ADD COLUMN IF NOT EXISTS days_idle integer,
    ALTER COLUMN risk_score DROP NOT NULL;
