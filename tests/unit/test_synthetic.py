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
    ACCURACY_BOUNDS,
    ANOMALY_RATE,
    CHURN_COEFFICIENTS,
    DIP_FACTOR_RANGE,
    SEGMENTS,
    SPIKE_FACTOR_RANGE,
    SyntheticData,
    binary_copy_payload,
    expected_accuracy,
    generate,
    local_to_utc,
)

END_DATE = date(2026, 11, 23)
#: Weeks simulated after END_DATE by the fixtures with a future.
FUTURE_WEEKS = 8


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    """200 students x 12 weeks: the size the growth model is specified for."""
    return generate(n_students=200, n_weeks=12, seed=7, end_date=END_DATE)


@pytest.fixture(scope="module")
def large() -> SyntheticData:
    """600 students x 16 weeks: enough churn events and anomalies to count."""
    return generate(n_students=600, n_weeks=16, seed=11, end_date=END_DATE)


@pytest.fixture(scope="module")
def large_with_future() -> SyntheticData:
    """The students of ``large`` (same seed), with 8 more weeks after END_DATE."""
    return generate(n_students=600, n_weeks=16, seed=11, end_date=END_DATE, future_weeks=FUTURE_WEEKS)


def local_time(data: SyntheticData) -> pd.Series:
    """Every attempt's wall-clock time in the run's time zone (naive)."""
    return data.attempts["attempted_at"].dt.tz_convert(data.run.timezone).dt.tz_localize(None)


def attempts_by_day(data: SyntheticData) -> pd.DataFrame:
    """Attempts with their local day and week index in the simulated data."""
    attempts = data.attempts.copy()
    attempts["day"] = (local_time(data).dt.normalize() - pd.Timestamp(data.run.start_date)).dt.days
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
    local = local_time(data)
    assert local.min() >= pd.Timestamp(data.run.start_date)
    assert local.max() < pd.Timestamp(data.run.end_date)
    assert attempts["user_id"].isin(data.students["user_id"]).all()
    question_topic = data.questions.set_index("question_id")["topic_id"]
    assert (question_topic.loc[attempts["question_id"]].to_numpy() == attempts["topic_id"].to_numpy()).all()
    assert (attempts["time_spent_s"] > 0).all()
    students = data.students
    assert (students["signup_date"] <= data.run.start_date).all()
    assert (students["exam_date"] > data.run.end_date).all()
    assert students["accuracy_goal"].between(0.6, 0.9).all()
    hours = local.dt.hour  # study hours are local (default Asia/Seoul)
    assert data.run.timezone == "Asia/Seoul"
    assert hours.between(6, 23).all()
    assert hours.between(17, 22).mean() > 0.4  # evening study dominates


def test_bad_options_name_the_field() -> None:
    with pytest.raises(ValueError, match="end_date"):
        generate(10, 4, seed=1, end_date=date(2026, 11, 24))
    with pytest.raises(ValueError, match="n_students"):
        generate(0, 4, seed=1, end_date=END_DATE)
    with pytest.raises(ValueError, match="n_weeks"):
        generate(10, 0, seed=1, end_date=END_DATE)
    with pytest.raises(ValueError, match="future_weeks"):
        generate(10, 4, seed=1, end_date=END_DATE, future_weeks=-1)
    with pytest.raises(ValueError, match="timezone"):
        generate(10, 4, seed=1, end_date=END_DATE, timezone="Mars/Olympus_Mons")


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
    attempts = attempts_by_day(large).merge(churned[["user_id", "churned_on"]], on="user_id")
    churn_day = (pd.to_datetime(attempts["churned_on"]) - pd.Timestamp(large.run.start_date)).dt.days
    assert (attempts["day"] < churn_day).all()
    assert set(CHURN_COEFFICIENTS) == set(large.run.churn_coefficients)


@pytest.mark.parametrize("fixture", ["large", "large_with_future"])
def test_churn_also_starts_in_the_last_14_days(fixture: str, request: pytest.FixtureRequest) -> None:
    """Students drift away right up to the end of the data, as real ones do.

    ~390 of the 600 students are still studying two weeks before the end, at a median
    daily hazard of ~0.003: ~15 expected churns in those 14 days (Poisson: P(< 5) ~1e-4).
    The old generator suppressed churn there and gives 0.
    """
    data: SyntheticData = request.getfixturevalue(fixture)
    churned_on = data.truth_student["churned_on"].dropna()
    last_14_days = churned_on[churned_on >= data.run.data_end - timedelta(days=14)]
    assert len(last_14_days) >= 5
    assert churned_on.max() < data.run.data_end


