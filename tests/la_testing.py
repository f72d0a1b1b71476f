"""Helpers the integration tests share (plain functions; the fixtures are in conftest.py).

A module of its own rather than ``from conftest import ...``: every conftest.py is
imported under the name ``conftest``, so that import is ambiguous across test folders.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
import pytest
from psycopg import sql

from learning_analytics import synthetic
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


# Databases of the integration test modules.

#: PostgreSQL's longest identifier (NAMEDATALEN - 1).
MAX_DATABASE_NAME = 63


def database_name(uri: str) -> str:
    """The database a libpq URI names (its path)."""
    return urlsplit(uri).path.lstrip("/")


def with_database(uri: str, name: str) -> str:
    """``uri`` with its database replaced by ``name`` (credentials, host and options kept)."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"/{name}"))


def module_database_name(base: str, module: str) -> str:
    """The database of test module ``module``: ``<base>__<module>``, lower case, within
    PostgreSQL's 63 characters (a long name is cut and given a hash of the full one)."""
    name = re.sub(r"[^a-z0-9_]", "_", f"{base}__{module}".lower())
    if len(name) > MAX_DATABASE_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: MAX_DATABASE_NAME - 9]}_{digest}"
    return name


def template_database_name(base: str) -> str:
    """The migrated, empty database the module databases are copied from."""
    return f"{base}__template"


def admin_connection(uri: str) -> psycopg.Connection:
    """An autocommit connection to the ``postgres`` database with ``uri``'s credentials
    (CREATE and DROP DATABASE run outside transactions, and not in the database itself)."""
    return psycopg.connect(with_database(uri, "postgres"), autocommit=True)


def drop_database(uri: str, name: str) -> None:
    """Drop database ``name`` of ``uri``'s cluster, closing its connections (if it exists)."""
    with admin_connection(uri) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def copy_database(uri: str, template: str, name: str) -> str:
    """Database ``name`` as a fresh copy of ``template`` (replacing any earlier ``name``);
    its URI. The template must have no open connection (PostgreSQL's rule)."""
    drop_database(uri, name)
    with admin_connection(uri) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return with_database(uri, name)


def fetch_all(conn: psycopg.Connection, query: str, params: object = None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def table_snapshot(conn: psycopg.Connection, table: str) -> list[tuple]:
    """Every row of ``table`` in a stable order (for before/after comparisons)."""
    rows = fetch_all(conn, f"SELECT * FROM {table}")
    return sorted(rows, key=repr)


# Comparing a table's contents by value, across runs.

#: Columns that describe the run rather than the result: timestamps are excluded by type
#: (timestamptz), these by name, also as keys inside JSON values.
VOLATILE_NAMES = frozenset({"model_id", "elapsed_s"})
FLOAT_REL_TOL = 1e-9


def without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_volatile(item) for key, item in value.items() if key not in VOLATILE_NAMES}
    if isinstance(value, list):
        return [without_volatile(item) for item in value]
    return value


def table_state(conn: psycopg.Connection, table: str) -> list[tuple[Any, ...]]:
    """The rows of ``table`` without volatile columns, ordered by its primary key (or all columns)."""
    columns = fetch_all(
        conn,
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )
    kept = [
        name for name, data_type in columns if data_type != "timestamp with time zone" and name not in VOLATILE_NAMES
    ]
    key = [
        name
        for (name,) in fetch_all(
            conn,
            "SELECT a.attname FROM pg_index AS i"
            " JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)"
            " WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
            (table,),
        )
    ] or kept
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        sql.SQL(", ").join(map(sql.Identifier, kept)),
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, key)),
    )
    return [tuple(without_volatile(value) for value in row) for row in fetch_all(conn, query)]


