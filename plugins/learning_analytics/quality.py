"""Quality gates: checks on the rows a model run just wrote, after its ``persist``.

Each model declares its gates next to its pipeline (``ModelPipeline.quality_checks``):
per output table, column checks (``SQLColumnCheckOperator``: NULLs, ranges) and table
checks (``SQLTableCheckOperator``: one row per student, counts against the run's meta
row, diagnostics). Every check reads only the run's partition (``run_date`` = the run
date ``persist`` wrote). A failing check fails the gate task, so the run ends failed
(and alerts) while the rows it wrote stay in the warehouse as they were recorded, e.g.
a growth run with status ``poor_diagnostics`` that ``weekly_kpi`` does not use.

Checks are written against meanings that do not change when a model gains columns or
statuses: probabilities in [0, 1] where they are not NULL, keys never NULL, one row per
key, counts never above what the meta row says was fitted.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from airflow.providers.common.sql.operators.sql import SQLColumnCheckOperator, SQLTableCheckOperator

from learning_analytics.k8s import WAREHOUSE_EXECUTOR_CONFIG
from learning_analytics.warehouse import ANALYTICS_CONN_ID

#: XCom key under which ``persist`` records the run date it wrote.
RUN_DATE_XCOM_KEY = "run_date"
#: SQL literal of the run date, rendered by Jinja when the gate runs. Use ``{run_date}``
#: in check statements and partition clauses.
RUN_DATE_SQL = '\'{{ ti.xcom_pull(task_ids="persist", key="' + RUN_DATE_XCOM_KEY + "\") }}'::date"

#: Column checks in words, for the DAG docs.
_COLUMN_CHECK_WORDS = {"null_check": "NULLs", "min": "min", "max": "max", "unique_check": "duplicates"}
_COMPARISON_WORDS = {"equal_to": "=", "geq_to": ">=", "leq_to": "<=", "greater_than": ">", "less_than": "<"}


def probability() -> dict[str, dict[str, float]]:
    """Column checks of a probability: within [0, 1] (NULLs are not counted by min/max)."""
    return {"min": {"geq_to": 0.0}, "max": {"leq_to": 1.0}}


def not_null() -> dict[str, dict[str, int]]:
    return {"null_check": {"equal_to": 0}}


def one_row_per(*keys: str) -> str:
    """Table check statement: no two rows of the run share ``keys``."""
    columns = ", ".join(keys)
    distinct = f"SELECT DISTINCT {columns} FROM {{table}} WHERE run_date = {{run_date}}"
    return f"count(*) = (SELECT count(*) FROM ({distinct}) AS k)"


@dataclass(frozen=True)
class TableGate:
    """The checks on one output table, for the run's partition."""

    table: str
    #: column -> SQLColumnCheckOperator checks, e.g. ``{"p": probability()}``.
    columns: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: check name -> (what it means, SQL boolean over the partition; may aggregate and use
    #: ``{run_date}`` and ``{table}``).
    checks: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def column_mapping(self) -> dict[str, dict[str, Any]]:
        """A deep copy: the operator writes each check's result into its mapping."""
        return copy.deepcopy({column: dict(checks) for column, checks in self.columns.items()})

    def table_checks(self) -> dict[str, dict[str, str]]:
        return {
            name: {"check_statement": statement.format(run_date=RUN_DATE_SQL, table=self.table)}
            for name, (_, statement) in self.checks.items()
        }

    def describe(self) -> list[str]:
        """One Markdown bullet per check."""
        lines = []
        for column, checks in self.columns.items():
            words = ", ".join(
                f"{_COLUMN_CHECK_WORDS.get(check, check)} {_COMPARISON_WORDS[op]} {bound}"
                for check, bounds in checks.items()
                for op, bound in bounds.items()
            )
            lines.append(f"* `{self.table}.{column}`: {words}")
        lines += [f"* `{self.table}` `{name}`: {meaning}" for name, (meaning, _) in self.checks.items()]
        return lines


def gates_doc(gates: tuple[TableGate, ...]) -> str:
    """The "Quality gates" section appended to a model DAG's docs."""
    if not gates:
        return ""
    lines = [
        "",
        "#### Quality gates",
        "",
        "After `persist`, one task per table checks the run's rows (`run_date` of the run); "
        "a failed check fails the run and alerts, the rows stay as written:",
        "",
    ]
    for gate in gates:
        lines += gate.describe()
    return "\n".join(lines) + "\n"


def gate_tasks(gates: tuple[TableGate, ...]) -> list[Any]:
    """The check operators of ``gates`` (to be set downstream of ``persist``)."""
    partition = f"run_date = {RUN_DATE_SQL}"
    tasks: list[Any] = []
    for gate in gates:
        if gate.columns:
            tasks.append(
                SQLColumnCheckOperator(
                    task_id=f"check_{gate.table}_columns",
                    conn_id=ANALYTICS_CONN_ID,
                    table=gate.table,
                    column_mapping=gate.column_mapping(),
                    partition_clause=partition,
                    execution_timeout=timedelta(minutes=10),
                    executor_config=WAREHOUSE_EXECUTOR_CONFIG,
                    doc_md="\n".join(gate.describe()),
                )
            )
        if gate.checks:
            tasks.append(
                SQLTableCheckOperator(
                    task_id=f"check_{gate.table}_table",
                    conn_id=ANALYTICS_CONN_ID,
                    table=gate.table,
                    checks=gate.table_checks(),
                    partition_clause=partition,
                    execution_timeout=timedelta(minutes=10),
                    executor_config=WAREHOUSE_EXECUTOR_CONFIG,
                    doc_md="\n".join(gate.describe()),
                )
            )
    return tasks
