"""A rerun replaces what an earlier run of the same date wrote, compared by value.

For each DAG: after a clean run (the module fixture runs every DAG once), snapshot the
full contents of every table the DAG writes (every column but timestamps and opaque
model ids, see ``la_testing.table_state``); plant stale rows for the run date (values
changed) and extra rows (keys the run would not write: a student or segment that is
not there, a metric that does not exist); rerun the DAG for the same date and require
the full contents to equal the clean snapshot. A rerun that upserts without deleting
leaves the extra rows; one that skips rows it considers unchanged, or writes only some
tables, leaves the changed values.

Negative control: planting and then *not* rerunning fails the same comparison, for
every DAG, so the comparison can see each kind of planted row.

``build_weekly_kpi``'s Bayesian P path is checked in test_kpi_paths.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from la_testing import NO_RETRIES, SMALL_RUNS, differences, run_every_dag_once, table_state

#: A student id no synthetic population uses: planted rows of "someone else".
PLANTED_USER = 999_999_999
#: Tables whose user_id must be a student: the planted one is added for them.
FOREIGN_KEY_TABLES = ("weekly_kpi", "features_topic_daily")

#: Changes a run's rows: (table, date column, SET clause).
Change = tuple[str, str, str]
#: A copy of one of a run's rows under a key the run does not write: (table, date
#: column, key column, key value).
Extra = tuple[str, str, str, Any]

#: dag_id -> (tables it writes, changed rows, extra rows); dates and settings: SMALL_RUNS.
#: The date column selects the rows of the run: the run date, or the last day/week it
#: rebuilds.
CASES: dict[str, tuple[tuple[str, ...], list[Change], list[Extra]]] = {
    "build_features_topic_daily": (
        ("features_topic_daily",),
        [("features_topic_daily", "day", "n_attempts = n_attempts + 1, accuracy = 0.5")],
        [("features_topic_daily", "day", "user_id", PLANTED_USER)],
    ),
    "build_weekly_kpi": (
        ("weekly_kpi",),
        [("weekly_kpi", "week_start", "n_attempts = n_attempts + 1, i_t = i_t + 1, p = 0.5")],
        [("weekly_kpi", "week_start", "user_id", PLANTED_USER)],
    ),
    "fit_bayesian_growth": (
        ("growth_brms_meta", "growth_brms_user", "weekly_kpi"),
        [
            ("growth_brms_meta", "run_date", "n_obs = n_obs + 1"),
            ("growth_brms_user", "run_date", "slope = slope + 1, p_goal = 0.5"),
        ],
        [("growth_brms_user", "run_date", "user_id", PLANTED_USER)],
    ),
    "forecast_prophet": (
        ("prophet_fit_meta", "prophet_anomalies", "prophet_forecast"),
        [
            ("prophet_fit_meta", "run_date", "sigma = sigma + 1, n_points = n_points + 1"),
            ("prophet_anomalies", "run_date", "score = score + 1"),
            ("prophet_forecast", "run_date", "yhat = yhat + 1"),
        ],
        [
            ("prophet_fit_meta", "run_date", "user_id", PLANTED_USER),
            ("prophet_anomalies", "run_date", "user_id", PLANTED_USER),
            ("prophet_forecast", "run_date", "user_id", PLANTED_USER),
        ],
    ),
    "fit_survival_churn": (
        ("survival_fit_meta", "survival_risk", "survival_active_risk", "weekly_kpi"),
        [
            ("survival_fit_meta", "run_date", "concordance = 0.5, n_events = n_events + 1"),
            ("survival_risk", "run_date", "risk_score = risk_score + 1"),
            ("survival_active_risk", "run_date", "p_event = 0.5"),
            ("weekly_kpi", "s_run_date", "s = 0.5"),
        ],
        [
            ("survival_risk", "run_date", "user_id", PLANTED_USER),
            ("survival_active_risk", "run_date", "user_id", PLANTED_USER),
        ],
    ),
    "cluster_segments": (
        ("user_segment", "segment_meta"),
        [("user_segment", "run_date", "distance = distance + 1"), ("segment_meta", "run_date", "size = size + 1")],
        [("user_segment", "run_date", "user_id", PLANTED_USER), ("segment_meta", "run_date", "segment", 99)],
    ),
    "evaluate_models": (
        ("model_evaluation",),
        [("model_evaluation", "evaluated_for", "value = value + 1")],
        [("model_evaluation", "evaluated_for", "metric", "planted_metric")],
    ),
}  # fmt: skip
assert set(CASES) == set(SMALL_RUNS)


@pytest.fixture(scope="module")
def world(warehouse_uri: str, run_dag: Any) -> None:
    """Small data with a future; every DAG ran once (the clean runs)."""
    run_every_dag_once(warehouse_uri, run_dag, seed=8)


@pytest.fixture
def planted_student(db: psycopg.Connection) -> Iterator[None]:
    """Removes the planted student and whatever a test left of it."""
    yield
    for table in (*FOREIGN_KEY_TABLES, "students"):
        db.execute(f"DELETE FROM {table} WHERE user_id = %s", (PLANTED_USER,))


def rows_of_the_run(db: psycopg.Connection, table: str, date_column: str, run_date: Any) -> Any:
    """The date that selects rows of the run: the run date itself, or for days and weeks
    the last one before it (a run rebuilds the days or weeks before its date)."""
    if date_column not in ("day", "week_start"):
        return run_date
    return db.execute(f"SELECT max({date_column}) FROM {table} WHERE {date_column} < %s", (run_date,)).fetchone()[0]


def plant(db: psycopg.Connection, dag_id: str) -> None:
    """Stale and extra rows for the run date of ``dag_id``, at least one per statement."""
    _, changes, extras = CASES[dag_id]
    run_date = SMALL_RUNS[dag_id][0]
    for table, date_column, assignments in changes:
        day = rows_of_the_run(db, table, date_column, run_date)
        changed = db.execute(f"UPDATE {table} SET {assignments} WHERE {date_column} = %s", (day,)).rowcount
        assert changed > 0, f"{table}: no rows of the run to change"
    for table, date_column, key_column, key_value in extras:
        if table in FOREIGN_KEY_TABLES:  # a student with no attempts: no DAG reads them
            db.execute(
                "INSERT INTO students (user_id, signup_date, accuracy_goal, exam_date)"
                " SELECT %s, signup_date, accuracy_goal, exam_date FROM students ORDER BY user_id LIMIT 1"
                " ON CONFLICT DO NOTHING",
                (PLANTED_USER,),
            )
        day = rows_of_the_run(db, table, date_column, run_date)
        db.execute(f"CREATE TEMPORARY TABLE planted AS SELECT * FROM {table} WHERE {date_column} = %s LIMIT 1", (day,))
        db.execute(f"UPDATE planted SET {key_column} = %s", (key_value,))
        added = db.execute(f"INSERT INTO {table} SELECT * FROM planted").rowcount
        db.execute("DROP TABLE planted")
        assert added == 1, f"{table}: no row of the run to copy"


def contents(db: psycopg.Connection, tables: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]]:
    return {table: table_state(db, table) for table in tables}


def mismatches(expected: dict[str, list], actual: dict[str, list]) -> dict[str, list[str]]:
    found = {table: differences(expected[table], actual[table]) for table in expected}
    return {table: diff for table, diff in found.items() if diff}


@pytest.mark.parametrize("dag_id", list(CASES))
def test_rerun_replaces_stale_and_extra_rows(
    world: None, db: psycopg.Connection, run_dag: Any, planted_student: None, dag_id: str
) -> None:
    tables, _, _ = CASES[dag_id]
    logical_date, conf = SMALL_RUNS[dag_id]
    clean = contents(db, tables)
    assert all(clean.values()), f"{dag_id}: a table without rows makes the comparison vacuous"
    plant(db, dag_id)
    result = run_dag(dag_id, logical_date=logical_date, conf=conf, env=NO_RETRIES)
    assert result.succeeded, f"{dag_id}:\n{result.output[-4000:]}"
    found = mismatches(clean, contents(db, tables))
    assert not found, f"{dag_id}: the rerun did not restore the clean run's contents: {found}"


@pytest.fixture
def transaction(warehouse_uri: str) -> Iterator[psycopg.Connection]:
    """A connection whose changes are rolled back at the end of the test."""
    with psycopg.connect(warehouse_uri) as conn:
        yield conn
        conn.rollback()


@pytest.mark.parametrize("dag_id", list(CASES))
def test_negative_control_planted_rows_without_a_rerun_are_detected(
    world: None, transaction: psycopg.Connection, dag_id: str
) -> None:
    """The same comparison without the rerun sees every table rows were planted in
    (planted inside a transaction that is rolled back: the module's state is untouched)."""
    tables, changes, extras = CASES[dag_id]
    clean = contents(transaction, tables)
    plant(transaction, dag_id)
    found = mismatches(clean, contents(transaction, tables))
    assert set(found) == {table for table, *_ in changes + extras}
