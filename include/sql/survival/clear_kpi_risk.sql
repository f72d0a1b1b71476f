-- Forget the weekly_kpi.s written by an earlier run of the same logical date, so that
-- a rerun replaces it exactly (a student no longer scored keeps no stale value).
-- Parameters: run_date.
UPDATE weekly_kpi
SET s = NULL,
    s_run_date = NULL
WHERE s_run_date = %(run_date)s;
