-- Ground truth written by the synthetic-learner generator (development, tests,
-- benchmarks only), so tests can check that each model recovers it.
CREATE TABLE IF NOT EXISTS synthetic_run (
    run_id        integer PRIMARY KEY DEFAULT 1 CHECK (run_id = 1),
    seed          integer     NOT NULL,
    n_students    integer     NOT NULL,
    n_weeks       integer     NOT NULL,
    start_date    date        NOT NULL,  -- Monday of the first simulated week
    end_date      date        NOT NULL,  -- exclusive: Monday after the last week
    n_attempts    bigint      NOT NULL,
    churn_coefficients jsonb  NOT NULL,  -- true log-hazard coefficients, by covariate
    generated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS synthetic_truth_student (
    user_id            bigint PRIMARY KEY REFERENCES students (user_id),
    segment            integer          NOT NULL,  -- true behavioural segment
    base_accuracy      double precision NOT NULL,  -- expected accuracy in week 0
    weekly_slope       double precision NOT NULL,  -- expected accuracy gain per week
    sessions_per_week  double precision NOT NULL,
    churn_log_hazard   double precision NOT NULL,  -- linear predictor of the churn hazard
    churned_on         date                        -- first day of a 14+ day gap, NULL if never
);

CREATE TABLE IF NOT EXISTS synthetic_truth_anomaly (
    user_id          bigint  NOT NULL REFERENCES students (user_id),
    week_start       date    NOT NULL,
    activity_factor  double precision NOT NULL,  -- multiplier applied to that week's activity
    PRIMARY KEY (user_id, week_start)
);

-- Per-student study habits drawn by the generator around its segment's profile
-- (nullable, added after the first version of this table).
ALTER TABLE synthetic_truth_student
    ADD COLUMN IF NOT EXISTS attempts_per_session double precision,  -- median attempts per session
    ADD COLUMN IF NOT EXISTS seconds_per_question double precision,  -- median seconds per attempt
    ADD COLUMN IF NOT EXISTS topic_breadth        integer,           -- distinct topics studied
    ADD COLUMN IF NOT EXISTS weekend_weight       double precision;  -- weekend-day session rate / weekday rate
