-- Model outputs. Every table is keyed by run_date (the run's logical date), so a
-- rerun or backfill of the same date replaces its rows instead of adding more.

-- Bayesian growth (fit_bayesian_growth): one row per run.
CREATE TABLE IF NOT EXISTS growth_brms_meta (
    run_date        date PRIMARY KEY,
    window_start    date             NOT NULL,
    window_end      date             NOT NULL,  -- exclusive
    status          text             NOT NULL CHECK (status IN ('ok', 'poor_diagnostics', 'skipped')),
    message         text,
    settings        jsonb            NOT NULL,
    family          text             NOT NULL,
    n_users         integer          NOT NULL,
    n_obs           integer          NOT NULL,
    n_shards        integer          NOT NULL,
    fixed_effects   jsonb,                      -- population effects combined across shards
    slope           double precision,
    slope_lower     double precision,
    slope_upper     double precision,
    rhat_max        double precision,
    ess_bulk_min    double precision,
    divergences     integer,
    converged       boolean          NOT NULL,
    shards          jsonb            NOT NULL,  -- per shard: model_id, sizes, diagnostics, timing
    elapsed_s       double precision,
    created_at      timestamptz      NOT NULL DEFAULT now()
);

-- Per-student growth results of a run (kept even when not written to weekly_kpi.P).
CREATE TABLE IF NOT EXISTS growth_brms_user (
    run_date      date             NOT NULL,
    user_id       bigint           NOT NULL,
    shard         integer          NOT NULL,
    shard_converged boolean        NOT NULL,  -- P is only used from converged shards
    intercept     double precision,
    slope         double precision,
    goal          double precision,
    target_week   integer,
    p_goal        double precision,
    mean          double precision,
    lower         double precision,
    upper         double precision,
    PRIMARY KEY (run_date, user_id)
);

-- Prophet (forecast_prophet): one row per run and series (student).
CREATE TABLE IF NOT EXISTS prophet_fit_meta (
    run_date       date             NOT NULL,
    user_id        bigint           NOT NULL,
    status         text             NOT NULL CHECK (status IN ('ok', 'failed', 'skipped')),
    reason         text,
    model_id       text,
    params         jsonb,
    changepoints   jsonb,
    sigma          double precision,
    n_points       integer,
    settings       jsonb            NOT NULL,
    created_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (run_date, user_id)
);

CREATE TABLE IF NOT EXISTS prophet_anomalies (
    run_date    date             NOT NULL,
    user_id     bigint           NOT NULL,
    week_start  date             NOT NULL,
    y           double precision NOT NULL,
    yhat        double precision NOT NULL,
    score       double precision NOT NULL,
    PRIMARY KEY (run_date, user_id, week_start)
);

CREATE TABLE IF NOT EXISTS prophet_forecast (
    run_date    date             NOT NULL,
    user_id     bigint           NOT NULL,
    week_start  date             NOT NULL,
    yhat        double precision NOT NULL,
    yhat_lower  double precision,
    yhat_upper  double precision,
    PRIMARY KEY (run_date, user_id, week_start)
);

-- Survival (fit_survival_churn): one row per run.
CREATE TABLE IF NOT EXISTS survival_fit_meta (
    run_date      date PRIMARY KEY,
    window_start  date             NOT NULL,
    window_end    date             NOT NULL,  -- exclusive
    settings      jsonb            NOT NULL,
    model_id      text             NOT NULL,
    covariates    text[]           NOT NULL,
    coefficients  jsonb            NOT NULL,
    concordance   double precision,
    ph_test       jsonb,
    n             integer          NOT NULL,
    n_events      integer          NOT NULL,
    created_at    timestamptz      NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS survival_risk (
    run_date    date             NOT NULL,
    user_id     bigint           NOT NULL,
    time_days   double precision NOT NULL,
    event       smallint         NOT NULL,
    risk_score  double precision NOT NULL,
    p_event     double precision NOT NULL,
    PRIMARY KEY (run_date, user_id)
);

-- Cluster segments (cluster_segments).
CREATE TABLE IF NOT EXISTS user_segment (
    run_date  date             NOT NULL,
    user_id   bigint           NOT NULL,
    segment   integer          NOT NULL,
    distance  double precision NOT NULL,
    PRIMARY KEY (run_date, user_id)
);

CREATE TABLE IF NOT EXISTS segment_meta (
    run_date    date             NOT NULL,
    segment     integer          NOT NULL,
    size        integer          NOT NULL,
    center      jsonb            NOT NULL,  -- feature -> value in original units
    profile     text             NOT NULL,
    k           integer          NOT NULL,
    method      text             NOT NULL,
    silhouette  double precision,
    model_id    text             NOT NULL,
    settings    jsonb            NOT NULL,
    created_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (run_date, segment)
);
