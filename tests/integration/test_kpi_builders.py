"""The metrics job on a small hand-checkable attempt history (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import numpy as np
import psycopg
import pytest
from scipy import special, stats

from la_testing import TEST_LOGICAL_DATE, fetch_all
from learning_analytics.kpi import (
    build_features_topic_daily,
    build_weekly_kpi,
    features_window,
    kpi_window,
    learning_index_effort,
)
from learning_analytics.settings import DEFAULT_TIMEZONE, FeaturesSettings, KpiSettings
from learning_analytics.warehouse import ClockMismatchError, Warehouse, set_platform_clock
from learning_analytics.windows import daily_window, weekly_window

ATTEMPTS = [
    # attempt_id, user_id, question_id, topic_id, is_correct, time_spent_s, attempted_at. The
    # platform clock is Asia/Seoul (UTC+9, no DST): days and weeks are Seoul's.
    (1, 1, 10, 1, True, 30, "2026-11-10 10:00:00+09"),
    (2, 1, 11, 2, False, 60, "2026-11-10 11:00:00+09"),
    (3, 1, 10, 1, True, 45, "2026-11-12 09:00:00+09"),
    (4, 1, 10, 1, True, 20, "2026-11-17 09:00:00+09"),
    (5, 2, 11, 2, True, 100, "2026-11-16 00:30:00+09"),  # Monday 00:30 KST = Sunday 15:30 UTC
    (6, 2, 11, 2, False, 50, "2026-11-22 23:30:00+09"),  # Sunday 23:30 KST: same week as (5)
    (7, 2, 10, 1, True, 10, "2026-11-23 08:30:00+09"),  # Monday 08:30 KST = Sunday 23:30 UTC: the run's own day
    (8, 1, 10, 1, False, 15, "2026-10-01 08:00:00+09"),  # long before the windows
]


@pytest.fixture
def hand_made_history(db: psycopg.Connection) -> None:
    with db.cursor() as cur:
        cur.execute("TRUNCATE students, topics, questions, attempt_log RESTART IDENTITY CASCADE")
        cur.execute("INSERT INTO topics VALUES (1, 'algebra'), (2, 'geometry')")
        cur.execute("INSERT INTO questions VALUES (10, 1, 0.0), (11, 2, 1.0)")
        cur.execute(
            "INSERT INTO students VALUES (1, '2026-09-01', 0.8, '2027-01-04'), (2, '2026-11-01', 0.6, '2026-12-07')"
        )
        cur.executemany("INSERT INTO attempt_log VALUES (%s, %s, %s, %s, %s, %s, %s)", ATTEMPTS)


def i_t(n_correct: int, n_attempts: int) -> float:
    """I_t as docs/metrics.md writes it: 100 * accuracy * min(1, ln(1 + attempts) / ln(201)).

    The effort factor is the plugin's (``learning_index_effort``, which the prophet
    pipeline's sampling error of I_t uses), so this test also checks that it is the SQL's.
    """
    return 100 * n_correct / n_attempts * float(learning_index_effort(n_attempts))


def kpi_rows(db: psycopg.Connection) -> dict[tuple[int, date], tuple]:
    rows = fetch_all(
        db,
        "SELECT user_id, week_start, n_attempts, n_correct, accuracy, active_days, time_spent_s, i_t, p, p_source "
        "FROM weekly_kpi",
    )
    return {(row[0], row[1]): row[2:] for row in rows}


@pytest.mark.usefixtures("hand_made_history")
def test_weekly_kpi_numbers(db: psycopg.Connection) -> None:
    settings = KpiSettings.from_params({"KPI_LOOKBACK_WEEKS": 2}, {})
    build_weekly_kpi(Warehouse(), kpi_window(TEST_LOGICAL_DATE, settings), settings)
    rows = kpi_rows(db)
    # Student 2 started in the week of 16 Nov: no row for the week before.
    assert set(rows) == {(1, date(2026, 11, 9)), (1, date(2026, 11, 16)), (2, date(2026, 11, 16))}
    assert rows[(1, date(2026, 11, 9))][:5] == (3, 2, pytest.approx(2 / 3), 2, 135)
    assert rows[(1, date(2026, 11, 9))][5] == pytest.approx(i_t(2, 3))
    assert rows[(1, date(2026, 11, 16))][:5] == (1, 1, 1.0, 1, 20)
    # Monday 00:30 and Sunday 23:30 KST belong to the same local week; Monday 08:30 KST after it
    # (still Sunday in UTC) does not: on a UTC clock the week would hold (6) and (7) instead.
    assert rows[(2, date(2026, 11, 16))][:5] == (2, 1, 0.5, 2, 150)
    assert rows[(2, date(2026, 11, 16))][5] == pytest.approx(i_t(1, 2))

    # Fewer than 3 weeks with attempts in the history: no simple P, and the reason.
    reasons = dict(fetch_all(db, "SELECT user_id || ' ' || week_start, p_null_reason FROM weekly_kpi"))
    assert all(row[6:] == (None, None) for row in rows.values())
    assert set(reasons.values()) == {"too_little_history"}


GOAL_ATTEMPTS = [
    # user 3 (goal 0.7, exam week 7 Dec): weeks 2, 9, 16 Nov with 2/4, 3/5, 5/6 correct;
    # user 4: attempts only in the week of 26 Oct.
    *[(3, "2026-11-03", c) for c in (True, True, False, False)],
    *[(3, "2026-11-10", c) for c in (True, True, True, False, False)],
    *[(3, "2026-11-17", c) for c in (True, True, True, True, True, False)],
    *[(4, "2026-10-27", c) for c in (True, False, True)],
]


@pytest.fixture
def goal_history(db: psycopg.Connection) -> None:
    with db.cursor() as cur:
        cur.execute("TRUNCATE students, topics, questions, attempt_log RESTART IDENTITY CASCADE")
        cur.execute("INSERT INTO topics VALUES (1, 'algebra')")
        cur.execute("INSERT INTO questions VALUES (10, 1, 0.0)")
        cur.execute(
            "INSERT INTO students VALUES (3, '2026-09-01', 0.7, '2026-12-09'), (4, '2026-09-01', 0.7, '2026-12-09')"
        )
        cur.executemany(
            "INSERT INTO attempt_log VALUES (%s, %s, 10, 1, %s, 30, %s::timestamptz)",
            [(i + 1, user, correct, f"{day} 10:00:00+00") for i, (user, day, correct) in enumerate(GOAL_ATTEMPTS)],
        )


@pytest.mark.usefixtures("goal_history")
def test_simple_p_is_a_predictive_probability_of_the_observed_accuracy(db: psycopg.Connection) -> None:
    """Student 3 in the week of 16 Nov, computed by hand from docs/metrics.md: weighted
    least squares on empirical logits, projected 3 weeks to the exam week, binomial
    predictive at the usual 5 attempts (the goal 0.7 needs 4 of 5 correct). Student 4
    stopped after 26 Oct: no P, with the reason."""
    settings = KpiSettings.from_params({"KPI_LOOKBACK_WEEKS": 4}, {})
    build_weekly_kpi(Warehouse(), kpi_window(TEST_LOGICAL_DATE, settings), settings)
    x, k, n = np.array([-2.0, -1.0, 0.0]), np.array([2.0, 3.0, 5.0]), np.array([4.0, 5.0, 6.0])
    z = np.log((k + 0.5) / (n - k + 0.5))
    w = 1 / (1 / (k + 0.5) + 1 / (n - k + 0.5))
    slope, intercept = np.polyfit(x, z, 1, w=np.sqrt(w))
    x_mean = np.average(x, weights=w)
    sxx = np.sum(w * (x - x_mean) ** 2)
    phi = max(1.0, np.sum(w * (z - intercept - slope * x) ** 2) / 1)
    eta = intercept + slope * 3
    m, needed = 5, 4
    expected = special.expit(eta)
    variance = phi * (1 / w.sum() + (3 - x_mean) ** 2 / sxx) + phi * (
        1 / (m * expected + 0.5) + 1 / (m * (1 - expected) + 0.5)
    )
    p = stats.norm.cdf((eta - np.log(needed / (m - needed + 1))) / np.sqrt(variance))
    rows = {
        (user, week): rest
        for user, week, *rest in fetch_all(
            db, "SELECT user_id, week_start, p, p_source, p_target_week, p_null_reason FROM weekly_kpi"
        )
    }
    assert rows[3, date(2026, 11, 16)] == [pytest.approx(p, abs=1e-6), "simple", date(2026, 12, 7), None]
    assert rows[4, date(2026, 11, 2)] == [None, None, None, "no_attempts_in_week"]
    assert rows[4, date(2026, 11, 9)] == [None, None, None, "inactive_14_days"]
    assert rows[4, date(2026, 11, 16)][3] == "inactive_14_days"


@pytest.mark.usefixtures("hand_made_history")
def test_features_topic_daily_numbers(db: psycopg.Connection) -> None:
    settings = FeaturesSettings.from_params({"FEATURES_LOOKBACK_DAYS": 14}, {})
    build_features_topic_daily(Warehouse(), features_window(TEST_LOGICAL_DATE, settings))
    rows = fetch_all(
        db,
        "SELECT user_id, topic_id, day, n_attempts, n_correct, accuracy, time_spent_s, mean_difficulty "
        "FROM features_topic_daily ORDER BY user_id, day, topic_id",
    )
    assert rows == [
        (1, 1, date(2026, 11, 10), 1, 1, 1.0, 30, 0.0),
        (1, 2, date(2026, 11, 10), 1, 0, 0.0, 60, 1.0),
        (1, 1, date(2026, 11, 12), 1, 1, 1.0, 45, 0.0),
        (1, 1, date(2026, 11, 17), 1, 1, 1.0, 20, 0.0),
        (2, 2, date(2026, 11, 16), 1, 1, 1.0, 100, 1.0),
        (2, 2, date(2026, 11, 22), 1, 0, 0.0, 50, 1.0),
    ]


@pytest.mark.usefixtures("hand_made_history")
def test_dag_runs_of_the_same_date_leave_identical_tables(db: psycopg.Connection, run_dag) -> None:
    snapshots = []
    for _ in range(2):
        for dag_id, conf in (
            ("build_features_topic_daily", {"FEATURES_LOOKBACK_DAYS": 14}),
            ("build_weekly_kpi", {"KPI_LOOKBACK_WEEKS": 2}),
        ):
            result = run_dag(dag_id, conf=conf)
            assert result.succeeded, result.output[-3000:]
        snapshots.append(
            (
                sorted(kpi_rows(db).items()),
                fetch_all(db, "SELECT * FROM features_topic_daily ORDER BY user_id, topic_id, day"),
            )
        )
    assert snapshots[0] == snapshots[1]
    assert len(snapshots[0][0]) == 3 and len(snapshots[0][1]) == 6


@pytest.mark.usefixtures("hand_made_history")
def test_attempt_dates_are_local_days(db: psycopg.Connection) -> None:
    dates_sql = "SELECT attempt_id, attempt_date FROM attempt WHERE user_id = 2"
    assert dict(fetch_all(db, dates_sql)) == {5: date(2026, 11, 16), 6: date(2026, 11, 22), 7: date(2026, 11, 23)}
    # Negative control: on a UTC clock (the old behaviour) Monday 00:30 and 08:30 KST are Sundays.
    set_platform_clock(db, "UTC")
    try:
        assert dict(fetch_all(db, dates_sql)) == {5: date(2026, 11, 15), 6: date(2026, 11, 22), 7: date(2026, 11, 22)}
    finally:
        set_platform_clock(db, DEFAULT_TIMEZONE)


@pytest.fixture
def berlin_clock(db: psycopg.Connection) -> Iterator[str]:
    """The warehouse on Europe/Berlin's clock for one test, then back to the default."""
    set_platform_clock(db, "Europe/Berlin")
    try:
        yield "Europe/Berlin"
    finally:
        set_platform_clock(db, DEFAULT_TIMEZONE)


