test_that("adjusted Rand index is 1 for the same partition under any labels", {
  truth <- c(1, 1, 2, 2, 3, 3, 3)
  expect_equal(adjusted_rand_index(truth, truth), 1)
  expect_equal(adjusted_rand_index(truth, c(5, 5, 9, 9, 2, 2, 2)), 1)
})

test_that("adjusted Rand index matches hand-computed values", {
  # Contingency [[2, 0], [1, 1]]: 1 agreeing pair, expected 1 -> ARI 0.
  expect_equal(adjusted_rand_index(c(1, 1, 2, 2), c(1, 1, 1, 2)), 0)
  # Contingency [[2, 1], [0, 3]]: 4 agreeing pairs, expected 6 * 7 / 15,
  # maximum (6 + 7) / 2.
  labels_a <- c(1, 1, 1, 2, 2, 2)
  labels_b <- c(1, 1, 2, 2, 2, 2)
  expect_equal(
    adjusted_rand_index(labels_a, labels_b),
    (4 - 42 / 15) / (6.5 - 42 / 15)
  )
})

test_that("adjusted Rand index is near 0 for unrelated partitions", {
  set.seed(3)
  labels_a <- sample(1:4, 2000, replace = TRUE)
  labels_b <- sample(1:4, 2000, replace = TRUE)
  expect_lt(abs(adjusted_rand_index(labels_a, labels_b)), 0.02)
})
