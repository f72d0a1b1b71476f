"""Faults survived, on the real stack (issue 14): fits as idempotent jobs, warehouse limits.

One small population (150 students x 16 weeks, seed 7) and its weekly_kpi are loaded for
the module. Jobs are counted on disk: every job a service accepts leaves one state file
under its JOB_DIR (``.local/models/<service>/jobs``, where ``scripts/stack.sh`` runs it),
carrying its Idempotency-Key, attempt and outcome.

PostgreSQL restarts are emulated with ``pg_terminate_backend`` of the persist's own
connection: the cluster is shared with other checkouts and must not be restarted. For the
transaction under test the effect is the same (the server drops the connection and
discards the open transaction).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from la_testing import TEST_LOGICAL_DATE, DagRunResult, fetch_all, table_snapshot
from learning_analytics import synthetic
from learning_analytics.kpi import build_weekly_kpi
from learning_analytics.r_service import RServiceHook, RServiceRequestError
from learning_analytics.settings import KpiSettings
from learning_analytics.warehouse import Warehouse
from learning_analytics.windows import weekly_window

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SURVIVAL_TABLES = ("survival_fit_meta", "survival_risk", "weekly_kpi")


def job_states(service: str) -> list[dict[str, Any]]:
    """Every job the service ever accepted (its state files)."""
    job_dir = PROJECT_ROOT / ".local" / "models" / service / "jobs"
    states = []
    for path in job_dir.glob("job-*.json"):
        try:
            states.append(json.loads(path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):  # pruned or replaced meanwhile
            continue
    return states


def jobs_with_key_prefix(service: str, prefix: str) -> list[dict[str, Any]]:
    return [job for job in job_states(service) if (job.get("idempotency_key") or "").startswith(prefix)]


def cluster_body(n_students: int, seed: int) -> dict[str, Any]:
    """Four separated groups in three features: a fit of a few seconds on 2 cores."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, size=(4, 3))
    group = rng.integers(0, 4, n_students)
    x = centres[group] + rng.normal(0, 1, size=(n_students, 3))
    return {
        "data": {"user_id": list(range(1, n_students + 1)), **{f"f{i}": x[:, i].tolist() for i in range(3)}},
        "features": ["f0", "f1", "f2"],
        "seed": seed,
    }


@pytest.fixture(scope="module")
def population(warehouse_uri: str) -> None:
    data = synthetic.generate(n_students=150, n_weeks=16, seed=7, end_date=TEST_LOGICAL_DATE)
    synthetic.load(warehouse_uri, data)
    build_weekly_kpi(Warehouse(), weekly_window(TEST_LOGICAL_DATE, 16), KpiSettings.from_env())


# -- fits as jobs ----------------------------------------------------------------------


def test_a_client_timeout_never_causes_a_second_fit() -> None:
    """The issue's duplicate work: a caller that gives up and calls again re-attaches."""
    hook = RServiceHook("r_cluster")
    body = cluster_body(3000, seed=11)
    key = f"test-timeout/{uuid.uuid4()}"
    with pytest.raises(TimeoutError):
        hook.fit("cluster/fit", body, idempotency_key=key, timeout_s=0, poll_s=0.01)
    result = hook.fit("cluster/fit", body, idempotency_key=key, poll_s=0.2)
    assert result["k"] >= 2
    jobs = jobs_with_key_prefix("r-cluster-plumber", key)
    assert [(job["status"], job["attempt"]) for job in jobs] == [("succeeded", 1)]