def test_higher_churn_hazard_churns_more(large: SyntheticData) -> None:
    truth = large.truth_student
    high = truth["churn_log_hazard"] > truth["churn_log_hazard"].median()
    churned = truth["churned_on"].notna()
    assert churned[high].mean() > churned[~high].mean() + 0.15


@pytest.mark.parametrize("fixture", ["large", "large_with_future"])
def test_anomaly_weeks_show_the_activity_change(fixture: str, request: pytest.FixtureRequest) -> None:
    data: SyntheticData = request.getfixturevalue(fixture)
    anomalies = data.truth_anomaly
    n_student_weeks = data.run.n_students * data.run.n_simulated_weeks
    assert 0.5 * ANOMALY_RATE * n_student_weeks <= len(anomalies) <= 1.5 * ANOMALY_RATE * n_student_weeks
    assert not anomalies.duplicated(["user_id", "week_start"]).any()
    spikes = anomalies["activity_factor"] > 1
    assert anomalies.loc[spikes, "activity_factor"].between(*SPIKE_FACTOR_RANGE).all()
    assert anomalies.loc[~spikes, "activity_factor"].between(*DIP_FACTOR_RANGE).all()
    # The kind names the factor; both kinds are common (each anomaly is a spike with p = 0.5).
    assert (anomalies["kind"] == np.where(spikes, "spike", "dip")).all()
    assert 0.35 < spikes.mean() < 0.65
    # Only weeks the student is active throughout, history and future alike.
    churned_on = pd.to_datetime(data.truth_student.set_index("user_id")["churned_on"].loc[anomalies["user_id"]])
    week_end = pd.to_datetime(anomalies["week_start"]) + pd.Timedelta(days=7)
    assert (churned_on.isna().to_numpy() | (week_end.to_numpy() <= churned_on.to_numpy())).all()
    assert (pd.to_datetime(anomalies["week_start"]) < pd.Timestamp(data.run.data_end)).all()
    in_future = anomalies["week_start"] >= data.run.end_date
    assert in_future.any() == (data.run.future_weeks > 0)

    weekly = attempts_by_day(data).groupby(["user_id", "week"]).size()
    start = pd.Timestamp(data.run.start_date)
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


# --- future weeks ------------------------------------------------------------------------


def test_run_records_history_end_future_and_clock(large_with_future: SyntheticData) -> None:
    run = large_with_future.run
    assert (run.n_weeks, run.future_weeks, run.n_simulated_weeks) == (16, FUTURE_WEEKS, 16 + FUTURE_WEEKS)
    assert run.history_end == run.end_date == END_DATE
    assert run.start_date == END_DATE - timedelta(weeks=16)
    assert run.data_end == END_DATE + timedelta(weeks=FUTURE_WEEKS)
    assert run.timezone == "Asia/Seoul"
    local = local_time(large_with_future)
    assert local.min() >= pd.Timestamp(run.start_date)
    assert local.max() < pd.Timestamp(run.data_end)
    assert (local >= pd.Timestamp(run.end_date)).mean() > 0.2  # the future holds attempts
    history = large_with_future.history()
    assert (local_time(large_with_future).loc[history.index] < pd.Timestamp(run.end_date)).all()
    assert len(history) < large_with_future.n_attempts


def test_future_weeks_keep_the_same_students(large: SyntheticData, large_with_future: SyntheticData) -> None:
    """Same seed: same students, goals, exams, trajectories, habits and churn hazards;
    a churn day inside the history is the same; students who studied to the end of the
    history either churn in the future or study on."""
    pd.testing.assert_frame_equal(large.students, large_with_future.students)
    pd.testing.assert_frame_equal(large.questions, large_with_future.questions)
    parameters = [column for column in large.truth_student.columns if column != "churned_on"]
    pd.testing.assert_frame_equal(large.truth_student[parameters], large_with_future.truth_student[parameters])
    before, after = large.truth_student["churned_on"], large_with_future.truth_student["churned_on"]
    churned_in_history = before.notna()
    assert (after[churned_in_history] == before[churned_in_history]).all()
    assert (after[~churned_in_history].dropna() >= END_DATE).all()
    assert after[~churned_in_history].notna().sum() > 20  # 8 more weeks of hazard


