"""Helpers the integration tests share (plain functions; the fixtures are in conftest.py).

A module of its own rather than ``from conftest import ...``: every conftest.py is
imported under the name ``conftest``, so that import is ambiguous across test folders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import psycopg
import pytest

from learning_analytics.settings import ALL_SETTINGS

#: Logical date the integration tests run the DAGs for (a Monday), and the
#: end of the synthetic history.
TEST_LOGICAL_DATE = date(2026, 11, 23)


def platform_timezone(environ: Mapping[str, str] | None = None) -> str:
    """The clock the DAGs count days and weeks by: the ``LA_TIMEZONE`` setting where the
    settings define it (issue 13), UTC before that (every SQL window was UTC).

    Synthetic data for a DAG test are generated on this clock, so that "the day before
    the logical date" means the same thing to the generator and to the DAGs.
    """
    environ = os.environ if environ is None else environ
    for settings_cls in ALL_SETTINGS:
        for spec in settings_cls.specs():
            if spec.name == "LA_TIMEZONE":
                return str(spec.coerce(environ.get(spec.name, spec.default), str))
    return "UTC"


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

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0
