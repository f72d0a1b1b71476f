-- cluster_segments: one row per run, like growth_brms_meta and survival_fit_meta, so a
-- skipped run (too few students, every feature constant) is recorded with its reason
-- instead of leaving no trace (segment_meta has rows only for the segments of a fit).
CREATE TABLE IF NOT EXISTS cluster_run_meta (
    run_date      date        NOT NULL PRIMARY KEY,
    status        text        NOT NULL CHECK (status IN ('ok', 'skipped')),
    message       text,                   -- why the run was skipped
    window_start  date        NOT NULL,
    window_end    date        NOT NULL,   -- exclusive
    settings      jsonb       NOT NULL,   -- the run's settings, min_active_weeks and features used
    sizes         jsonb       NOT NULL,   -- who was clustered and who was left out, and why
    k             integer,                -- NULL when skipped
    method        text,
    silhouette    double precision,
    n_users       integer     NOT NULL,   -- students clustered (0 when skipped)
    model_id      text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
