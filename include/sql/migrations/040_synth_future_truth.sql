-- Synthetic data with a future (issue 10): what scoring a model prospectively needs.
-- The generator (learning_analytics.synthetic) simulates weeks of history that end at
-- the run date (history_end) and, optionally, future weeks after it: the realized
-- outcomes that predictions made at history_end are scored against. All dates of the
-- synthetic tables are local calendar dates of synthetic_run.timezone (weeks start on
-- local Mondays); attempt_log.attempted_at stays a UTC instant.
-- Rows loaded before this migration were generated on the UTC clock without future
-- weeks; they are back-filled accordingly.

ALTER TABLE synthetic_run
    ADD COLUMN IF NOT EXISTS future_weeks integer NOT NULL DEFAULT 0 CHECK (future_weeks >= 0),
    ADD COLUMN IF NOT EXISTS history_end  date,
    ADD COLUMN IF NOT EXISTS timezone     text NOT NULL DEFAULT 'UTC';
UPDATE synthetic_run SET history_end = end_date WHERE history_end IS NULL;
ALTER TABLE synthetic_run ALTER COLUMN history_end SET NOT NULL;

COMMENT ON COLUMN synthetic_run.n_weeks IS
    'Weeks of history: start_date .. history_end (exclusive).';
COMMENT ON COLUMN synthetic_run.start_date IS
    'Monday (local) of the first simulated week.';
COMMENT ON COLUMN synthetic_run.end_date IS
    'Same as history_end (kept for existing readers): the Monday that ends the history.';
COMMENT ON COLUMN synthetic_run.future_weeks IS
    'Weeks simulated after history_end, students behaving as before; the data end (exclusive) '
    'at history_end + 7 * future_weeks days.';
COMMENT ON COLUMN synthetic_run.history_end IS
    'The run date the data are made for (a local Monday): the models run at this date see '
    'the history before it; attempts at or after it are the future.';
COMMENT ON COLUMN synthetic_run.timezone IS
    'IANA time zone of the local clock the sessions were placed by (days, weeks, study hours).';

-- Kind of each anomalous week: a spike multiplies the week's session rate by 3-4, a
-- dip by 0.1-0.2.
ALTER TABLE synthetic_truth_anomaly
    ADD COLUMN IF NOT EXISTS kind text CHECK (kind IN ('spike', 'dip'));
UPDATE synthetic_truth_anomaly
SET kind = CASE WHEN activity_factor > 1 THEN 'spike' ELSE 'dip' END
WHERE kind IS NULL;
ALTER TABLE synthetic_truth_anomaly ALTER COLUMN kind SET NOT NULL;

COMMENT ON COLUMN synthetic_truth_anomaly.week_start IS
    'Monday (local) of the anomalous week; history or future week.';
COMMENT ON COLUMN synthetic_truth_anomaly.activity_factor IS
    'Multiplier applied to the week''s session rate (above 1: spike, below 1: dip).';
COMMENT ON COLUMN synthetic_truth_anomaly.kind IS
    '''spike'' (activity_factor 3-4) or ''dip'' (activity_factor 0.1-0.2).';

ALTER TABLE synthetic_truth_student
    ADD COLUMN IF NOT EXISTS exam_week date;
UPDATE synthetic_truth_student AS t
SET exam_week = date_trunc('week', s.exam_date)::date
FROM students AS s
WHERE s.user_id = t.user_id AND t.exam_week IS NULL;

COMMENT ON COLUMN synthetic_truth_student.segment IS
    'True behavioural segment: index into learning_analytics.synthetic.SEGMENTS (0-based).';
COMMENT ON COLUMN synthetic_truth_student.base_accuracy IS
    'Expected accuracy in the first simulated week (week 0).';
COMMENT ON COLUMN synthetic_truth_student.weekly_slope IS
    'Expected accuracy gain per week: expected accuracy in week w = '
    'clip(base_accuracy + weekly_slope * w, 0.05, 0.97) (see synthetic_truth_weekly).';
COMMENT ON COLUMN synthetic_truth_student.churn_log_hazard IS
    'Log of the constant daily hazard of stopping for good (acts from the second week to the data end).';
COMMENT ON COLUMN synthetic_truth_student.churned_on IS
    'True churn day (local): the student stopped for good, no attempt on or after it (the last '
    'attempt may be a few days earlier by chance). NULL if the student studies to the data end. '
    'Can fall in the last days of the history or in the future weeks.';
COMMENT ON COLUMN synthetic_truth_student.exam_week IS
    'Monday (local) of the week of the student''s exam (students.exam_date): the week at which '
    'the goal is judged.';

-- The true accuracy trajectory: one row per student and simulated week, history and
-- future weeks alike.
CREATE TABLE IF NOT EXISTS synthetic_truth_weekly (
    user_id            bigint           NOT NULL REFERENCES students (user_id),
    week_start         date             NOT NULL,
    expected_accuracy  double precision NOT NULL,
    active             boolean          NOT NULL,
    PRIMARY KEY (user_id, week_start)
);

COMMENT ON TABLE synthetic_truth_weekly IS
    'True weekly state of every synthetic student, every simulated week (history and future).';
COMMENT ON COLUMN synthetic_truth_weekly.week_start IS
    'Monday (local) of the week.';
COMMENT ON COLUMN synthetic_truth_weekly.expected_accuracy IS
    'Probability of a correct answer averaged over the question bank that week: '
    'clip(base_accuracy + weekly_slope * week index, 0.05, 0.97). Defined also after churn '
    '(what the student would score), so use it together with active.';
COMMENT ON COLUMN synthetic_truth_weekly.active IS
    'Not yet churned: churned_on is NULL or after the week''s Monday (the student may still '
    'have no attempt that week by chance).';

-- Back-fill the trajectory of data loaded before this table existed.
INSERT INTO synthetic_truth_weekly (user_id, week_start, expected_accuracy, active)
SELECT t.user_id,
       w.week_start,
       least(greatest(t.base_accuracy + t.weekly_slope * (w.week_start - r.start_date) / 7, 0.05), 0.97),
       t.churned_on IS NULL OR t.churned_on > w.week_start
FROM synthetic_truth_student AS t
CROSS JOIN synthetic_run AS r
CROSS JOIN LATERAL (
    SELECT generate_series(r.start_date, r.history_end + 7 * r.future_weeks - 7, interval '7 days')::date AS week_start
) AS w
ON CONFLICT (user_id, week_start) DO NOTHING;
