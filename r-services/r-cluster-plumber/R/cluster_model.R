# Behavioural segmentation of students: standardise features, cluster, and
# assign every student to the nearest centre.
#
# Invariants that make /cluster/predict reproduce /cluster/fit exactly:
# * scaling is (x - center) / scale with the training mean and sd, applied by
#   the same function at fit and predict time;
# * the reported assignment of every method is the nearest centre (Euclidean,
#   standardised units; ties go to the lower segment number), computed by
#   `nearest_centers`, which predict uses too.
#
# Determinism: rows are put in user_id order before any random step and the RNG
# is seeded with fixed kinds, so the same students give the same answer
# whatever the row order of the request or the state of the R session.

kmeans_nstart <- 25L
kmeans_iter_max <- 100L
lloyd_iter_max <- 100L
clara_samples <- 50L
# clara's default sub-sample (40 + 2k rows) is small enough to miss a small
# segment; 200 rows per sub-sample still costs little.
clara_min_sample_size <- 200L

compute_scaling <- function(x) {
  list(
    center = colMeans(x),
    scale = apply(x, 2, stats::sd)
  )
}

scale_features <- function(x, scaling) {
  features <- names(scaling$center)
  centered <- sweep(x[, features, drop = FALSE], 2, scaling$center[features])
  sweep(centered, 2, scaling$scale[features], "/")
}

unscale_centers <- function(centers_scaled, scaling) {
  features <- names(scaling$center)
  rescaled <- sweep(centers_scaled[, features, drop = FALSE], 2,
    scaling$scale[features], "*")
  sweep(rescaled, 2, scaling$center[features], "+")
}

# Euclidean distance from every row of `x` to every centre: n x k matrix.
center_distances <- function(x, centers) {
  distances <- vapply(
    seq_len(nrow(centers)),
    function(j) sqrt(rowSums(sweep(x, 2, centers[j, ])^2)),
    double(nrow(x))
  )
  matrix(distances, nrow = nrow(x))
}

nearest_centers <- function(x, centers) {
  distances <- center_distances(x, centers)
  cluster <- max.col(-distances, ties.method = "first")
  list(
    cluster = cluster,
    distance = distances[cbind(seq_len(nrow(x)), cluster)]
  )
}

seed_rng <- function(seed) {
  set.seed(seed,
    kind = "Mersenne-Twister", normal.kind = "Inversion",
    sample.kind = "Rejection"
  )
}

# Hartigan-Wong stops when no single move lowers the total within-cluster sum
# of squares, which does not guarantee that every point is nearest to its own
# centre. Lloyd steps from its solution end in a state where it is, so the
# nearest-centre rule of predict reproduces the fit.
refine_to_nearest_center <- function(x, centers) {
  cluster <- nearest_centers(x, centers)$cluster
  for (iteration in seq_len(lloyd_iter_max)) {
    for (j in unique(cluster)) {
      centers[j, ] <- colMeans(x[cluster == j, , drop = FALSE])
    }
    updated <- nearest_centers(x, centers)$cluster
    if (identical(updated, cluster)) {
      break
    }
    cluster <- updated
  }
  centers
}

# Fits one clustering with k groups on standardised `x`; returns centres in
# standardised units (k x p), before relabelling.
fit_centers <- function(x, k, method, seed) {
  seed_rng(seed)
  if (method == "kmeans") {
    fit <- withCallingHandlers(
      stats::kmeans(x, centers = k, nstart = kmeans_nstart,
        iter.max = kmeans_iter_max),
      # Lloyd refinement below finishes the job when Hartigan-Wong stops early.
      warning = function(w) {
        if (grepl("Quick-TRANSfer|did not converge", conditionMessage(w))) {
          invokeRestart("muffleWarning")
        }
      }
    )
    centers <- refine_to_nearest_center(x, fit$centers)
  } else if (method == "pam") {
    # FastPAM with the deterministic BUILD start ("faster" starts at random).
    fit <- cluster::pam(x, k, metric = "euclidean", variant = "f_5",
      keep.diss = FALSE, keep.data = FALSE)
    centers <- fit$medoids
  } else {
    fit <- cluster::clara(x, k, metric = "euclidean", samples = clara_samples,
      sampsize = min(nrow(x), max(40L + 2L * k, clara_min_sample_size)), rngR = TRUE, pamLike = TRUE,
      keep.data = FALSE)
    centers <- fit$medoids
  }
  dimnames(centers) <- list(NULL, colnames(x))
  centers
}