def test_three_concurrent_fits_on_two_workers_are_queued_or_refused_and_none_is_lost() -> None:
    prefix = f"test-concurrent/{uuid.uuid4()}"
    results: dict[int, dict[str, Any]] = {}

    def fit(seed: int) -> None:
        # The hook retries a 429 after the service's Retry-After.
        results[seed] = RServiceHook("r_cluster").fit(
            "cluster/fit", cluster_body(1500, seed), idempotency_key=f"{prefix}/{seed}", poll_s=0.2
        )

    threads = [threading.Thread(target=fit, args=(seed,)) for seed in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert sorted(results) == [1, 2, 3]
    assert len({result["model_id"] for result in results.values()}) == 3
    jobs = jobs_with_key_prefix("r-cluster-plumber", prefix)
    assert sorted(job["status"] for job in jobs) == ["succeeded"] * 3


def test_junk_input_is_refused_at_once_naming_the_field_and_fails_without_retries() -> None:
    """A 400 never becomes a job and raises an AirflowFailException (no task retries)."""
    from airflow.sdk.exceptions import AirflowFailException

    body = cluster_body(30, seed=1)
    body["data"]["f1"] = [1e-320 * (i % 3) for i in range(30)]
    key = f"test-junk/{uuid.uuid4()}"
    with pytest.raises(RServiceRequestError, match=r"400: data.f1: values vary too little") as caught:
        RServiceHook("r_cluster").submit("cluster/fit", body, idempotency_key=key)
    assert isinstance(caught.value, AirflowFailException)
    assert jobs_with_key_prefix("r-cluster-plumber", key) == []


def service_pid(service: str) -> int:
    return int((PROJECT_ROOT / ".local" / "run" / f"{service}.pid").read_text())


def kill_and_restart(service: str) -> None:
    """Kill the service (server and workers) and start it again as the stack does."""
    os.killpg(service_pid(service), 9)
    restarted = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / "stack.sh"), "services"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr


def test_service_killed_mid_job_and_restarted_the_run_completes_with_one_fit_per_shard(
    population: None, run_dag: Callable[..., DagRunResult]
) -> None:
    """Kill r-forecast-plumber (server and workers) while a shard's job runs, start it
    again: the lost job is marked failed, the next poll of its task submits it again under
    the same key, and each shard has exactly one successful job."""
    earlier = {job["job_id"] for job in job_states("r-forecast-plumber")}
    command = ["airflow", "dags", "test", "forecast_prophet", TEST_LOGICAL_DATE.isoformat()]
    command += ["-c", json.dumps({"PROPHET_CHUNK_SIZE": 50})]
    dag = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:

        def our_jobs() -> list[dict[str, Any]]:
            jobs = jobs_with_key_prefix("r-forecast-plumber", "forecast_prophet/")
            return [job for job in jobs if job["job_id"] not in earlier]

        deadline = time.monotonic() + 300
        while not any(job["status"] == "running" for job in our_jobs()):
            assert dag.poll() is None, "the DAG finished before any job was seen running"
            assert time.monotonic() < deadline, "no fit job started"
            time.sleep(0.05)
        kill_and_restart("r-forecast-plumber")
        output, _ = dag.communicate(timeout=900)
    finally:
        if dag.poll() is None:
            dag.kill()
    assert dag.returncode == 0, output[-5000:]
    by_key: dict[str, list[dict[str, Any]]] = {}
    for job in our_jobs():
        by_key.setdefault(job["idempotency_key"], []).append(job)
    assert len(by_key) >= 2, "one key per shard"
    for key, jobs in by_key.items():
        succeeded = [job for job in jobs if job["status"] == "succeeded"]
        assert len(succeeded) == 1, (key, jobs)
        others = [job for job in jobs if job["status"] != "succeeded"]
        assert all(job["status"] == "failed" and job["error"]["status"] == 503 for job in others), others
        assert sorted(job["attempt"] for job in jobs) == list(range(1, len(jobs) + 1))
    assert any(len(jobs) > 1 for jobs in by_key.values()), "the kill hit no job"


def test_a_fit_task_past_its_wait_limit_cancels_its_job_and_fails_saying_so(
    population: None, run_dag: Callable[..., DagRunResult]
) -> None:
    """A growth shard whose job outlives LA_FIT_WAIT_LIMIT_S: the fit task cancels the job
    on the service (it would otherwise keep a worker busy for nobody) and fails with the
    limit in its message, without retries."""
    earlier = {job["job_id"] for job in jobs_with_key_prefix("r-brms-plumber", "fit_bayesian_growth/")}
    result = run_dag(
        "fit_bayesian_growth",
        conf={"BRMS_FIT_MODE": "full", "BRMS_ITER": 4000, "BRMS_SHARD_SIZE": 1000},
        env={"LA_FIT_WAIT_LIMIT_S": "5", "LA_FIT_POKE_INTERVAL_S": "2", "LA_TASK_RETRIES": "2"},
    )
    assert not result.succeeded
    assert "did not finish within LA_FIT_WAIT_LIMIT_S=5 s; cancelled it on the service" in result.output
    ours = [
        job for job in jobs_with_key_prefix("r-brms-plumber", "fit_bayesian_growth/") if job["job_id"] not in earlier
    ]
    # One job (no retry submitted another), cancelled while it ran.
    assert [(job["status"], job["attempt"]) for job in ours] == [("cancelled", 1)], ours
    assert result.outcome is not None and result.outcome.task_states["fit[0]"] == "failed", result.outcome
    # The service is left as the cancel left it (worker killed, pool rebuilt once idle):
    # the modules after this one fit on it (common's test-jobs.R holds the R-level check).