def test_history_is_identical_in_distribution(large: SyntheticData, large_with_future: SyntheticData) -> None:
    """Per history week, attempts per student and pooled accuracy of the run with a future
    equal those of the run without one (same students, same rates; only the random draws
    differ). Both have ~20k attempts a week from ~500 students with weekly counts of SD
    ~40: the mean differs by ~2.5 attempts by chance, accuracy by ~0.005; a generator that
    changed behaviour before the run date would shift both far more."""

    def per_week(data: SyntheticData) -> pd.DataFrame:
        attempts = attempts_by_day(data)
        attempts = attempts[attempts["week"] < data.run.n_weeks]
        return attempts.groupby("week").agg(n=("is_correct", "size"), accuracy=("is_correct", "mean"))

    without, with_future = per_week(large), per_week(large_with_future)
    assert list(with_future.index) == list(range(16))
    relative_count = with_future["n"] / without["n"]
    assert relative_count.between(0.9, 1.1).all(), relative_count
    assert (with_future["accuracy"] - without["accuracy"]).abs().max() < 0.025
    assert abs(with_future["n"].sum() / without["n"].sum() - 1) < 0.03


def test_behaviour_continues_into_the_future(large_with_future: SyntheticData) -> None:
    """After the run date students keep their habits: attempts per active student-week in
    the future weeks match the history's, and accuracy keeps following the true trajectory."""
    data = large_with_future
    weekly = weekly_summary(data)
    truth = data.truth_weekly.assign(
        week=lambda t: (pd.to_datetime(t["week_start"]) - pd.Timestamp(data.run.start_date)).dt.days // 7
    )
    weekly = weekly.merge(truth[["user_id", "week", "expected_accuracy", "active"]], on=["user_id", "week"])
    future = weekly["week"] >= data.run.n_weeks
    # Active student-weeks with attempts: the median count is a habit, not a date.
    history_median = weekly.loc[~future, "n_attempts"].median()
    future_median = weekly.loc[future, "n_attempts"].median()
    assert abs(future_median / history_median - 1) < 0.15
    for part in (~future, future):
        pooled_error = np.average(
            weekly.loc[part, "accuracy"] - weekly.loc[part, "expected_accuracy"], weights=weekly.loc[part, "n_attempts"]
        )
        assert abs(pooled_error) < 0.01


def test_truth_weekly_covers_every_simulated_week(large_with_future: SyntheticData) -> None:
    data, run = large_with_future, large_with_future.run
    weekly = data.truth_weekly
    assert len(weekly) == run.n_students * run.n_simulated_weeks
    assert not weekly.duplicated(["user_id", "week_start"]).any()
    mondays = [run.start_date + timedelta(weeks=w) for w in range(run.n_simulated_weeks)]
    assert sorted(weekly["week_start"].unique()) == mondays
    assert mondays[run.n_weeks] == run.end_date and mondays[-1] == run.data_end - timedelta(weeks=1)
    # The trajectory is the documented formula of the student's parameters.
    truth = data.truth_student.set_index("user_id")
    week = (pd.to_datetime(weekly["week_start"]) - pd.Timestamp(run.start_date)).dt.days.to_numpy() // 7
    formula = np.clip(
        truth.loc[weekly["user_id"], "base_accuracy"].to_numpy()
        + truth.loc[weekly["user_id"], "weekly_slope"].to_numpy() * week,
        *ACCURACY_BOUNDS,
    )
    np.testing.assert_allclose(weekly["expected_accuracy"], formula)
    matrix = expected_accuracy(
        truth["base_accuracy"].to_numpy(), truth["weekly_slope"].to_numpy(), run.n_simulated_weeks
    )
    np.testing.assert_allclose(weekly["expected_accuracy"], matrix.ravel())
    # active = not churned by the week's Monday; nobody studies in an inactive week.
    churned_on = truth.loc[weekly["user_id"], "churned_on"].to_numpy()
    expected_active = [c is None or c > w for c, w in zip(churned_on, weekly["week_start"], strict=True)]
    assert (weekly["active"].to_numpy() == np.array(expected_active)).all()
    studied = weekly_summary(data)[["user_id", "week"]]
    inactive = weekly.assign(week=week)[~weekly["active"]][["user_id", "week"]]
    assert studied.merge(inactive).empty
    assert (~weekly["active"]).any() and weekly["active"].mean() > 0.7


def test_exam_week_is_the_monday_of_the_exam(large_with_future: SyntheticData) -> None:
    data = large_with_future
    exam = data.students.set_index("user_id")["exam_date"]
    exam_week = data.truth_student.set_index("user_id")["exam_week"]
    assert all(
        week.weekday() == 0 and week <= day < week + timedelta(days=7)
        for week, day in zip(exam_week, exam, strict=True)
    )
    # Exams stay three weeks to six months after the run date, so some fall in the future weeks.
    assert exam.min() >= END_DATE + timedelta(days=21)
    assert (exam < data.run.data_end).sum() > 50