# Numbers segments 1..k by decreasing size (ties by the centres' coordinates)
# so that the numbering does not depend on the random starts.
relabel_by_size <- function(x, centers) {
  cluster <- nearest_centers(x, centers)$cluster
  sizes <- tabulate(cluster, nbins = nrow(centers))
  coordinate_order <- do.call(order, as.data.frame(centers))
  coordinate_rank <- match(seq_len(nrow(centers)), coordinate_order)
  centers[order(-sizes, coordinate_rank), , drop = FALSE]
}

# Rows (of the user_id-ordered data) on which silhouettes are computed: all of
# them when few, otherwise a seeded random sample, so that `dist` needs
# O(sample_size^2) memory rather than O(n^2).
silhouette_rows <- function(n_rows, sample_size, seed) {
  if (n_rows <= sample_size) {
    return(seq_len(n_rows))
  }
  seed_rng(seed)
  sort(sample.int(n_rows, sample_size))
}

average_silhouette <- function(cluster, sample_distances) {
  if (length(unique(cluster)) < 2) {
    return(NA_real_)
  }
  widths <- cluster::silhouette(cluster, sample_distances)
  mean(widths[, "sil_width"])
}

# Fits with k clusters and scores the fit by the average silhouette width on
# the sampled rows.
fit_and_score <- function(x, k, method, seed, sample_rows, sample_distances) {
  centers <- relabel_by_size(x, fit_centers(x, k, method, seed))
  assignment <- nearest_centers(x, centers)
  list(
    centers = centers,
    assignment = assignment,
    silhouette = average_silhouette(
      assignment$cluster[sample_rows], sample_distances
    )
  )
}

# The model: settings come from `parse_cluster_fit_request`. Returns everything the
# /cluster/fit response and the model store need, rows in request order.
fit_segments <- function(x, user_id, method = "kmeans", n_clusters = NULL,
                         k_range = c(2L, 8L), seed = 1L,
                         silhouette_sample_size = 2000L) {
  request_order <- order(user_id, method = "radix")
  scaling <- compute_scaling(x)
  x_scaled <- scale_features(x[request_order, , drop = FALSE], scaling)

  sample_rows <- silhouette_rows(nrow(x_scaled), silhouette_sample_size, seed)
  sample_distances <- stats::dist(x_scaled[sample_rows, , drop = FALSE])

  candidate_k <- if (is.null(n_clusters)) {
    seq(k_range[[1]], k_range[[2]])
  } else {
    n_clusters
  }
  fits <- lapply(candidate_k, function(k) {
    fit_and_score(x_scaled, k, method, seed, sample_rows, sample_distances)
  })
  scores <- vapply(fits, function(fit) fit$silhouette, double(1))
  # Ties go to the smaller k: the simpler segmentation.
  best <- if (all(is.na(scores))) 1L else which.max(scores)
  chosen <- fits[[best]]

  row_position <- match(seq_along(user_id), request_order)
  k <- nrow(chosen$centers)
  result <- list(
    k = k,
    method = method,
    seed = seed,
    features = colnames(x),
    silhouette = chosen$silhouette,
    silhouette_sample_size = length(sample_rows),
    scaling = scaling,
    centers_scaled = chosen$centers,
    centers = unscale_centers(chosen$centers, scaling),
    segment = chosen$assignment$cluster[row_position],
    distance = chosen$assignment$distance[row_position],
    sizes = tabulate(chosen$assignment$cluster, nbins = k)
  )
  if (is.null(n_clusters)) {
    result$k_selection <- list(k = candidate_k, silhouette = scores)
  }
  result
}

# Assigns rows of `x` (original units) to the nearest centre of a model holding
# `scaling`, `centers_scaled` and optionally `segment_labels` (of the centres).
predict_segments <- function(model, x) {
  x_scaled <- scale_features(x, model$scaling)
  assignment <- nearest_centers(x_scaled, model$centers_scaled)
  labels <- model$segment_labels %||% seq_len(nrow(model$centers_scaled))
  list(
    segment = labels[assignment$cluster],
    distance = assignment$distance
  )
}
