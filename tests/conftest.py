"""Shared fixtures: the real local stack started by ``scripts/test.sh``.

Integration tests talk to the PostgreSQL warehouse (``ANALYTICS_DB_URI``) and to the
R services through the Airflow connections in the environment (``AIRFLOW_CONN_*``),
exactly as the DAGs do. Without that environment they fail with a pointer to the
test command rather than pass vacuously.

Each integration module owns its data: ``warehouse_uri`` (module scope; autouse in
tests/integration/conftest.py) copies a migrated, empty template into a database of the
module's own, ``<$ANALYTICS_DB_URI's database>__<module>``, and points
``ANALYTICS_DB_URI`` and ``AIRFLOW_CONN_ANALYTICS_DB`` at it for the module's time, so
in-process code, ``airflow dags test`` runs and servers the module starts all use it.
The Airflow metadata database stays shared (per-run state).
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
from psycopg import sql

from la_testing import (
    PLATFORM_TIMEZONE,
    TEST_LOGICAL_DATE,
    DagRunResult,
    admin_connection,
    copy_database,
    database_name,
    drop_database,
    module_database_name,
    require_env,
    template_database_name,
    with_database,
)
from learning_analytics import synthetic
from learning_analytics.migrations import apply_migrations
from learning_analytics.run_outcome import latest_run_outcome

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class WarehouseTemplate:
    #: The stack's warehouse URI (credentials, host; its database names the copies).
    base_uri: str
    #: The migrated, empty database every module's database is copied from.
    name: str


@pytest.fixture(scope="session")
def warehouse_template() -> Iterator[WarehouseTemplate]:
    """``<database>__template``: the warehouse schema (every migration), no rows.

    Built once per session; no connection to it stays open, as ``CREATE DATABASE ...
    TEMPLATE`` requires. Module databases an earlier session kept (a failed module's) are
    dropped first.
    """
    base_uri = require_env("ANALYTICS_DB_URI")
    base = database_name(base_uri)
    with admin_connection(base_uri) as admin:
        stale = admin.execute(
            "SELECT datname FROM pg_database WHERE left(datname, length(%s)) = %s"
            " AND pg_get_userbyid(datdba) = current_user",
            (f"{base}__", f"{base}__"),
        ).fetchall()
    for (name,) in stale:
        drop_database(base_uri, name)
    template = template_database_name(base)
    with admin_connection(base_uri) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
    with psycopg.connect(with_database(base_uri, template)) as conn:
        apply_migrations(conn)
    yield WarehouseTemplate(base_uri, template)
    drop_database(base_uri, template)


@pytest.fixture(scope="module")
def warehouse_uri(request: pytest.FixtureRequest, warehouse_template: WarehouseTemplate) -> Iterator[str]:
    """The module's own warehouse database (a copy of the template), also as
    ``ANALYTICS_DB_URI`` and ``AIRFLOW_CONN_ANALYTICS_DB`` while the module runs.

    Dropped at the module's end, unless one of its tests failed: then it stays for a look
    (a warning names it) until the next session starts.
    """
    module = Path(str(request.node.path)).stem
    name = module_database_name(database_name(warehouse_template.base_uri), module)
    uri = copy_database(warehouse_template.base_uri, warehouse_template.name, name)
    failed_before = request.session.testsfailed
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ANALYTICS_DB_URI", uri)
        env.setenv("AIRFLOW_CONN_ANALYTICS_DB", uri)
        yield uri
    if request.session.testsfailed == failed_before:
        drop_database(warehouse_template.base_uri, name)
    else:
        request.node.warn(pytest.PytestWarning(f"kept the warehouse database {name} of {module} (a test failed)"))


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


@pytest.fixture(scope="module")
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
