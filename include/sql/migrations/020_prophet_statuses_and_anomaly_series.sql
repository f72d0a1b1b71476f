-- forecast_prophet (issue 12): fit statuses 'fitted', 'skipped', 'inactive', 'failed'
-- ('ok' rows of earlier runs become 'fitted'); anomalies of two series per student-week
-- (the learning index I_t and weekly activity), each with its direction.

ALTER TABLE prophet_fit_meta DROP CONSTRAINT IF EXISTS prophet_fit_meta_status_check;
UPDATE prophet_fit_meta SET status = 'fitted' WHERE status = 'ok';
ALTER TABLE prophet_fit_meta
    ADD CONSTRAINT prophet_fit_meta_status_check CHECK (status IN ('fitted', 'skipped', 'inactive', 'failed'));

-- Earlier rows are I_t flags; their direction follows from the sign of y - yhat.
ALTER TABLE prophet_anomalies
    ADD COLUMN IF NOT EXISTS series    text NOT NULL DEFAULT 'learning_index'
        CHECK (series IN ('learning_index', 'activity')),
    ADD COLUMN IF NOT EXISTS direction text CHECK (direction IN ('spike', 'dip'));
UPDATE prophet_anomalies SET direction = CASE WHEN y >= yhat THEN 'spike' ELSE 'dip' END WHERE direction IS NULL;
ALTER TABLE prophet_anomalies ALTER COLUMN direction SET NOT NULL;
ALTER TABLE prophet_anomalies DROP CONSTRAINT IF EXISTS prophet_anomalies_pkey;
ALTER TABLE prophet_anomalies ADD PRIMARY KEY (run_date, user_id, week_start, series);

COMMENT ON COLUMN prophet_anomalies.y IS 'observed value of the series (I_t, or attempts for activity)';
COMMENT ON COLUMN prophet_anomalies.yhat IS 'expected value of the series for that week';
COMMENT ON COLUMN prophet_anomalies.score IS 'z-scale score; flagged when above PROPHET_ANOMALY_THRESHOLD';
