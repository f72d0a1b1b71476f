-- Is weekly_kpi complete for the window's last week? Rows for that week must exist
-- and have been built by a KPI run for a date on or after the window's end (a run
-- before the week ended saw only part of it).
-- Parameters: window_end (Monday after the last week).
SELECT count(*) AS n_rows,
       count(*) FILTER (WHERE built_for >= %(window_end)s) AS n_complete_rows,
       max(built_for) AS latest_built_for
FROM weekly_kpi
WHERE week_start = %(window_end)s::date - 7;
