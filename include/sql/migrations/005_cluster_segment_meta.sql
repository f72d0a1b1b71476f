-- cluster_segments: what a run needs to be read and reproduced, next to each segment.
-- Nullable because rows written before this migration lack them. Run-level values
-- (window, population, scaling, choice of k) repeat on every segment of the run, like
-- k, method, silhouette and settings in 004.
ALTER TABLE segment_meta
    ADD COLUMN IF NOT EXISTS window_start           date,
    ADD COLUMN IF NOT EXISTS window_end             date,              -- exclusive
    ADD COLUMN IF NOT EXISTS n_users                integer,           -- students clustered in the run
    ADD COLUMN IF NOT EXISTS center_z               jsonb,             -- centre in population SDs from the mean
    ADD COLUMN IF NOT EXISTS scaling                jsonb,             -- {"center": {...}, "scale": {...}} of the fit
    ADD COLUMN IF NOT EXISTS fit_segment            integer,           -- the service's number (1 = largest)
    ADD COLUMN IF NOT EXISTS previous_run_date      date,              -- run whose centres the ids were matched to
    ADD COLUMN IF NOT EXISTS previous_distance      double precision,  -- to the matched previous centre (SD units); NULL = new id
    ADD COLUMN IF NOT EXISTS k_selection            jsonb,             -- {"k": [...], "silhouette": [...]} when k was automatic
    ADD COLUMN IF NOT EXISTS silhouette_sample_size integer;
