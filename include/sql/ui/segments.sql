-- Every segment of every cluster run: sizes over runs, profiles (center_z) of a run.
SELECT run_date, segment, size, profile, center_z, k, silhouette, n_users
FROM segment_meta
ORDER BY run_date, segment;
