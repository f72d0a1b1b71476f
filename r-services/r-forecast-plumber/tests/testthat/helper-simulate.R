# Synthetic learners with known truth: weekly learning-index series with
# injected anomalous weeks, and churn times with known hazard ratios.

week_dates <- function(n_weeks, first = as.Date("2026-01-05")) {
  first + 7L * (seq_len(n_weeks) - 1L)
}

# `n_series` weekly series of `n_weeks` points: level ~ 50, a per-student
# trend, normal noise of sd `noise_sd`. In `n_anomalies` series (one week each)
# the value jumps by +-`anomaly_size` noise sds. Returns the column-oriented
# series table and the true anomalies (series_id, ds).
simulate_weekly_series <- function(n_series = 30, n_weeks = 12, n_anomalies = 10,
                                   anomaly_size = 6, noise_sd = 2, seed = 1) {
  set.seed(seed)
  ds <- week_dates(n_weeks)
  ids <- 1000L + seq_len(n_series)
  with_anomaly <- sample(n_series, n_anomalies)
  y <- lapply(seq_len(n_series), function(i) {
    50 + stats::rnorm(1, 0, 1) * (seq_len(n_weeks) - 1) + stats::rnorm(n_weeks, 0, noise_sd)
  })
  anomaly_week <- sample(n_weeks, n_anomalies, replace = TRUE)
  for (j in seq_along(with_anomaly)) {
    i <- with_anomaly[j]
    y[[i]][anomaly_week[j]] <- y[[i]][anomaly_week[j]] + sample(c(-1, 1), 1) * anomaly_size * noise_sd
  }
  list(
    series = list(series_id = rep(ids, each = n_weeks), ds = format(rep(ds, n_series)), y = unlist(y)),
    truth = data.frame(series_id = ids[with_anomaly], ds = format(ds[anomaly_week]))
  )
}

# Churn data with exponential hazards: h(t | x) = base_rate * exp(x' beta),
# independent uniform censoring. Returns a column-oriented table.
simulate_churn <- function(n = 600, beta = c(accuracy = -1.2, sessions = -0.6, gap_days = 0.08),
                           base_rate = 0.03, max_follow_up = 90, seed = 7) {
  set.seed(seed)
  covariates <- data.frame(
    accuracy = stats::rnorm(n, 0, 1),
    sessions = stats::rnorm(n, 0, 1),
    gap_days = stats::rexp(n, 1 / 5)
  )
  rate <- base_rate * exp(as.matrix(covariates[names(beta)]) %*% beta)
  event_time <- stats::rexp(n, rate)
  censor_time <- stats::runif(n, 20, max_follow_up)
  c(
    list(
      user_id = seq_len(n),
      time = round(pmin(event_time, censor_time), 2),
      event = as.integer(event_time <= censor_time)
    ),
    as.list(covariates)
  )
}

subset_table <- function(table, rows) lapply(table, `[`, rows)

# Weekly learning index of students as the KPI computes it: I_t = 100 x
# accuracy x min(1, ln(1 + n) / ln(201)) with n attempts a week (sessions ~
# Poisson(2-7), 10-30 attempts each, so some weeks have a dozen attempts and
# some hundreds) and accuracy measured from them (binomial around the
# student's line). `y_se` is I_t's sampling error as the DAG sends it. In
# `shifted` series one busy week's accuracy moves by `shift`. Returns the
# column-oriented series and the shifted weeks (series_id, ds).
simulate_learning_index <- function(n_students, n_weeks = 12, shifted = 0, shift = 0.25, seed = 1) {
  set.seed(seed)
  ds <- week_dates(n_weeks)
  with_shift <- sample.int(n_students, shifted)
  students <- lapply(seq_len(n_students), function(i) {
    attempts <- vapply(stats::rpois(n_weeks, stats::runif(1, 2, 7)), function(s) {
      sum(1 + stats::rpois(s, stats::runif(1, 10, 30) - 1))
    }, numeric(1))
    accuracy <- stats::runif(1, 0.45, 0.75) + stats::runif(1, -0.005, 0.02) * (seq_len(n_weeks) - 1)
    week <- which.max(attempts)
    if (i %in% with_shift) accuracy[week] <- accuracy[week] + sample(c(-1, 1), 1) * shift
    correct <- stats::rbinom(n_weeks, attempts, pmin(pmax(accuracy, 0.02), 0.98))
    effort <- pmin(1, log1p(attempts) / log(201))
    share <- (correct + 0.5) / (attempts + 1)
    list(
      y = ifelse(attempts > 0, 100 * correct / pmax(attempts, 1) * effort, 0),
      y_se = ifelse(attempts > 0, 100 * effort * sqrt(share * (1 - share) / pmax(attempts, 1)), NA),
      activity = attempts, week = week
    )
  })
  column <- function(name) unlist(lapply(students, `[[`, name))
  list(
    series = list(
      series_id = rep(seq_len(n_students), each = n_weeks), ds = format(rep(ds, n_students)),
      y = column("y"), y_se = column("y_se"), activity = column("activity")
    ),
    truth = data.frame(
      series_id = with_shift, ds = format(ds[vapply(students[with_shift], `[[`, numeric(1), "week")])
    )
  )
}
