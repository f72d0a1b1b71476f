"""No look-ahead, proven per DAG: what a run for logical date T writes does not depend on
attempts at or after T.

Scenario (one module fixture, every DAG run with ``airflow dags test``):

1. load a small synthetic population whose history ends at T and that goes on for
   :data:`FUTURE_WEEKS` more weeks (students keep studying after T, as they do in
   production when a run is late or backfilled);
2. *with the future*: run every DAG of ``dags/`` for T in dependency order (KPI builders
   first, the models need them), snapshotting the warehouse after each run;
3. *without the future*: reload the same population, delete every attempt at or after
   the cutoff (the earliest of T 00:00 UTC and T 00:00 on the DAGs' local clock), run the
   same DAGs again and snapshot again;
4. each DAG's output tables (those its run changed) must be identical in both passes,
   apart from run timestamps, timings and opaque model ids.

The negative control deletes one more week (attempts from T - 7 days on) and reruns the
weekly KPI builder and the survival model: the same comparison must then find
differences, so an identical result above is evidence, not a comparison that cannot fail.

Numbers: the models fit with sampling or optimisation seeded from their settings, so a
run on identical inputs is reproducible; floating-point aggregates in SQL may differ in
the last bits with row order, hence a relative tolerance of 1e-9 on floats (a model that
used future data differs by far more: one extra week of attempts moves a weekly accuracy
by ~1e-2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from airflow.dag_processing.dagbag import DagBag
from psycopg import sql

from la_testing import (
    LENIENT_GROWTH_CONF,
    PLATFORM_TIMEZONE,
    TEST_LOGICAL_DATE,
    DagRunResult,
    differences,
    fetch_all,
    table_state,
)
from learning_analytics import synthetic

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
N_STUDENTS = 70
HISTORY_WEEKS = 10
FUTURE_WEEKS = 3
SEED = 3

#: Every DAG checked, in dependency order, with the Params of a cheap run: windows that
#: fit the 10 weeks of history, one short chain for brms (the smallest BRMS_ITER the
#: settings allow), 7-day churn gaps so that 70 students give enough events to fit.
DAG_RUNS: dict[str, dict[str, Any]] = {
    "build_features_topic_daily": {"FEATURES_LOOKBACK_DAYS": 7 * HISTORY_WEEKS},
    "build_weekly_kpi": {"KPI_LOOKBACK_WEEKS": HISTORY_WEEKS},
    "fit_bayesian_growth": {
        "LOOKBACK_WEEKS": 8,
        "BRMS_ITER": 200,
        "BRMS_CHAINS": 1,
        **LENIENT_GROWTH_CONF,
        "METRICS_USE_BAYESIAN": True,
    },
    "forecast_prophet": {"PROPHET_LOOKBACK_WEEKS": 8},
    "fit_survival_churn": {"SURVIVAL_LOOKBACK_DAYS": 7 * HISTORY_WEEKS, "SURVIVAL_EVENT_THRESHOLD_DAYS": 7},
    "cluster_segments": {"CLUSTER_LOOKBACK_WEEKS": 8},
}
#: DAGs not run here, and why.
EXEMPT: dict[str, str] = {
    "evaluate_models": "scores the past by design: predictions stored by earlier runs (this one-date scenario "
    "has none) against the outcomes realized since; its own tests cover the windows it reads",
}
#: Rerun in the negative control (one that reads attempts directly, and what it needs).
NEGATIVE_CONTROL_DAGS = ("build_weekly_kpi", "fit_survival_churn")

#: The warehouse (rows per table) before and after one DAG run.
RunStates = tuple[dict[str, list], dict[str, list]]


def cutoff(logical_date: Any, timezone: str) -> datetime:
    """The earliest of T 00:00 UTC and T 00:00 on the local clock: nothing from it on is history."""
    midnight_utc = datetime.combine(logical_date, time(0), tzinfo=UTC)
    midnight_local = datetime.combine(logical_date, time(0), tzinfo=ZoneInfo(timezone))
    return min(midnight_utc, midnight_local.astimezone(UTC))


def warehouse_tables(conn: psycopg.Connection) -> list[str]:
    """Every table the DAGs may write: all of the public schema but the loaded source and
    truth tables and the configuration."""
    rows = fetch_all(
        conn,
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    # The platform's clock is configuration (set by migrate), not output.
    skipped = {*synthetic.LOADED_TABLES, "schema_migrations", "platform_clock"}
    return [name for (name,) in rows if name not in skipped]


def snapshot(conn: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {table: table_state(conn, table) for table in warehouse_tables(conn)}


def reset(conn: psycopg.Connection, data: synthetic.SyntheticData) -> None:
    """The same starting point for every pass: the population loaded, no DAG output."""
    synthetic.load(conn, data)
    tables = warehouse_tables(conn)
    conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))


def run_pass(
    conn: psycopg.Connection, run_dag: Callable[..., DagRunResult], dag_ids: list[str]
) -> dict[str, RunStates]:
    """Run ``dag_ids`` in order for the test date; per DAG, the warehouse before and after it."""
    states = {}
    for dag_id in dag_ids:
        before = snapshot(conn)
        result = run_dag(dag_id, conf=DAG_RUNS[dag_id])
        assert result.succeeded, f"{dag_id}:\n{result.output[-5000:]}"
        states[dag_id] = (before, snapshot(conn))
    return states


def outputs(*passes: RunStates) -> list[str]:
    """The tables a DAG run changed in any of the given passes."""
    return sorted({table for before, after in passes for table in after if before[table] != after[table]})


def compare(reference: RunStates, other: RunStates) -> dict[str, list[str]]:
    """Per output table of one DAG, how its state after the run differs between two passes."""
    found = {table: differences(reference[1][table], other[1][table]) for table in outputs(reference, other)}
    return {table: diff for table, diff in found.items() if diff}


@pytest.fixture(scope="module")
def dag_ids() -> list[str]:
    """Every DAG of dags/."""
    dagbag = DagBag(dag_folder=DAGS_DIR, safe_mode=False)
    assert not dagbag.import_errors
    return sorted(dagbag.dags)


@pytest.fixture(scope="module")
def passes(warehouse_uri: str, run_dag: Callable[..., DagRunResult]) -> Iterator[dict[str, Any]]:
    data = synthetic.generate(
        N_STUDENTS,
        HISTORY_WEEKS,
        SEED,
        end_date=TEST_LOGICAL_DATE,
        future_weeks=FUTURE_WEEKS,
        timezone=PLATFORM_TIMEZONE,
    )
    history_end = cutoff(TEST_LOGICAL_DATE, PLATFORM_TIMEZONE)
    order = list(DAG_RUNS)
    with psycopg.connect(warehouse_uri, autocommit=True) as conn:
        reset(conn, data)
        n_future = conn.execute("SELECT count(*) FROM attempt_log WHERE attempted_at >= %s", (history_end,)).fetchone()
        with_future = run_pass(conn, run_dag, order)

        reset(conn, data)
        conn.execute("DELETE FROM attempt_log WHERE attempted_at >= %s", (history_end,))
        without_future = run_pass(conn, run_dag, order)

        reset(conn, data)
        conn.execute("DELETE FROM attempt_log WHERE attempted_at >= %s", (history_end - timedelta(days=7),))
        one_week_less = run_pass(conn, run_dag, list(NEGATIVE_CONTROL_DAGS))
        yield {
            "n_future_attempts": n_future[0],
            "with_future": with_future,
            "without_future": without_future,
            "one_week_less": one_week_less,
        }


def test_every_dag_is_checked_or_exempt(dag_ids: list[str]) -> None:
    unknown = set(dag_ids) - set(DAG_RUNS) - set(EXEMPT)
    assert not unknown, f"add these DAGs to DAG_RUNS (Params, dependency order) or to EXEMPT with a reason: {unknown}"
    assert set(DAG_RUNS) <= set(dag_ids)


@pytest.mark.parametrize("dag_id", list(DAG_RUNS))
def test_outputs_do_not_depend_on_attempts_after_the_logical_date(passes: dict[str, Any], dag_id: str) -> None:
    # Most of the 3 future weeks' ~20k attempts; zero would make the check vacuous.
    assert passes["n_future_attempts"] > 1000
    reference, other = passes["with_future"][dag_id], passes["without_future"][dag_id]
    written = outputs(reference, other)
    assert written, f"{dag_id} wrote nothing: the comparison would be vacuous"
    found = compare(reference, other)
    assert not found, f"{dag_id} read data at or after {TEST_LOGICAL_DATE} (tables {written}): {found}"


@pytest.mark.parametrize("dag_id", NEGATIVE_CONTROL_DAGS)
def test_negative_control_deleting_the_last_week_is_detected(passes: dict[str, Any], dag_id: str) -> None:
    found = compare(passes["with_future"][dag_id], passes["one_week_less"][dag_id])
    assert found, f"{dag_id}: deleting the last week before {TEST_LOGICAL_DATE} changed nothing the comparison sees"
