# Synthetic learners with known behavioural segments, and the adjusted Rand
# index used to compare a found segmentation with the true one.

# Per-segment feature means and the within-segment standard deviations. The
# segments differ on several features at once, as real ones do, but no single
# feature separates all four: recovering them needs the joint space.
learner_segment_profiles <- data.frame(
  segment = c("steady_high", "struggling_active", "disengaged", "improver"),
  mean_accuracy = c(0.80, 0.52, 0.58, 0.62),
  accuracy_trend = c(0.002, 0.000, -0.010, 0.022),
  mean_learning_index = c(70, 46, 32, 58),
  active_days_per_week = c(5.2, 5.4, 1.3, 3.0),
  topic_breadth = c(11, 8, 4, 16),
  seconds_per_question = c(62, 92, 42, 55)
)
learner_feature_sd <- c(
  mean_accuracy = 0.06, accuracy_trend = 0.006, mean_learning_index = 7,
  active_days_per_week = 0.8, topic_breadth = 2.2, seconds_per_question = 11
)
learner_features <- names(learner_feature_sd)

# Returns a column-oriented table (list of equal-length vectors) of `n`
# students in segments of unequal size (35/28/22/15 %), rows shuffled, plus
# the true segment of every row in `truth`.
simulate_learners <- function(n = 400, seed = 42) {
  set.seed(seed)
  shares <- c(0.35, 0.28, 0.22, 0.15)
  sizes <- round(n * shares)
  sizes[1] <- n - sum(sizes[-1])
  truth <- sample(rep(seq_along(sizes), sizes))
  table <- list(user_id = seq_len(n) + 1000L)
  for (feature in learner_features) {
    means <- learner_segment_profiles[[feature]][truth]
    table[[feature]] <- stats::rnorm(n, means, learner_feature_sd[[feature]])
  }
  # Keep the features inside their natural ranges.
  table$mean_accuracy <- pmin(pmax(table$mean_accuracy, 0), 1)
  table$active_days_per_week <- pmin(pmax(table$active_days_per_week, 0), 7)
  table$topic_breadth <- pmax(round(table$topic_breadth), 1)
  table$seconds_per_question <- pmax(table$seconds_per_question, 5)
  list(data = table, truth = truth)
}

adjusted_rand_index <- function(labels_a, labels_b) {
  stopifnot(length(labels_a) == length(labels_b))
  pairs <- function(counts) sum(choose(counts, 2))
  contingency <- table(labels_a, labels_b)
  pairs_both <- pairs(contingency)
  pairs_a <- pairs(rowSums(contingency))
  pairs_b <- pairs(colSums(contingency))
  expected <- pairs_a * pairs_b / choose(length(labels_a), 2)
  maximum <- (pairs_a + pairs_b) / 2
  (pairs_both - expected) / (maximum - expected)
}
