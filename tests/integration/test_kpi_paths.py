"""Both P paths of the weekly KPI builder, end to end (``airflow dags test build_weekly_kpi``).

``weekly_kpi.P`` comes from the simple estimate (METRICS_USE_BAYESIAN false, the
default) or, with METRICS_USE_BAYESIAN true, from the converged growth run whose window
ended right after the week, where there is one (``include/sql/kpi/weekly_kpi.sql``).
The growth run is planted here (meta and per-student rows as the growth DAG writes
them, with P values no estimate would give), so the test needs no brms fit and knows
exactly which P each row must get:

* false: no row takes a growth P; the planted students keep the simple estimate;
* true: the planted students' P for the week is the planted P (source ``brms``), and
  every other row is exactly what the false run wrote;
* negative control: the same growth run marked as not converged is ignored, so the
  true run writes exactly what the false run wrote: the comparison can tell the paths
  apart only by the growth run, not by the flag alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from la_testing import TEST_LOGICAL_DATE, differences, fetch_all, table_state
from learning_analytics import synthetic

T = TEST_LOGICAL_DATE
HISTORY_WEEKS = 8
N_STUDENTS = 60
#: The week whose P a growth run with window end T gives.
WEEK = T - timedelta(weeks=1)
#: The planted growth run: a run date no DAG run of this module uses, window ending at T.
GROWTH_RUN_DATE = T + timedelta(days=1)
N_PLANTED = 5
NO_RETRIES = {"LA_TASK_RETRIES": "0"}
#: weekly_kpi columns: (user_id, week_start, ..., p, p_source, ...).
KPI_COLUMNS_SQL = (
    "SELECT column_name FROM information_schema.columns"
    " WHERE table_schema = 'public' AND table_name = 'weekly_kpi'"
    " AND data_type <> 'timestamp with time zone' ORDER BY ordinal_position"
)


def kpi_conf(use_bayesian: bool) -> dict[str, Any]:
    return {"KPI_LOOKBACK_WEEKS": HISTORY_WEEKS, "METRICS_USE_BAYESIAN": use_bayesian}


def plant_growth_run(db: psycopg.Connection, p_goals: dict[int, float], converged: bool) -> None:
    db.execute("DELETE FROM growth_brms_user WHERE run_date = %s", (GROWTH_RUN_DATE,))
    db.execute("DELETE FROM growth_brms_meta WHERE run_date = %s", (GROWTH_RUN_DATE,))
    db.execute(
        "INSERT INTO growth_brms_meta (run_date, window_start, window_end, status, settings, family, n_users, n_obs,"
        " n_shards, converged, shards) VALUES (%s, %s, %s, %s, '{}', 'gaussian', %s, 0, 1, %s, '[]')",
        (
            GROWTH_RUN_DATE,
            T - timedelta(weeks=HISTORY_WEEKS),
            T,
            "ok" if converged else "poor_diagnostics",
            len(p_goals),
            converged,
        ),
    )
    for user_id, p_goal in p_goals.items():
        db.execute(
            "INSERT INTO growth_brms_user (run_date, user_id, shard, shard_converged, p_goal)"
            " VALUES (%s, %s, 0, %s, %s)",
            (GROWTH_RUN_DATE, user_id, converged, p_goal),
        )


@pytest.fixture(scope="module")
def paths(warehouse_uri: str, run_dag: Any) -> Iterator[dict[str, Any]]:
    data = synthetic.generate(N_STUDENTS, HISTORY_WEEKS, seed=13, end_date=T)
    with psycopg.connect(warehouse_uri, autocommit=True) as db:
        synthetic.load(db, data)
        # This module's growth runs only: no other growth run ending at T may give a P.
        db.execute(
            "DELETE FROM growth_brms_user"
            " WHERE run_date IN (SELECT run_date FROM growth_brms_meta WHERE window_end = %s)",
            (T,),
        )
        db.execute("DELETE FROM growth_brms_meta WHERE window_end = %s", (T,))
        columns = [name for (name,) in fetch_all(db, KPI_COLUMNS_SQL)]
        states: dict[str, Any] = {"columns": columns}

        def run(name: str, use_bayesian: bool) -> None:
            result = run_dag("build_weekly_kpi", conf=kpi_conf(use_bayesian), env=NO_RETRIES)
            assert result.succeeded, f"{name}:\n{result.output[-4000:]}"
            states[name] = table_state(db, "weekly_kpi")

        run("simple_first", use_bayesian=False)
        active = fetch_all(
            db,
            "SELECT user_id FROM weekly_kpi WHERE week_start = %s AND n_attempts > 0 AND p IS NOT NULL"
            " ORDER BY user_id LIMIT %s",
            (WEEK, N_PLANTED),
        )
        # P values no estimate gives (and distinct per student).
        p_goals = {user_id: 0.0123 + 0.1 * index for index, (user_id,) in enumerate(active)}
        states["p_goals"] = p_goals
        plant_growth_run(db, p_goals, converged=True)
        run("simple", use_bayesian=False)
        run("bayesian", use_bayesian=True)
        plant_growth_run(db, p_goals, converged=False)
        run("bayesian_unconverged", use_bayesian=True)
        yield states
        db.execute("DELETE FROM growth_brms_user WHERE run_date = %s", (GROWTH_RUN_DATE,))
        db.execute("DELETE FROM growth_brms_meta WHERE run_date = %s", (GROWTH_RUN_DATE,))


def rows_by_key(state: list[tuple], columns: list[str]) -> dict[tuple, dict[str, Any]]:
    return {(row[0], row[1]): dict(zip(columns, row, strict=True)) for row in state}


def test_simple_path_ignores_the_growth_run(paths: dict[str, Any]) -> None:
    assert len(paths["p_goals"]) == N_PLANTED, "too few active students to plant a growth run"
    rows = rows_by_key(paths["simple"], paths["columns"])
    assert not [key for key, row in rows.items() if row["p_source"] == "brms"]
    for user_id, p_goal in paths["p_goals"].items():
        assert rows[(user_id, WEEK)]["p_source"] == "simple"
        assert rows[(user_id, WEEK)]["p"] != pytest.approx(p_goal)
    # A converged growth run in the warehouse changes nothing while the flag is false.
    assert not differences(paths["simple_first"], paths["simple"])


def test_bayesian_path_takes_p_from_the_converged_growth_run_and_nothing_else(paths: dict[str, Any]) -> None:
    columns = paths["columns"]
    simple, bayesian = rows_by_key(paths["simple"], columns), rows_by_key(paths["bayesian"], columns)
    assert simple.keys() == bayesian.keys()
    planted = {(user_id, WEEK) for user_id in paths["p_goals"]}
    for user_id, p_goal in paths["p_goals"].items():
        row = bayesian[(user_id, WEEK)]
        assert (row["p"], row["p_source"]) == (pytest.approx(p_goal), "brms")
    unchanged = [key for key in simple if key not in planted]
    assert not differences(
        [tuple(simple[key].values()) for key in unchanged], [tuple(bayesian[key].values()) for key in unchanged]
    )
    # Only P and where it came from differ on the planted rows.
    for key in planted:
        changed = {name for name in columns if simple[key][name] != bayesian[key][name]}
        assert changed <= {"p", "p_source", "p_target_week"}, changed


def test_negative_control_an_unconverged_growth_run_is_not_used(paths: dict[str, Any]) -> None:
    assert not differences(paths["simple"], paths["bayesian_unconverged"])
    assert differences(paths["simple"], paths["bayesian"]), "the Bayesian path changed nothing"
