"""A write that breaks half-way leaves every table as it was, for every DAG.

For each DAG: run it once (its tables now hold a run's rows), then make its write
fail AFTER its first table has been written inside the transaction (a trigger that
raises on a later statement of the same persist), rerun it, and compare every table
the DAG writes, row by row, with the state before. If a persist committed table by
table, or a task wrote outside its transaction, the first table would have changed.
Negative control: without the trigger the same rerun changes the tables (stale rows
planted before it are removed), so the comparison can see a write.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from la_testing import NO_RETRIES, SMALL_RUNS, run_every_dag_once, table_snapshot

#: dag_id -> (tables it writes, trigger that breaks a later statement of its persist:
#: table, timing/event, condition on NEW or "true"). Dates and settings: SMALL_RUNS.
CASES: dict[str, tuple[tuple[str, ...], tuple[str, str, str]]] = {
    # One statement file: the DELETE of the window's rows runs before the INSERT fails.
    "build_features_topic_daily": (("features_topic_daily",), ("features_topic_daily", "INSERT", "true")),
    # Activity rows are upserted, then P is updated: fail the P update.
    "build_weekly_kpi": (("weekly_kpi",), ("weekly_kpi", "UPDATE OF p", "true")),
    "fit_bayesian_growth": (
        ("growth_brms_meta", "growth_brms_user", "weekly_kpi"),
        ("growth_brms_user", "INSERT", "true"),
    ),
    "forecast_prophet": (
        ("prophet_fit_meta", "prophet_anomalies", "prophet_forecast"),
        ("prophet_forecast", "INSERT", "true"),
    ),
    "fit_survival_churn": (
        ("survival_fit_meta", "survival_risk", "survival_active_risk", "weekly_kpi"),
        ("survival_active_risk", "INSERT", "true"),
    ),
    "cluster_segments": (("user_segment", "segment_meta"), ("segment_meta", "INSERT", "true")),
    # Models are persisted one after another in one transaction: fail the third.
    "evaluate_models": (("model_evaluation",), ("model_evaluation", "INSERT", "NEW.model = 'survival'")),
}
assert set(CASES) == set(SMALL_RUNS)


@pytest.fixture(scope="module")
def world(warehouse_uri: str, run_dag: Any) -> None:
    """Small data with a future; every DAG ran once so each table holds a run."""
    run_every_dag_once(warehouse_uri, run_dag, seed=5)


@pytest.fixture
def breaking_trigger(db: psycopg.Connection) -> Iterator[Any]:
    installed: list[str] = []

    def install(table: str, event: str, condition: str) -> None:
        db.execute(
            "CREATE OR REPLACE FUNCTION test_break_write() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN RAISE EXCEPTION 'test: write to % broken on purpose', TG_TABLE_NAME; END$$"
        )
        db.execute(
            f"CREATE TRIGGER test_break_write BEFORE {event} ON {table} FOR EACH ROW"
            f" WHEN ({condition}) EXECUTE FUNCTION test_break_write()"
        )
        installed.append(table)

    yield install
    for table in installed:
        db.execute(f"DROP TRIGGER IF EXISTS test_break_write ON {table}")


@pytest.mark.parametrize("dag_id", list(CASES))
def test_broken_write_leaves_every_table_unchanged(
    world: None, db: psycopg.Connection, run_dag: Any, breaking_trigger: Any, dag_id: str
) -> None:
    tables, (trigger_table, event, condition) = CASES[dag_id]
    logical_date, conf = SMALL_RUNS[dag_id]
    before = {table: table_snapshot(db, table) for table in tables}
    assert any(before.values()), f"{dag_id}: nothing to protect, the first run wrote no rows"
    breaking_trigger(trigger_table, event, condition)
    result = run_dag(dag_id, logical_date=logical_date, conf=conf, env=NO_RETRIES)
    assert not result.succeeded, f"{dag_id}: the broken write did not fail the run"
    assert "broken on purpose" in result.output, f"{dag_id}: failed for another reason:\n{result.output[-3000:]}"
    for table in tables:
        assert table_snapshot(db, table) == before[table], f"{dag_id}: {table} changed by a failed run"


def test_negative_control_the_same_rerun_without_the_trigger_writes(
    world: None, db: psycopg.Connection, run_dag: Any
) -> None:
    """The comparison above can see a write: a planted stale row is removed by a rerun."""
    logical_date, conf = SMALL_RUNS["cluster_segments"]
    db.execute(
        "INSERT INTO user_segment (run_date, user_id, segment, distance) VALUES (%s, 999999999, 1, 0)",
        (logical_date,),
    )
    before = table_snapshot(db, "user_segment")
    result = run_dag("cluster_segments", logical_date=logical_date, conf=conf, env=NO_RETRIES)
    assert result.succeeded, result.output[-3000:]
    after = table_snapshot(db, "user_segment")
    assert after != before
    assert not [row for row in after if row[1] == 999999999]
