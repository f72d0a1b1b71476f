"""Shared fixtures: the real local stack started by ``scripts/test.sh``.

Integration tests talk to the PostgreSQL warehouse (``ANALYTICS_DB_URI``) and to the
R services through the Airflow connections in the environment (``AIRFLOW_CONN_*``),
exactly as the DAGs do. Without that environment they fail with a pointer to the
test command rather than pass vacuously.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg
import pytest

from la_testing import PLATFORM_TIMEZONE, TEST_LOGICAL_DATE, DagRunResult, require_env
from learning_analytics import synthetic
from learning_analytics.migrations import apply_migrations
from learning_analytics.run_outcome import latest_run_outcome

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def warehouse_uri() -> str:
    uri = require_env("ANALYTICS_DB_URI")
    with psycopg.connect(uri) as conn:
        apply_migrations(conn)
    return uri


@pytest.fixture
def db(warehouse_uri: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the warehouse for setting up and checking rows."""
    with psycopg.connect(warehouse_uri, autocommit=True) as conn:
        yield conn


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A local TCP port that refuses connections for the whole test.

    The socket stays bound (but not listening) until the test ends, so a connection to
    the port is refused and no other process can take it meanwhile; a probe that binds
    and releases would leave the port to whoever asks next.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@dataclass(frozen=True)
class SyntheticWorld:
    data: synthetic.SyntheticData
    n_students: int
    n_weeks: int
    seed: int
    future_weeks: int = 0


@pytest.fixture(scope="session")
def load_synthetic(warehouse_uri: str) -> Callable[..., SyntheticWorld]:
    """Replace the warehouse's source data by a synthetic population whose history ends
    at the test date (plus ``future_weeks`` after it), on the DAGs' clock."""

    def load(n_students: int = 300, n_weeks: int = 16, seed: int = 42, future_weeks: int = 0) -> SyntheticWorld:
        data = synthetic.generate(
            n_students=n_students,
            n_weeks=n_weeks,
            seed=seed,
            end_date=TEST_LOGICAL_DATE,
            future_weeks=future_weeks,
            timezone=PLATFORM_TIMEZONE,
        )
        synthetic.load(warehouse_uri, data)
        return SyntheticWorld(data=data, n_students=n_students, n_weeks=n_weeks, seed=seed, future_weeks=future_weeks)

    return load


@pytest.fixture(scope="session")
def run_dag() -> Callable[..., DagRunResult]:
    """Run ``airflow dags test <dag_id> <date>`` as CI and the demo do."""
    require_env("AIRFLOW_HOME")

    def run(
        dag_id: str,
        logical_date: date = TEST_LOGICAL_DATE,
        conf: dict[str, object] | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float = 1800,
    ) -> DagRunResult:
        command = ["airflow", "dags", "test", dag_id, logical_date.isoformat()]
        if conf:
            command += ["-c", json.dumps(conf)]
        completed = subprocess.run(
            command,
            cwd=PROJECT_ROOT,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        output = completed.stdout + completed.stderr
        log_dir = PROJECT_ROOT / ".local" / "logs" / "dags-test"
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{dag_id}-{logical_date}.log").write_text(output)
        return DagRunResult(completed.returncode, output, latest_run_outcome(dag_id, logical_date))

    return run
