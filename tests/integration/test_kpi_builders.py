"""The metrics job on a small hand-checkable attempt history (real PostgreSQL)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest

from la_testing import TEST_LOGICAL_DATE, fetch_all
from learning_analytics.kpi import build_features_topic_daily, build_weekly_kpi, features_window, kpi_window
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
    """I_t as docs/metrics.md writes it: 100 * accuracy * min(1, ln(1 + attempts) / ln(201))."""
    return 100 * n_correct / n_attempts * min(1.0, math.log(1 + n_attempts) / math.log(201))


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

    # Simple P with fewer than 3 weeks of history: pooled accuracy and its binomial
    # standard error against the goal. Student 1 in week 16 Nov: 3/4 correct over the
    # last 8 weeks (the October attempt is outside the KPI rows, so not counted).
    pooled, se, goal = 3 / 4, math.sqrt(0.75 * 0.25 / 4), 0.8
    expected_p = 1 / (1 + math.exp(-1.702 * (pooled - goal) / se))
    assert rows[(1, date(2026, 11, 16))][6:] == (pytest.approx(expected_p), "simple")


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