def same(a: Any, b: Any) -> bool:
    """Equal, floats to a relative 1e-9 (SQL float aggregates depend on row order in the last bits)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=FLOAT_REL_TOL, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def differences(expected: list[tuple[Any, ...]], actual: list[tuple[Any, ...]], limit: int = 3) -> list[str]:
    """What differs between two states of one table (empty when they are the same)."""
    if len(expected) != len(actual):
        return [f"{len(expected)} rows expected, {len(actual)} found"]
    found = [
        f"row {i}: {a!r} != {b!r}" for i, (a, b) in enumerate(zip(expected, actual, strict=True)) if not same(a, b)
    ]
    return found[:limit] + ([f"... {len(found) - limit} more rows"] if len(found) > limit else [])


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


#: The small world the whole-project tests (failure safety, reruns) share: students,
#: weeks of history before TEST_LOGICAL_DATE, realized weeks after it.
SMALL_WORLD = {"n_students": 80, "history_weeks": 10, "future_weeks": 3}
#: Every DAG with small settings: dag_id -> (logical date, conf). evaluate_models scores
#: the others once their outcome weeks are realized.
SMALL_RUNS: dict[str, tuple[date, dict[str, Any]]] = {
    "build_features_topic_daily": (TEST_LOGICAL_DATE, {"FEATURES_LOOKBACK_DAYS": 14}),
    "build_weekly_kpi": (TEST_LOGICAL_DATE, {"KPI_LOOKBACK_WEEKS": 2}),
    "fit_bayesian_growth": (
        TEST_LOGICAL_DATE,
        {"LOOKBACK_WEEKS": 6, "BRMS_ITER": 300, "BRMS_CHAINS": 1, **LENIENT_GROWTH_CONF},
    ),
    "forecast_prophet": (TEST_LOGICAL_DATE, {}),
    "fit_survival_churn": (TEST_LOGICAL_DATE, {}),
    "cluster_segments": (TEST_LOGICAL_DATE, {}),
    "evaluate_models": (
        TEST_LOGICAL_DATE + timedelta(weeks=SMALL_WORLD["future_weeks"]),
        {"EVAL_MIN_BIN_STUDENTS": 5},
    ),
}
#: Fail fast: a run these tests break on purpose is not worth retrying.
NO_RETRIES = {"LA_TASK_RETRIES": "0"}


def run_every_dag_once(warehouse_uri: str, run_dag: Callable[..., DagRunResult], seed: int) -> None:
    """Load the small world (its own seed) and run every DAG of :data:`SMALL_RUNS` once,
    after a KPI build over the whole history; the KPI of the realized weeks is built
    before evaluate_models scores them."""
    history, future = SMALL_WORLD["history_weeks"], SMALL_WORLD["future_weeks"]
    data = synthetic.generate(
        SMALL_WORLD["n_students"], history, seed=seed, end_date=TEST_LOGICAL_DATE, future_weeks=future
    )
    synthetic.load(warehouse_uri, data)
    setup = [
        ("build_weekly_kpi", TEST_LOGICAL_DATE, {"KPI_LOOKBACK_WEEKS": history}),
        *((dag_id, *run) for dag_id, run in SMALL_RUNS.items() if dag_id != "evaluate_models"),
        ("build_weekly_kpi", TEST_LOGICAL_DATE + timedelta(weeks=future), {"KPI_LOOKBACK_WEEKS": future}),
        ("evaluate_models", *SMALL_RUNS["evaluate_models"]),
    ]
    for dag_id, logical_date, conf in setup:
        result = run_dag(dag_id, logical_date=logical_date, conf=conf, env=NO_RETRIES)
        assert result.succeeded, f"{dag_id} {logical_date} failed:\n{result.output[-4000:]}"


# Servers the tests start on a port of their own.

#: How often a server is started again on another port when its port was taken.
PORT_ATTEMPTS = 3
#: What a server (uvicorn, Python's socketserver, ...) logs when its port is taken.
PORT_TAKEN = re.compile(r"address already in use", re.IGNORECASE)


def free_port() -> int:
    """A port no socket is bound to right now (another process may take it before ours
    binds it: :class:`PortServer` starts its server again on another port then)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process ``pid`` or one of its descendants listens on."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    ports: set[int] = set()
    for process in processes:
        try:
            connections = process.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        ports |= {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}
    return ports


@dataclass
class PortServer:
    """A server process (its own session) on a free port, started again on another port
    when the one chosen was taken before the server bound it.

    Ready when the process itself listens on its port (not merely when something
    answers there: that may be whoever took the port); a process that exits logging
    "address already in use" is started again on the next port from ``ports``, at most
    ``attempts`` times in all, then the test fails naming the ports tried.
    """

    name: str
    #: The command and the environment for a port.
    command: Callable[[int], list[str]]
    env: Callable[[int], dict[str, str]]
    log_path: Path
    cwd: Path | None = None
    attempts: int = PORT_ATTEMPTS
    ports: Callable[[], int] = free_port
    tried: list[int] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    _log_offset: int = 0

    @property
    def port(self) -> int:
        return self.tried[-1]

    def start(self) -> PortServer:
        """Start the server on a free port, without waiting for it."""
        port = self.ports()
        self.tried.append(port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- {self.name}: starting on port {port}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            self.process = subprocess.Popen(
                self.command(port),
                cwd=self.cwd,
                env=self.env(port),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def _attempt_log(self) -> str:
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    def wait_listening(self, timeout_s: float = 240) -> int:
        """Wait until the server listens on its port (starting it again on another port
        if that one was taken); the port."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        while self.port not in listening_ports(self.process.pid):
            if self.process.poll() is not None:
                if not PORT_TAKEN.search(self._attempt_log()):
                    pytest.fail(
                        f"{self.name} exited ({self.process.returncode}) on port {self.port}; log: {self.log_path}"
                    )
                if len(self.tried) >= self.attempts:
                    pytest.fail(
                        f"{self.name}: every port tried was taken by another process ({self.tried}); "
                        f"log: {self.log_path}"
                    )
                self.start()
                continue
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.name} not listening on port {self.port} after {timeout_s} s; log: {self.log_path}")
            time.sleep(0.2)
        return self.port

    def stop(self, timeout_s: float = 60) -> None:
        """Stop the server and everything it started (SIGTERM, then SIGKILL)."""
        if self.process is not None:
            stop_process_group(self.process, timeout_s)


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Stop ``process``, started in a session of its own, with everything it started
    (SIGTERM to its process group, SIGKILL after ``timeout_s``)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
