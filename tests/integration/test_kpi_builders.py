"""The metrics job on a small hand-checkable attempt history (real PostgreSQL)."""

from __future__ import annotations

import math
from datetime import date

import psycopg
import pytest

from la_testing import TEST_LOGICAL_DATE, fetch_all
from learning_analytics.kpi import build_features_topic_daily, build_weekly_kpi, features_window, kpi_window
from learning_analytics.settings import FeaturesSettings, KpiSettings
from learning_analytics.warehouse import Warehouse

ATTEMPTS = [
    # attempt_id, user_id, question_id, topic_id, is_correct, time_spent_s, attempted_at (UTC)
    (1, 1, 10, 1, True, 30, "2026-11-10 10:00:00+00"),
    (2, 1, 11, 2, False, 60, "2026-11-10 11:00:00+00"),
    (3, 1, 10, 1, True, 45, "2026-11-12 09:00:00+00"),
    (4, 1, 10, 1, True, 20, "2026-11-17 09:00:00+00"),
    (5, 2, 11, 2, True, 100, "2026-11-16 23:59:59+00"),
    (6, 2, 11, 2, False, 50, "2026-11-22 23:30:00+00"),
    (7, 2, 10, 1, True, 10, "2026-11-23 00:30:00+00"),  # the run's own day: outside every window
    (8, 1, 10, 1, False, 15, "2026-10-01 08:00:00+00"),  # long before the windows
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
    return 100 * n_correct / n_attempts * math.log(1 + n_attempts) / math.log(201)


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
    # Monday 23:59:59 and Sunday 23:30 belong to the same ISO week; Monday 00:30 after it does not.
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
