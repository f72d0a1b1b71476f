-- Analytics tables built by the KPI/feature builders.

-- One row per student and ISO week (week_start is the Monday, UTC).
CREATE TABLE IF NOT EXISTS weekly_kpi (
    user_id       bigint           NOT NULL REFERENCES students (user_id),
    week_start    date             NOT NULL CHECK (extract(isodow FROM week_start) = 1),
    n_attempts    integer          NOT NULL,
    n_correct     integer          NOT NULL,
    accuracy      double precision,           -- n_correct / n_attempts, NULL without attempts
    active_days   smallint         NOT NULL,  -- distinct days with at least one attempt
    time_spent_s  bigint           NOT NULL,
    i_t           double precision NOT NULL,  -- learning index, see docs/metrics.md
    p             double precision,           -- P(reach accuracy goal), see p_source
    p_source      text CHECK (p_source IN ('simple', 'brms')),
    s             double precision,           -- 14-day churn risk from fit_survival_churn
    s_run_date    date,
    built_for     date             NOT NULL,  -- logical date of the builder run
    updated_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, week_start)
);
CREATE INDEX IF NOT EXISTS weekly_kpi_week_idx ON weekly_kpi (week_start);

-- One row per student, topic and UTC day with at least one attempt.
CREATE TABLE IF NOT EXISTS features_topic_daily (
    user_id          bigint           NOT NULL REFERENCES students (user_id),
    topic_id         integer          NOT NULL REFERENCES topics (topic_id),
    day              date             NOT NULL,
    n_attempts       integer          NOT NULL,
    n_correct        integer          NOT NULL,
    accuracy         double precision NOT NULL,
    time_spent_s     bigint           NOT NULL,
    mean_difficulty  double precision NOT NULL,
    built_for        date             NOT NULL,
    PRIMARY KEY (user_id, topic_id, day)
);
CREATE INDEX IF NOT EXISTS features_topic_daily_day_idx ON features_topic_daily (day);