#: Berlin leaves summer time on Sunday 25 Oct 2026 at 03:00 CEST (UTC+2) -> 02:00 CET (UTC+1),
#: so the week of 19 Oct starts at UTC+2 and ends at UTC+1.
BERLIN_ATTEMPTS = [
    (21, 3, 10, 1, True, 30, "2026-10-18 23:30:00+02"),  # Sunday 23:30 CEST: the week before
    (22, 3, 10, 1, True, 30, "2026-10-19 00:30:00+02"),  # Monday 00:30 CEST = Sunday 22:30 UTC
    (23, 3, 11, 2, False, 30, "2026-10-25 23:30:00+01"),  # Sunday 23:30 CET, after the changeover
    (24, 3, 10, 1, True, 30, "2026-10-26 00:30:00+01"),  # Monday 00:30 CET = Sunday 23:30 UTC
    (25, 3, 11, 2, True, 30, "2026-10-26 08:30:00+01"),  # Monday 08:30 CET
]


def test_days_and_weeks_follow_a_dst_zone_across_its_changeover(db: psycopg.Connection, berlin_clock: str) -> None:
    with db.cursor() as cur:
        cur.execute("TRUNCATE students, topics, questions, attempt_log, weekly_kpi, features_topic_daily CASCADE")
        cur.execute("INSERT INTO topics VALUES (1, 'algebra'), (2, 'geometry')")
        cur.execute("INSERT INTO questions VALUES (10, 1, 0.0), (11, 2, 1.0)")
        cur.execute("INSERT INTO students VALUES (3, '2026-09-01', 0.8, '2027-01-04')")
        cur.executemany("INSERT INTO attempt_log VALUES (%s, %s, %s, %s, %s, %s, %s)", BERLIN_ATTEMPTS)
    assert dict(fetch_all(db, "SELECT attempt_id, attempt_date FROM attempt")) == {
        21: date(2026, 10, 18),
        22: date(2026, 10, 19),
        23: date(2026, 10, 25),
        24: date(2026, 10, 26),
        25: date(2026, 10, 26),
    }
    run_date = date(2026, 11, 2)
    settings = KpiSettings.from_params({"KPI_LOOKBACK_WEEKS": 2}, {})
    build_weekly_kpi(Warehouse(), weekly_window(run_date, 2, berlin_clock), settings)
    build_features_topic_daily(Warehouse(), daily_window(run_date, 14, berlin_clock))
    weeks = {week: (row[0], row[3]) for (_, week), row in kpi_rows(db).items()}
    # Week of 19 Oct: Monday 00:30 CEST and Sunday 23:30 CET; week of 26 Oct: both Monday attempts.
    assert weeks == {date(2026, 10, 19): (2, 2), date(2026, 10, 26): (2, 1)}
    days = fetch_all(db, "SELECT day, sum(n_attempts)::int FROM features_topic_daily GROUP BY day ORDER BY day")
    assert days == [(date(2026, 10, 19), 1), (date(2026, 10, 25), 1), (date(2026, 10, 26), 2)]


