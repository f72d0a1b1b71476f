-- Whether weekly_kpi has been built for the last complete ISO week before the logical
-- date (i_t_trend of the students scored now reads it). Parameters: last_week_start.
-- n_rows: rows of that week; n_complete_rows: of them, built after the week ended.
SELECT count(*) AS n_rows,
       count(*) FILTER (WHERE built_for >= %(last_week_start)s::date + 7) AS n_complete_rows,
       max(built_for) AS latest_built_for
FROM weekly_kpi
WHERE week_start = %(last_week_start)s;
