"""Unit tests of the synthetic-learner generator (no database).

The statistical checks use small, fixed data sets so they are deterministic; each
bar is derived from the noise the generator puts in, so a broken generator fails
them while the intended one passes with margin.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from learning_analytics.synthetic import (
    ANOMALY_RATE,
    CHURN_COEFFICIENTS,
    CHURN_GAP_DAYS,
    DIP_FACTOR_RANGE,
    SEGMENTS,
    SPIKE_FACTOR_RANGE,
    SyntheticData,
    binary_copy_payload,
    generate,
)

END_DATE = date(2026, 11, 23)


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    """200 students x 12 weeks: the size the growth model is specified for."""
    return generate(n_students=200, n_weeks=12, seed=7, end_date=END_DATE)


@pytest.fixture(scope="module")
def large() -> SyntheticData:
    """600 students x 16 weeks: enough churn events and anomalies to count."""
    return generate(n_students=600, n_weeks=16, seed=11, end_date=END_DATE)


def attempts_by_day(data: SyntheticData) -> pd.DataFrame:
    """Attempts with their day and week index in the simulated window."""
    attempts = data.attempts.copy()
    start = pd.Timestamp(data.run.start_date, tz="UTC")
    attempts["day"] = (attempts["attempted_at"] - start).dt.days
    attempts["week"] = attempts["day"] // 7
    return attempts


def weekly_summary(data: SyntheticData) -> pd.DataFrame:
    """One row per student-week with attempts: count, accuracy, active days."""
    return (
        attempts_by_day(data)
        .groupby(["user_id", "week"])
        .agg(n_attempts=("is_correct", "size"), accuracy=("is_correct", "mean"), active_days=("day", "nunique"))
        .reset_index()
    )


def ols_slope(weeks: pd.DataFrame) -> float:
    """Least-squares slope of weekly accuracy on week (NaN with fewer than 4 weeks)."""
    week = weeks["week"].to_numpy(dtype=float)
    if len(week) < 4:
        return float("nan")
    centred = week - week.mean()
    return float((centred * weeks["accuracy"].to_numpy()).sum() / (centred**2).sum())


def student_features(data: SyntheticData) -> pd.DataFrame:
    """The clustering features of the spec, per student, as the KPI builders measure them."""
    attempts = attempts_by_day(data)
    weekly = weekly_summary(data)
    return pd.DataFrame(
        {
            "mean_accuracy": attempts.groupby("user_id")["is_correct"].mean(),
            "accuracy_trend": weekly[weekly["n_attempts"] >= 5].groupby("user_id").apply(ols_slope),
            "mean_weekly_attempts": weekly.groupby("user_id")["n_attempts"].mean(),
            "active_days_per_week": weekly.groupby("user_id")["active_days"].mean(),
            "topic_breadth": attempts.groupby("user_id")["topic_id"].nunique(),
            "seconds_per_question": attempts.groupby("user_id")["time_spent_s"].mean(),
        }
    ).dropna()


def kmeans_labels(features: np.ndarray, k: int, seed: int, n_starts: int = 20) -> np.ndarray:
    """Plain Lloyd k-means with random restarts (lowest within-cluster sum of squares)."""
    rng = np.random.default_rng(seed)
    best_labels, best_inertia = np.zeros(len(features), dtype=int), np.inf
    for _ in range(n_starts):
        centers = features[rng.choice(len(features), size=k, replace=False)]
        for _ in range(100):
            distances = ((features[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
            labels = distances.argmin(axis=1)
            updated = np.array(
                [features[labels == c].mean(axis=0) if np.any(labels == c) else centers[c] for c in range(k)]
            )
            if np.allclose(updated, centers):
                break
            centers = updated
        inertia = distances.min(axis=1).sum()
        if inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    return best_labels


def adjusted_rand_index(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """Hubert-Arabie adjusted Rand index of two labellings."""
    contingency = pd.crosstab(labels_a, labels_b).to_numpy()

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) / 2).sum())

    both, rows, cols = pairs(contingency), pairs(contingency.sum(axis=1)), pairs(contingency.sum(axis=0))
    expected = rows * cols / (len(labels_a) * (len(labels_a) - 1) / 2)
    return (both - expected) / ((rows + cols) / 2 - expected)


def test_same_seed_gives_identical_frames() -> None:
    first = generate(60, 6, seed=3, end_date=END_DATE)
    second = generate(60, 6, seed=3, end_date=END_DATE)
    for name in ("students", "topics", "questions", "attempts", "truth_student", "truth_anomaly"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
    assert first.run == second.run


def test_different_seed_gives_different_data() -> None:
    first = generate(60, 6, seed=3, end_date=END_DATE)
    other = generate(60, 6, seed=4, end_date=END_DATE)
    assert not first.truth_student["weekly_slope"].equals(other.truth_student["weekly_slope"])
    assert not first.attempts["attempted_at"].equals(other.attempts["attempted_at"])


def test_sizes_scale_with_options() -> None:
    small = generate(50, 4, seed=1, end_date=END_DATE)
    more_students = generate(200, 4, seed=1, end_date=END_DATE)
    more_weeks = generate(50, 16, seed=1, end_date=END_DATE)
    assert len(small.students) == len(small.truth_student) == 50
    assert len(more_students.students) == 200
    assert 3 < more_students.n_attempts / small.n_attempts < 5.5
    assert 2.5 < more_weeks.n_attempts / small.n_attempts < 4.5  # churn thins later weeks
    assert more_weeks.run.start_date == END_DATE - timedelta(weeks=16)


def test_tables_are_consistent(data: SyntheticData) -> None:
    attempts = data.attempts
    assert 8 <= len(data.topics) <= 12
    assert len(data.questions) >= 45 * len(data.topics)
    assert attempts["attempt_id"].tolist() == list(range(1, len(attempts) + 1))
    assert attempts["attempted_at"].is_monotonic_increasing
    assert attempts["attempted_at"].min() >= pd.Timestamp(data.run.start_date, tz="UTC")
    assert attempts["attempted_at"].max() < pd.Timestamp(data.run.end_date, tz="UTC")
    assert attempts["user_id"].isin(data.students["user_id"]).all()
    question_topic = data.questions.set_index("question_id")["topic_id"]
    assert (question_topic.loc[attempts["question_id"]].to_numpy() == attempts["topic_id"].to_numpy()).all()
    assert (attempts["time_spent_s"] > 0).all()
    students = data.students
    assert (students["signup_date"] <= data.run.start_date).all()
    assert (students["exam_date"] > data.run.end_date).all()
    assert students["accuracy_goal"].between(0.6, 0.9).all()
    hours = attempts["attempted_at"].dt.hour
    assert hours.between(6, 23).all()
    assert hours.between(17, 22).mean() > 0.4  # evening study dominates


def test_bad_options_name_the_field() -> None:
    with pytest.raises(ValueError, match="end_date"):
        generate(10, 4, seed=1, end_date=date(2026, 11, 24))
    with pytest.raises(ValueError, match="n_students"):
        generate(0, 4, seed=1, end_date=END_DATE)
    with pytest.raises(ValueError, match="n_weeks"):
        generate(10, 0, seed=1, end_date=END_DATE)


def test_per_student_ols_recovers_weekly_slope(data: SyntheticData) -> None:
    # Students with at least 8 weeks of 5+ attempts (churners that stop early give too
    # few points). True slopes spread with SD ~0.011; a slope fitted to 8-12 weekly
    # accuracies of 30-100 binomial attempts has a standard error of ~0.004-0.008,
    # so the expected correlation is ~0.85-0.9. 0.75 leaves room for the seed while a
    # generator whose accuracy ignores weekly_slope would give ~0.
    weekly = weekly_summary(data)
    weekly = weekly[weekly["n_attempts"] >= 5]
    usable = weekly.groupby("user_id")["week"].size() >= 8
    estimated = weekly[weekly["user_id"].isin(usable[usable].index)].groupby("user_id").apply(ols_slope)
    truth = data.truth_student.set_index("user_id")["weekly_slope"].loc[estimated.index]
    assert len(estimated) >= 120
    assert np.corrcoef(estimated, truth)[0, 1] >= 0.75
    # The mean slope is unbiased (accuracy is matched on the probability scale).
    assert abs(estimated.mean() - truth.mean()) < 0.004


def test_weekly_accuracy_matches_expected_accuracy(data: SyntheticData) -> None:
    weekly = weekly_summary(data)
    truth = data.truth_student.set_index("user_id")
    expected = np.clip(
        truth.loc[weekly["user_id"], "base_accuracy"].to_numpy()
        + truth.loc[weekly["user_id"], "weekly_slope"].to_numpy() * weekly["week"].to_numpy(),
        0.05,
        0.97,
    )
    pooled_error = np.average(weekly["accuracy"] - expected, weights=weekly["n_attempts"])
    assert abs(pooled_error) < 0.01


def test_churned_students_stop_for_good(large: SyntheticData) -> None:
    truth = large.truth_student
    churned = truth[truth["churned_on"].notna()]
    share = len(churned) / len(truth)
    assert 0.25 <= share <= 0.40
    attempts = large.attempts.merge(churned[["user_id", "churned_on"]], on="user_id")
    attempt_day = attempts["attempted_at"].dt.tz_localize(None).dt.normalize()
    assert (attempt_day < attempts["churned_on"]).all()
    last_churn = churned["churned_on"].max().date()
    assert last_churn <= large.run.end_date - timedelta(days=CHURN_GAP_DAYS)
    assert set(CHURN_COEFFICIENTS) == set(large.run.churn_coefficients)


def test_higher_churn_hazard_churns_more(large: SyntheticData) -> None:
    truth = large.truth_student
    high = truth["churn_log_hazard"] > truth["churn_log_hazard"].median()
    churned = truth["churned_on"].notna()
    assert churned[high].mean() > churned[~high].mean() + 0.15


def test_anomaly_weeks_show_the_activity_change(large: SyntheticData) -> None:
    anomalies = large.truth_anomaly
    n_student_weeks = large.run.n_students * large.run.n_weeks
    assert 0.5 * ANOMALY_RATE * n_student_weeks <= len(anomalies) <= 1.5 * ANOMALY_RATE * n_student_weeks
    assert not anomalies.duplicated(["user_id", "week_start"]).any()
    spikes = anomalies["activity_factor"] > 1
    assert anomalies.loc[spikes, "activity_factor"].between(*SPIKE_FACTOR_RANGE).all()
    assert anomalies.loc[~spikes, "activity_factor"].between(*DIP_FACTOR_RANGE).all()
    # Only weeks the student is active throughout.
    churned_on = large.truth_student.set_index("user_id")["churned_on"].loc[anomalies["user_id"]]
    week_end = pd.to_datetime(anomalies["week_start"]) + pd.Timedelta(days=7)
    assert (churned_on.isna().to_numpy() | (week_end.to_numpy() <= churned_on.to_numpy())).all()

    weekly = attempts_by_day(large).groupby(["user_id", "week"]).size()
    start = pd.Timestamp(large.run.start_date)
    anomaly_week = ((pd.to_datetime(anomalies["week_start"]) - start).dt.days // 7).to_numpy()
    typical = weekly.groupby("user_id").median()
    observed = np.array(
        [weekly.get((user, week), 0) for user, week in zip(anomalies["user_id"], anomaly_week, strict=True)]
    )
    ratio = observed / typical.loc[anomalies["user_id"]].to_numpy()
    assert np.median(ratio[spikes.to_numpy()]) > 2.5
    assert np.median(ratio[~spikes.to_numpy()]) < 0.35


def test_segments_differ_in_habits(large: SyntheticData) -> None:
    features = student_features(large).join(large.truth_student.set_index("user_id")["segment"])
    means = features.groupby("segment").mean()
    names = [segment.name for segment in SEGMENTS]
    by_name = means.set_axis(names)
    assert by_name["mean_weekly_attempts"].idxmin() == "weekend_casual"
    assert by_name["active_days_per_week"].idxmin() == "weekend_casual"
    assert by_name["seconds_per_question"].idxmax() == "struggling_active"
    assert by_name["topic_breadth"].idxmax() == "broad_improver"
    assert by_name["accuracy_trend"].idxmax() == "broad_improver"
    assert by_name["mean_accuracy"].idxmax() == "steady_high"
    attempts = attempts_by_day(large).merge(large.truth_student[["user_id", "segment"]], on="user_id")
    weekend_share = (attempts["day"] % 7 >= 5).groupby(attempts["segment"]).mean().set_axis(names)
    assert weekend_share.idxmax() == "weekend_casual"


def test_kmeans_recovers_segments(large: SyntheticData) -> None:
    # k-means on the standardised features of the spec should find the true segments:
    # an adjusted Rand index of 0.8 means clearly recovered (random labels give ~0;
    # seeds 11-14 give 0.94-0.96).
    features = student_features(large)
    standardised = ((features - features.mean()) / features.std()).to_numpy()
    labels = kmeans_labels(standardised, k=len(SEGMENTS), seed=1)
    truth = large.truth_student.set_index("user_id")["segment"].loc[features.index].to_numpy()
    assert adjusted_rand_index(labels, truth) >= 0.8


def test_binary_copy_payload_layout() -> None:
    payload = binary_copy_payload([(np.array([1, 2]), ">i8"), (np.array([True, False]), "u1")])
    first_row = payload[:1].tobytes()
    assert first_row == (
        (2).to_bytes(2, "big") + (8).to_bytes(4, "big") + (1).to_bytes(8, "big") + (1).to_bytes(4, "big") + b"\x01"
    )
    assert payload.itemsize == 2 + 12 + 5