# --- the local clock -------------------------------------------------------------------


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_local_clock_of_a_zone_without_dst() -> None:
    """Asia/Seoul is UTC+9 all year: Monday 00:30 KST is Sunday 15:30 UTC, and a Sunday
    23:30 KST attempt is in the local week before."""
    first_day = date(2026, 11, 16)  # a Monday
    days = np.array([6, 7, 7])  # Sunday 22nd, Monday 23rd, Monday 23rd
    seconds = np.array([23 * 3600 + 1800, 1800, 8 * 3600 + 1800])
    got = local_to_utc(first_day, days, seconds, "Asia/Seoul")
    assert list(got) == [utc("2026-11-22 14:30"), utc("2026-11-22 15:30"), utc("2026-11-22 23:30")]


def test_local_clock_across_berlin_dst_changes() -> None:
    """Europe/Berlin: CET (+1) in winter, CEST (+2) in summer. On 2026-03-29 02:00-03:00 does
    not exist (moved forward to 03:00 = 01:00 UTC); on 2026-10-25 02:00-03:00 happens twice
    (the first, summer-time occurrence is taken). UTC never goes backwards."""
    spring, autumn = date(2026, 3, 29), date(2026, 10, 25)
    hours = np.array([1.5, 2.5, 3.0, 3.5, 20.0])
    seconds = (hours * 3600).astype(np.int64)
    zeros = np.zeros(len(hours), dtype=np.int64)
    assert list(local_to_utc(spring, zeros, seconds, "Europe/Berlin")) == [
        utc("2026-03-29 00:30"),
        utc("2026-03-29 01:00"),
        utc("2026-03-29 01:00"),
        utc("2026-03-29 01:30"),
        utc("2026-03-29 18:00"),
    ]
    assert list(local_to_utc(autumn, zeros, seconds, "Europe/Berlin")) == [
        utc("2026-10-24 23:30"),
        utc("2026-10-25 00:30"),
        utc("2026-10-25 02:00"),
        utc("2026-10-25 02:30"),
        utc("2026-10-25 19:00"),
    ]
    # Over a whole year the offset is +1 in winter and +2 in summer.
    days = np.arange(365)
    noon = local_to_utc(date(2026, 1, 1), days, np.full(365, 12 * 3600), "Europe/Berlin")
    offset_h = 12 - noon.dt.hour.to_numpy()
    summer = (days >= (spring - date(2026, 1, 1)).days) & (days < (autumn - date(2026, 1, 1)).days)
    assert (offset_h[summer] == 2).all() and (offset_h[~summer] == 1).all()


def test_sessions_follow_the_local_clock() -> None:
    """The time zone changes when an attempt happens, not what happens: same seed in UTC,
    Seoul and Berlin (across its autumn change) gives the same attempts at the same local
    wall-clock times, so local hours, days and weeks are those the students keep."""
    in_utc = generate(80, 6, seed=5, end_date=date(2026, 11, 9), timezone="UTC")
    for timezone in ("Asia/Seoul", "Europe/Berlin"):
        local = generate(80, 6, seed=5, end_date=date(2026, 11, 9), timezone=timezone)
        columns = ["user_id", "question_id", "is_correct", "time_spent_s"]
        pd.testing.assert_frame_equal(local.attempts[columns], in_utc.attempts[columns])
        pd.testing.assert_series_equal(local_time(local), local_time(in_utc))
        pd.testing.assert_frame_equal(local.truth_weekly, in_utc.truth_weekly)
    seoul = generate(80, 6, seed=5, end_date=date(2026, 11, 9), timezone="Asia/Seoul")
    shift = in_utc.attempts["attempted_at"] - seoul.attempts["attempted_at"]
    assert (shift == pd.Timedelta(hours=9)).all()
    # The Berlin data span the 2026-10-25 change: summer attempts are 2 h, winter 1 h behind.
    berlin = generate(80, 6, seed=5, end_date=date(2026, 11, 9), timezone="Europe/Berlin")
    offset = local_time(berlin) - berlin.attempts["attempted_at"].dt.tz_localize(None)
    summer = local_time(berlin) < pd.Timestamp("2026-10-25 02:00")
    assert set(offset[summer]) == {pd.Timedelta(hours=2)} and set(offset[~summer]) == {pd.Timedelta(hours=1)}


@pytest.mark.parametrize(("option", "value"), [("--timezone", "Mars/Olympus_Mons"), ("--future-weeks", "-2")])
def test_command_line_rejects_bad_options_before_loading(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from learning_analytics.synthetic.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main([option, value, "--students", "5", "--weeks", "2", "--dsn", "postgresql://nobody@127.0.0.1:1/none"])
    assert exit_info.value.code == 2
    assert option.lstrip("-").replace("-", "_") in capsys.readouterr().err