# -- warehouse limits ------------------------------------------------------------------


@pytest.fixture
def weekly_kpi_write_lock(warehouse_uri: str) -> Iterator[psycopg.Connection]:
    """Another transaction holding a write lock on weekly_kpi (reads still pass)."""
    with psycopg.connect(warehouse_uri) as holder:
        holder.execute("LOCK TABLE weekly_kpi IN EXCLUSIVE MODE")
        yield holder
        holder.rollback()


def snapshots(db: psycopg.Connection) -> dict[str, list[tuple]]:
    return {table: table_snapshot(db, table) for table in SURVIVAL_TABLES}


def test_a_lock_held_on_weekly_kpi_fails_the_persist_within_lock_timeout_and_writes_nothing(
    population: None,
    db: psycopg.Connection,
    run_dag: Callable[..., DagRunResult],
    weekly_kpi_write_lock: psycopg.Connection,
) -> None:
    """While the lock is held the persist cannot finish by acquiring it, so the DAG can only
    end (the run is awaited while the lock is still held) by giving up at lock_timeout."""
    before = snapshots(db)
    result = run_dag("fit_survival_churn", env={"LA_DB_LOCK_TIMEOUT_S": "2", "LA_TASK_RETRIES": "0"})
    assert not result.succeeded
    assert "(UPDATE weekly_kpi): gave up waiting for a lock after 2 s (LA_DB_LOCK_TIMEOUT_S)" in result.output
    assert snapshots(db) == before


def test_persist_connection_dropped_mid_transaction_writes_nothing_and_the_retry_succeeds(
    population: None, db: psycopg.Connection, weekly_kpi_write_lock: psycopg.Connection
) -> None:
    """The persist has written survival_risk and waits for weekly_kpi when its connection is
    terminated (as by a PostgreSQL restart); nothing of it is visible; its task retry
    commits everything once the lock is released."""
    before = snapshots(db)
    model_before = fetch_all(db, "SELECT model_id FROM survival_fit_meta WHERE run_date = %s", (TEST_LOGICAL_DATE,))
    env = {**os.environ, "LA_DB_LOCK_TIMEOUT_S": "300", "LA_TASK_RETRIES": "1", "LA_RETRY_DELAY_SECONDS": "1"}
    dag = subprocess.Popen(
        ["airflow", "dags", "test", "fit_survival_churn", TEST_LOGICAL_DATE.isoformat()],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        blocked: list[tuple] = []
        while not blocked:
            assert dag.poll() is None, "the DAG ended before its persist reached weekly_kpi"
            assert time.monotonic() < deadline
            time.sleep(0.2)
            blocked = fetch_all(
                db,
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                " AND query LIKE %s",
                ("%weekly_kpi%",),
            )
        assert fetch_all(db, "SELECT pg_terminate_backend(%s)", (blocked[0][0],)) == [(True,)]
        time.sleep(1)
        assert snapshots(db) == before, "a dropped persist left rows behind"
        weekly_kpi_write_lock.rollback()
        output, _ = dag.communicate(timeout=900)
    finally:
        if dag.poll() is None:
            dag.kill()
    assert dag.returncode == 0, output[-5000:]
    assert "terminating connection due to administrator command" in output
    model_after = fetch_all(db, "SELECT model_id FROM survival_fit_meta WHERE run_date = %s", (TEST_LOGICAL_DATE,))
    assert len(model_after) == 1 and model_after != model_before, "the retry committed a new fit"
    risk_rows = fetch_all(db, "SELECT count(*) FROM survival_risk WHERE run_date = %s", (TEST_LOGICAL_DATE,))
    assert risk_rows[0][0] > 0
