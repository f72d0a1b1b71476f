"""The quality-gate operators of the model DAGs on the real warehouse.

Each gate is the operator the DAG runs (``gate_tasks`` of the pipeline's
``quality_checks``), executed against PostgreSQL on rows of a run date no other test
uses, with the run date the DAG takes from ``persist``'s XCom put in as a literal. A
run's rows as a correct model writes them pass; the same rows with one defect each
(a probability above 1, a duplicate-free but oversized run, a ``poor_diagnostics``
meta row, segment sizes that do not add up) fail: the negative controls.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest
from airflow.providers.common.sql.operators.sql import SQLColumnCheckOperator

from learning_analytics.pipelines.cluster import ClusterPipeline
from learning_analytics.pipelines.growth import GrowthPipeline
from learning_analytics.quality import RUN_DATE_SQL, gate_tasks

RUN_DATE = date(1999, 1, 4)


def run_gates(pipeline: Any) -> list[str]:
    """Task ids of the pipeline's gates that fail on the rows of RUN_DATE."""
    failed = []
    for operator in gate_tasks(pipeline.quality_checks):
        operator.sql = operator.sql.replace(RUN_DATE_SQL, f"'{RUN_DATE.isoformat()}'::date")
        if isinstance(operator, SQLColumnCheckOperator):
            operator.partition_clause = operator.partition_clause.replace(RUN_DATE_SQL, f"'{RUN_DATE}'::date")
        try:
            operator.execute(context={})
        except Exception as error:  # the operators raise AirflowException on a failed check
            failed.append(f"{operator.task_id}: {type(error).__name__}")
    return failed


@pytest.fixture
def clean_run(db: psycopg.Connection) -> Iterator[psycopg.Connection]:
    tables = ("growth_brms_user", "growth_brms_meta", "user_segment", "segment_meta")

    def clean() -> None:
        for table in tables:
            db.execute(f"DELETE FROM {table} WHERE run_date = %s", (RUN_DATE,))

    clean()
    yield db
    clean()


def write_growth_run(db: psycopg.Connection, status: str, p_goals: list[float | None], n_users: int) -> None:
    db.execute(
        "INSERT INTO growth_brms_meta (run_date, window_start, window_end, status, settings, family, n_users, n_obs,"
        " n_shards, converged, shards) VALUES (%s, %s, %s, %s, '{}', 'gaussian', %s, 0, 1, %s, '[]')",
        (RUN_DATE, RUN_DATE, RUN_DATE, status, n_users, status == "ok"),
    )
    for user_id, p_goal in enumerate(p_goals, start=1):
        db.execute(
            "INSERT INTO growth_brms_user (run_date, user_id, shard, shard_converged, p_goal)"
            " VALUES (%s, %s, 0, %s, %s)",
            (RUN_DATE, user_id, status == "ok", p_goal),
        )


def test_a_good_growth_run_passes_every_gate(clean_run: psycopg.Connection) -> None:
    write_growth_run(clean_run, "ok", [0.0, 0.4, None, 1.0], n_users=4)
    assert run_gates(GrowthPipeline()) == []


@pytest.mark.parametrize(
    ("status", "p_goals", "n_users", "failing"),
    [
        ("poor_diagnostics", [0.2, 0.4], 2, "check_growth_brms_meta_table"),
        ("ok", [0.2, 1.3], 2, "check_growth_brms_user_columns"),
        ("ok", [-0.1, 0.5], 2, "check_growth_brms_user_columns"),
        ("ok", [0.2, 0.4, 0.6], 2, "check_growth_brms_meta_table"),
    ],
    ids=["poor_diagnostics", "p_above_1", "p_below_0", "more_rows_than_meta"],
)
def test_a_defective_growth_run_fails_its_gate_and_keeps_its_rows(
    clean_run: psycopg.Connection, status: str, p_goals: list[float], n_users: int, failing: str
) -> None:
    write_growth_run(clean_run, status, p_goals, n_users)
    failed = run_gates(GrowthPipeline())
    assert [name.split(":")[0] for name in failed] == [failing], failed
    kept = clean_run.execute("SELECT count(*) FROM growth_brms_user WHERE run_date = %s", (RUN_DATE,)).fetchone()
    assert kept == (len(p_goals),), "a gate reads; it never removes the run's rows"


@pytest.mark.parametrize(("sizes", "passes"), [((2, 1), True), ((2, 2), False)], ids=["sizes_add_up", "sizes_off"])
def test_cluster_gate_compares_assignments_with_segment_sizes(
    clean_run: psycopg.Connection, sizes: tuple[int, int], passes: bool
) -> None:
    for segment, size in enumerate(sizes, start=1):
        clean_run.execute(
            "INSERT INTO segment_meta (run_date, segment, size, center, profile, k, method, model_id, settings)"
            " VALUES (%s, %s, %s, '{}', 'p', 2, 'kmeans', 'm', '{}')",
            (RUN_DATE, segment, size),
        )
    for user_id, segment in ((1, 1), (2, 1), (3, 2)):
        clean_run.execute(
            "INSERT INTO user_segment (run_date, user_id, segment, distance) VALUES (%s, %s, %s, 0.5)",
            (RUN_DATE, user_id, segment),
        )
    assert (run_gates(ClusterPipeline()) == []) == passes
