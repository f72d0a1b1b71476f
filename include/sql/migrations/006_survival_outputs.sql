-- fit_survival_churn outputs beyond 004 (see docs/survival.md).

-- A run can be skipped (too few events to fit): it is still recorded, without a model.
-- sizes: students per status (at_risk, churned_in_baseline, short_follow_up), scored,
-- written to weekly_kpi; warnings: the service's warnings about the fit.
ALTER TABLE survival_fit_meta
    ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'skipped')),
    ADD COLUMN IF NOT EXISTS message text,
    ADD COLUMN IF NOT EXISTS horizon_days integer,
    ADD COLUMN IF NOT EXISTS sizes jsonb,
    ADD COLUMN IF NOT EXISTS warnings jsonb,
    ALTER COLUMN model_id DROP NOT NULL,
    ALTER COLUMN coefficients DROP NOT NULL;

-- The churn risk of every student still active at the end of the run's window
-- (an attempt in the last SURVIVAL_EVENT_THRESHOLD_DAYS days), scored with the run's
-- model on covariates measured over the window's last baseline period. Kept whether
-- or not SURVIVAL_UPDATE_KPI copies p_event into weekly_kpi.s.
CREATE TABLE IF NOT EXISTS survival_active_risk (
    run_date         date             NOT NULL,
    user_id          bigint           NOT NULL,
    last_active_day  date             NOT NULL,
    covariates       jsonb            NOT NULL,  -- covariate -> value, as sent to /survival/predict
    risk_score       double precision NOT NULL,  -- log hazard ratio against the fit's average student
    p_event          double precision NOT NULL,  -- P(churn gap starts within horizon_days)
    PRIMARY KEY (run_date, user_id)
);
