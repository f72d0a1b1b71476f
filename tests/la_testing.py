"""Helpers the integration tests share (plain functions; the fixtures are in conftest.py).

A module of its own rather than ``from conftest import ...``: every conftest.py is
imported under the name ``conftest``, so that import is ambiguous across test folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date

import psycopg
import pytest

from learning_analytics.run_outcome import RunOutcome
from learning_analytics.settings import platform_timezone

#: Logical date the integration tests run the DAGs for (a Monday), and the
#: end of the synthetic history.
TEST_LOGICAL_DATE = date(2026, 11, 23)

#: Growth settings for tests whose subject is not convergence: small, short fits judged
#: leniently (the quality gate fails a run whose diagnostics miss the bar, and no P is
#: written) and never sampled a second time. test_fit_bayesian_growth.py holds the real bar.
LENIENT_GROWTH_CONF = {"BRMS_MAX_RHAT": 1.5, "BRMS_MIN_ESS": 1, "BRMS_ADAPT_DELTA": 0.99, "BRMS_MAX_ITER": 200}

#: The clock the DAGs count days and weeks by (``LA_TIMEZONE``). Synthetic data for a
#: DAG test are generated on it, so that "the day before the logical date" means the
#: same thing to the generator and to the DAGs.
PLATFORM_TIMEZONE = platform_timezone()


def require_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the tests through scripts/test.sh, which starts the stack")
    return value


def fetch_all(conn: psycopg.Connection, query: str, params: object = None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def table_snapshot(conn: psycopg.Connection, table: str) -> list[tuple]:
    """Every row of ``table`` in a stable order (for before/after comparisons)."""
    rows = fetch_all(conn, f"SELECT * FROM {table}")
    return sorted(rows, key=repr)


@dataclass(frozen=True)
class DagRunResult:
    returncode: int
    output: str
    #: The run as Airflow's metadata database recorded it (state of the run and of
    #: every task instance), not only the command's exit code.
    outcome: RunOutcome | None = None

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and self.outcome is not None and self.outcome.finished_ok
