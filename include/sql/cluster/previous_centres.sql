-- Segment centres (original units) of the latest cluster_segments run before
-- run_date: the reference that keeps segment ids stable from run to run.
-- Parameters: run_date.
SELECT run_date, segment, center
FROM segment_meta
WHERE run_date = (SELECT max(run_date) FROM segment_meta WHERE run_date < %(run_date)s)
ORDER BY segment;
