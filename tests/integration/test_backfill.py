"""A backfill through a real scheduler gives the same table as single runs.

Three weeks of ``build_weekly_kpi``: first as three ``airflow dags test`` runs, oldest
first, then (table emptied) as ``airflow backfill create --max-active-runs 1`` executed
by an ``airflow scheduler`` with the LocalExecutor and the ``airflow api-server`` its
task processes report to, both started here on the test stack (the api-server on a port
of its own: la_testing.PortServer). ``weekly_kpi`` must be identical row for row except
``updated_at`` (the wall clock of the write). The range ends at 23:59 of the last Monday
because logical dates are the 04:00 schedule times (README, "Backfills"): a bare
``--to-date`` of that Monday would leave its run out, which the run count below would
catch.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from la_testing import TEST_LOGICAL_DATE, DagRunResult, PortServer, fetch_all, require_env, stop_process_group

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "build_weekly_kpi"
MONDAYS = [TEST_LOGICAL_DATE - timedelta(weeks=n) for n in (2, 1, 0)]
#: Every column except updated_at (wall clock), in a stable order. P is rounded to 12
#: decimals: PostgreSQL's regression aggregates may sum in another order from one run to
#: the next (last-digit differences, ~1e-16), far below any meaningful change of P.
COMPARED = (
    "user_id, week_start, n_attempts, n_correct, accuracy, active_days, time_spent_s, i_t, round(p::numeric, 12), "
    "p_source, s, s_run_date, built_for"
)
BACKFILL_TIMEOUT_S = 900


def kpi_table(conn: psycopg.Connection) -> list[tuple]:
    return fetch_all(conn, f"SELECT {COMPARED} FROM weekly_kpi ORDER BY user_id, week_start")


def metadata_dsn() -> str:
    return require_env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN").replace("postgresql+psycopg2://", "postgresql://")


@dataclass(frozen=True)
class SchedulerStack:
    """An api-server and a LocalExecutor scheduler: their environment, and ``start``.

    ``env`` gets the api-server's port once ``start`` has found one for it.
    """

    env: dict[str, str]
    start: Callable[[], None]


def api_server_env(env: dict[str, str], port: int) -> dict[str, str]:
    """``env`` for the api-server on ``port`` and the task processes that report to it."""
    return {
        **env,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
    }


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[SchedulerStack]:
    """An api-server and a LocalExecutor scheduler on the test stack.

    Started by the test after the single runs (``start``): a scheduler would also
    act on ``airflow dags test`` runs of an unpaused DAG. The api-server first, on a
    port of its own (started again on another if that one was taken meanwhile), then
    the scheduler pointed at it. Stopped afterwards.
    """
    env = {
        **os.environ,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        # Task processes present JWTs the api-server must verify: one secret for both.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        # Unpausing would also schedule the latest interval (catchup=False): a run of the
        # last Monday that the backfill would then skip as already there. Only the
        # backfill's runs here.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    }
    base_env = dict(env)
    api_servers: list[PortServer] = []
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        api_server = PortServer(
            name="api-server",
            command=lambda port: ["airflow", "api-server", "--port", str(port)],
            env=lambda port: api_server_env(base_env, port),
            log_path=tmp_path / "api-server.log",
            cwd=PROJECT_ROOT,
        )
        api_servers.append(api_server.start())
        env.update(api_server_env(base_env, api_server.wait_listening()))
        # --skip-serve-logs: the task logs are local files here, and the log server's
        # fixed port (8793) could be another checkout's.
        with (tmp_path / "scheduler.log").open("wb") as log:
            scheduler_process = subprocess.Popen(
                ["airflow", "scheduler", "--skip-serve-logs"],
                cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        processes.append(scheduler_process)

    try:
        yield SchedulerStack(env=env, start=start)
    finally:
        for process in processes:
            stop_process_group(process)
        for server in api_servers:
            server.stop()
        subprocess.run(["airflow", "dags", "pause", DAG_ID], env=env, capture_output=True, check=False)


def backfill_runs() -> list[tuple[str, str]]:
    with psycopg.connect(metadata_dsn()) as conn:
        return fetch_all(
            conn,
            "SELECT run_id, state FROM dag_run WHERE dag_id = %s AND run_type = 'backfill' ORDER BY logical_date",
            (DAG_ID,),
        )


def test_backfill_through_the_scheduler_equals_single_runs(
    run_dag: Callable[..., DagRunResult],
    load_synthetic: Callable[..., object],
    db: psycopg.Connection,
    scheduler: SchedulerStack,
) -> None:
    subprocess.run(["airflow", "dags", "pause", DAG_ID], env=scheduler.env, check=True, capture_output=True)
    load_synthetic(n_students=60, n_weeks=6)
    db.execute("DELETE FROM weekly_kpi")
    for monday in MONDAYS:
        result = run_dag(DAG_ID, monday)
        assert result.succeeded, result.output[-3000:]
    single_runs = kpi_table(db)
    assert single_runs, "the single runs must have built rows"

    db.execute("DELETE FROM weekly_kpi")
    with psycopg.connect(metadata_dsn(), autocommit=True) as meta:
        meta.execute(
            "DELETE FROM backfill_dag_run WHERE backfill_id IN (SELECT id FROM backfill WHERE dag_id = %s)", (DAG_ID,)
        )
        # Runs the scheduler made for these dates (earlier backfills, scheduled runs) would
        # make the backfill skip them (default reprocess behaviour: none).
        meta.execute("DELETE FROM dag_run WHERE dag_id = %s AND run_type IN ('backfill', 'scheduled')", (DAG_ID,))
        meta.execute("DELETE FROM backfill WHERE dag_id = %s", (DAG_ID,))
    scheduler.start()
    subprocess.run(["airflow", "dags", "unpause", DAG_ID], env=scheduler.env, check=True, capture_output=True)
    created = subprocess.run(
        [
            "airflow",
            "backfill",
            "create",
            "--dag-id",
            DAG_ID,
            "--from-date",
            MONDAYS[0].isoformat(),
            "--to-date",
            f"{MONDAYS[-1].isoformat()}T23:59",
            "--max-active-runs",
            "1",
        ],  # fmt: skip
        env=scheduler.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert created.returncode == 0, created.stdout[-2000:] + created.stderr[-2000:]

    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    runs = backfill_runs()
    while time.monotonic() < deadline and (len(runs) < 3 or any(s not in ("success", "failed") for _, s in runs)):
        time.sleep(5)
        runs = backfill_runs()
    assert [run_id for run_id, _ in runs] == [f"backfill__{monday}T04:00:00+00:00" for monday in MONDAYS]
    assert [state for _, state in runs] == ["success"] * 3, runs
    with psycopg.connect(metadata_dsn()) as meta:
        task_states = fetch_all(
            meta,
            "SELECT run_id, task_id, state FROM task_instance WHERE dag_id = %s AND run_id LIKE 'backfill__%%'",
            (DAG_ID,),
        )
    assert sorted(state for _, _, state in task_states) == ["success"] * 3, task_states

    assert kpi_table(db) == single_runs
