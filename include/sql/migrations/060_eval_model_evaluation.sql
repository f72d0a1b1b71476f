-- The model scoreboard (evaluate_models): each model run's predictions scored
-- against what happened after it, beside a simple baseline on the same students.
-- One evaluation run (logical date evaluated_for) replaces its own rows, model by model.
CREATE TABLE IF NOT EXISTS model_evaluation (
    evaluated_for   date             NOT NULL,  -- logical date of the evaluate_models run
    model           text             NOT NULL CHECK (model IN ('growth', 'prophet', 'survival', 'cluster')),
    run_date        date             NOT NULL,  -- the model run whose predictions are scored
    horizon         text             NOT NULL,  -- what the predictions are about, e.g. 'target_week', '2w', '14d'
    metric          text             NOT NULL,  -- e.g. 'brier', 'auc', 'mase', 'recall_spike'
    value           double precision,           -- NULL when undefined (see note)
    baseline        text,                       -- the baseline's name, e.g. 'climatology', 'naive_4w'
    baseline_value  double precision,
    n               integer          NOT NULL,  -- cases the value rests on
    note            text,                       -- why a value is NULL, or what it means
    detail          jsonb,                      -- structure behind the value (calibration bins, ...)
    evaluated_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (evaluated_for, model, run_date, horizon, metric)
);
CREATE INDEX IF NOT EXISTS model_evaluation_run_idx ON model_evaluation (model, run_date);
