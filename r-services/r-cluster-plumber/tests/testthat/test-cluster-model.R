simulated <- simulate_learners(400, seed = 42)
learner_matrix <- feature_matrix(simulated$data, learner_features)

test_that("scaling standardises each feature and round-trips centres", {
  scaling <- compute_scaling(learner_matrix)
  scaled <- scale_features(learner_matrix, scaling)
  expect_equal(unname(colMeans(scaled)), rep(0, 6), tolerance = 1e-12)
  expect_equal(unname(apply(scaled, 2, sd)), rep(1, 6), tolerance = 1e-12)
  expect_equal(unscale_centers(scaled[1:3, ], scaling), learner_matrix[1:3, ])
})

test_that("nearest_centers picks the closest centre, first on ties", {
  centers <- rbind(c(0, 0), c(3, 4), c(6, 8))
  x <- rbind(c(0, 1), c(3, 3), c(6, 8), c(1.5, 2))
  nearest <- nearest_centers(x, centers)
  expect_equal(nearest$cluster, c(1, 2, 3, 1))
  expect_equal(nearest$distance, c(1, 1, 0, 2.5))
})

for (method in cluster_methods) {
  test_that(paste(method, "recovers the simulated segments and k"), {
    fit <- fit_segments(learner_matrix, simulated$data$user_id, method = method)
    # Bar: the oracle that knows the true means scores ~0.99 on these data; a
    # fit that merges two segments scores below 0.8 (seen with k = 3). 0.9
    # allows ~3% misplaced students, never a merged or split segment.
    expect_gte(adjusted_rand_index(fit$segment, simulated$truth), 0.9)
    expect_equal(fit$k, 4L)
    expect_equal(fit$k_selection$k, 2:8)
    expect_equal(
      fit$silhouette,
      fit$k_selection$silhouette[fit$k_selection$k == fit$k]
    )
  })

  test_that(paste(method, "assignments are the nearest centre (predict = fit)"), {
    fit <- fit_segments(learner_matrix, simulated$data$user_id,
      method = method, n_clusters = 5L
    )
    predicted <- predict_segments(fit, learner_matrix)
    expect_identical(predicted$segment, fit$segment)
    expect_identical(predicted$distance, fit$distance)
    expect_equal(fit$sizes, tabulate(fit$segment, 5))
  })
}

test_that("kmeans centres are the means of their segments", {
  fit <- fit_segments(learner_matrix, simulated$data$user_id, n_clusters = 4L)
  segment_means <- rowsum(learner_matrix, fit$segment) / fit$sizes
  expect_equal(unname(fit$centers), unname(segment_means), tolerance = 1e-10)
})

test_that("segments are numbered by decreasing size", {
  fit <- fit_segments(learner_matrix, simulated$data$user_id, n_clusters = 4L)
  expect_equal(fit$sizes, sort(fit$sizes, decreasing = TRUE))
  expect_equal(sort(unique(fit$segment)), 1:4)
})

test_that("a fixed seed gives the same answer, whatever the row order", {
  first <- fit_segments(learner_matrix, simulated$data$user_id, method = "clara")
  again <- fit_segments(learner_matrix, simulated$data$user_id, method = "clara")
  expect_identical(first, again)

  shuffled <- sample(nrow(learner_matrix))
  reordered <- fit_segments(learner_matrix[shuffled, ],
    simulated$data$user_id[shuffled],
    method = "clara"
  )
  expect_identical(reordered$segment, first$segment[shuffled])
  expect_equal(reordered$centers, first$centers)
})

test_that("automatic k gives the same model as asking for that k", {
  automatic <- fit_segments(learner_matrix, simulated$data$user_id)
  fixed <- fit_segments(learner_matrix, simulated$data$user_id,
    n_clusters = automatic$k
  )
  expect_identical(fixed$segment, automatic$segment)
  expect_identical(fixed$centers, automatic$centers)
  expect_null(fixed$k_selection)
})

test_that("silhouette uses a bounded sample that tracks the full silhouette", {
  large <- simulate_learners(3000, seed = 7)
  x <- feature_matrix(large$data, learner_features)
  fit <- fit_segments(x, large$data$user_id,
    n_clusters = 4L,
    silhouette_sample_size = 500L
  )
  expect_equal(fit$silhouette_sample_size, 500L)
  full <- cluster::silhouette(fit$segment, dist(scale_features(x, fit$scaling)))
  expect_equal(fit$silhouette, mean(full[, "sil_width"]), tolerance = 0.05)
})

test_that("an inline model in original units predicts like the stored one", {
  fit <- fit_segments(learner_matrix, simulated$data$user_id, n_clusters = 4L)
  centers <- data.frame(segment = 1:4, fit$centers)
  inline <- validate_inline_model(list(
    centers = centers,
    scaling = list(
      center = as.list(fit$scaling$center),
      scale = as.list(fit$scaling$scale)
    )
  ))
  predicted <- predict_segments(inline, learner_matrix)
  expect_identical(predicted$segment, fit$segment)
  expect_equal(predicted$distance, fit$distance, tolerance = 1e-10)
})
