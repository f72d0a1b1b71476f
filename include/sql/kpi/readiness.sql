-- Is weekly_kpi complete for the week before week_end? Rows for that week must exist
-- and have been built by a KPI run for a date on or after week_end (a run before the
-- week ended saw only part of it). Parameter: week_end (the Monday after the week).
SELECT count(*) AS n_rows,
       count(*) FILTER (WHERE built_for >= %(week_end)s) AS n_complete_rows,
       max(built_for) AS latest_built_for
FROM weekly_kpi
WHERE week_start = %(week_end)s::date - 7;