@pytest.mark.usefixtures("hand_made_history")
def test_a_run_on_another_clock_than_the_warehouse_fails_naming_both() -> None:
    settings = KpiSettings.from_params({"KPI_LOOKBACK_WEEKS": 2}, {})
    with pytest.raises(ClockMismatchError, match="LA_TIMEZONE is 'Europe/Berlin' but the warehouse's clock"):
        build_weekly_kpi(Warehouse(), weekly_window(TEST_LOGICAL_DATE, 2, "Europe/Berlin"), settings)


def test_i_t_is_the_documented_formula_and_stays_within_0_100(db: psycopg.Connection) -> None:
    """A very active week (400 attempts, 390 right: ln(401)/ln(201) = 1.13 uncapped, so I_t
    would be 110) must give exactly 100 * accuracy; ordinary weeks the documented formula."""
    weeks = {4: (400, 390), 5: (201, 201), 6: (30, 12), 7: (1, 1)}
    with db.cursor() as cur:
        cur.execute("TRUNCATE students, topics, questions, attempt_log, weekly_kpi CASCADE")
        cur.execute("INSERT INTO topics VALUES (1, 'algebra')")
        cur.execute("INSERT INTO questions VALUES (10, 1, 0.0)")
        rows = []
        for user_id, (n_attempts, n_correct) in weeks.items():
            cur.execute("INSERT INTO students VALUES (%s, '2026-09-01', 0.8, '2027-01-04')", (user_id,))
            rows += [
                (1000 * user_id + k, user_id, 10, 1, k < n_correct, 20, "2026-11-18 10:00:00+09")
                for k in range(n_attempts)
            ]
        cur.executemany("INSERT INTO attempt_log VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
    settings = KpiSettings.from_params({"KPI_LOOKBACK_WEEKS": 1}, {})
    build_weekly_kpi(Warehouse(), kpi_window(TEST_LOGICAL_DATE, settings), settings)
    got = dict(fetch_all(db, "SELECT user_id, i_t FROM weekly_kpi WHERE week_start = '2026-11-16'"))
    assert got == pytest.approx(
        {user_id: i_t(n_correct, n_attempts) for user_id, (n_attempts, n_correct) in weeks.items()}
    )
    assert got[4] == pytest.approx(97.5) and got[5] == pytest.approx(100.0)
    assert all(0 <= value <= 100 for value in got.values())
