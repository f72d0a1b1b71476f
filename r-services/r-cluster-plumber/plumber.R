# r-cluster-plumber: behavioural segments of students.
# Auth, JSON errors, /health and /openapi.json come from r-services/common;
# fits run in a worker process so /health answers during a long fit.

#* @apiTitle r-cluster-plumber
#* @apiDescription Behavioural segments of students (k-means, PAM, CLARA); new data go to the nearest centre.

#* Fit behavioural segments of students
#* Body: {"data": {"user_id": [...], <feature>: [...]}, "features": [...],
#* "method": "kmeans"|"pam"|"clara", "n_clusters": null|int,
#* "k_range": [2, 8], "seed": 1, "silhouette_sample_size": 2000}.
#* With n_clusters null, k is the one in k_range with the highest average
#* silhouette width on a seeded sample of at most silhouette_sample_size
#* students. Distances are Euclidean, in standardised units.
#* Answers 202 with a job (GET /jobs/<job_id> for status and result).
#* @post /cluster/fit
function(req, res) {
  settings <- parse_cluster_fit_request(request_body(req))
  submit_job(req, res, "cluster_fit", settings = settings)
}

#* Assign students to the nearest centre of a fitted model
#* Body: {"model_id": "..."} or {"model": {"centers": [...], "scaling": {...}}},
#* plus "data": {"user_id": [...], <feature>: [...]}.
#* @post /cluster/predict
function(req) {
  cluster_predict(request_body(req))
}
