-- What the demo's DAG runs wrote: one line per output table.
-- Parameter: run_date (the demo's logical date).
SELECT 'features_topic_daily' AS output, count(*) AS rows,
       format('%%s students, %%s topics, days %%s .. %%s', count(DISTINCT user_id), count(DISTINCT topic_id), min(day), max(day)) AS example
FROM features_topic_daily
UNION ALL
SELECT 'weekly_kpi', count(*),
       format('%%s weeks; last week mean accuracy %%s, mean I_t %%s, P from %%s, S set on %%s rows',
              count(DISTINCT week_start),
              round(avg(accuracy) FILTER (WHERE week_start = (SELECT max(week_start) FROM weekly_kpi))::numeric, 3),
              round(avg(i_t) FILTER (WHERE week_start = (SELECT max(week_start) FROM weekly_kpi))::numeric, 1),
              coalesce(string_agg(DISTINCT p_source, '+'), 'nowhere'),
              count(s))
FROM weekly_kpi
UNION ALL
SELECT 'growth_brms_meta', count(*),
       coalesce(max(format('%%s (%%s), %%s, %%s students in %%s %%s, weekly slope %%s [%%s, %%s], max Rhat %%s, min bulk ESS %%s, %%s divergences%%s',
                           CASE WHEN converged THEN 'converged' ELSE 'NOT converged' END, status, fit_mode, n_users,
                           n_shards, CASE WHEN fit_mode = 'two_stage' THEN 'stage-2 chunks' ELSE 'shards' END,
                           round(slope::numeric, 4), round(slope_lower::numeric, 4), round(slope_upper::numeric, 4),
                           round(rhat_max::numeric, 3), round(ess_bulk_min::numeric), divergences,
                           coalesce(': ' || message, ''))), 'no run')
FROM growth_brms_meta WHERE run_date = %(run_date)s
UNION ALL
SELECT 'growth_brms_user', count(*),
       format('median P(goal) %%s; %%s students above 0.5; no P: %%s inactive 14 days, %%s no attempts in the week, %%s diagnostics failed',
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY p_goal))::numeric, 3), count(*) FILTER (WHERE p_goal > 0.5),
              count(*) FILTER (WHERE p_null_reason = 'inactive_14_days'),
              count(*) FILTER (WHERE p_null_reason = 'no_attempts_in_week'),
              count(*) FILTER (WHERE p_null_reason = 'diagnostics_failed'))
FROM growth_brms_user WHERE run_date = %(run_date)s
UNION ALL
SELECT 'prophet_fit_meta', count(*),
       format('%%s fitted, %%s skipped, %%s inactive, %%s failed',
              count(*) FILTER (WHERE status = 'fitted'), count(*) FILTER (WHERE status = 'skipped'),
              count(*) FILTER (WHERE status = 'inactive'), count(*) FILTER (WHERE status = 'failed'))
FROM prophet_fit_meta WHERE run_date = %(run_date)s
UNION ALL
SELECT 'prophet_anomalies', count(*),
       format('activity: %%s spikes, %%s dips; learning_index: %%s spikes, %%s dips; largest score %%s',
              count(*) FILTER (WHERE series = 'activity' AND direction = 'spike'),
              count(*) FILTER (WHERE series = 'activity' AND direction = 'dip'),
              count(*) FILTER (WHERE series = 'learning_index' AND direction = 'spike'),
              count(*) FILTER (WHERE series = 'learning_index' AND direction = 'dip'),
              coalesce(max(format('%%s (student %%s, week %%s, %%s %%s: %%s vs %%s expected)', round(score::numeric, 2),
                                  user_id, week_start, series, direction, round(y::numeric, 1), round(yhat::numeric, 1)))
                       FILTER (WHERE score = (SELECT max(score) FROM prophet_anomalies WHERE run_date = %(run_date)s)), 'none'))
FROM prophet_anomalies WHERE run_date = %(run_date)s
UNION ALL
SELECT 'prophet_forecast', count(*), format('%%s students x %%s weeks ahead', count(DISTINCT user_id), count(DISTINCT week_start))
FROM prophet_forecast WHERE run_date = %(run_date)s
UNION ALL
SELECT 'survival_fit_meta', count(*),
       coalesce(max(CASE WHEN status = 'skipped' THEN 'skipped: ' || message
                    ELSE format('%%s student-landmarks, %%s events, held-out concordance %%s (in sample %%s), time interactions: %%s',
                                n, n_events, round(concordance::numeric, 3), round(concordance_in_sample::numeric, 3),
                                coalesce((SELECT string_agg(a ->> 'covariate', ', ') FROM jsonb_array_elements(ph_actions) AS a), 'none'))
                    END), 'no run')
FROM survival_fit_meta WHERE run_date = %(run_date)s
UNION ALL
SELECT 'survival_active_risk', count(*),
       format('%%s churned already (S = 1); mean S of the %%s others %%s',
              count(*) FILTER (WHERE status = 'churned'), count(*) FILTER (WHERE status = 'active'),
              round(avg(p_event) FILTER (WHERE status = 'active')::numeric, 3))
FROM survival_active_risk WHERE run_date = %(run_date)s
UNION ALL
SELECT 'user_segment', count(*), format('%%s segments', count(DISTINCT segment))
FROM user_segment WHERE run_date = %(run_date)s
UNION ALL
SELECT 'segment_meta', count(*),
       coalesce(string_agg(format('#%%s (%%s): %%s', segment, size, profile), '; ' ORDER BY segment), 'no run')
FROM segment_meta WHERE run_date = %(run_date)s;
