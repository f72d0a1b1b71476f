-- Whether the warehouse holds a synthetic data set with its truth (development,
-- tests, benchmarks). Truth-based metrics are computed only then.
SELECT count(*) > 0 AS available FROM synthetic_run;
