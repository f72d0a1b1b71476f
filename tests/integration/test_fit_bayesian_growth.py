"""fit_bayesian_growth end to end: real warehouse, real r-brms-plumber, `airflow dags test`."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import psycopg
import pytest

from la_testing import TEST_LOGICAL_DATE, fetch_all, table_snapshot
from learning_analytics.kpi import build_weekly_kpi
from learning_analytics.settings import KpiSettings
from learning_analytics.warehouse import Warehouse
from learning_analytics.windows import weekly_window

LOOKBACK_WEEKS = 12
# 150 students in 2 shards of 75: small enough for CI, enough to check recovery.
CONF = {"LOOKBACK_WEEKS": LOOKBACK_WEEKS, "BRMS_SHARD_SIZE": 75, "METRICS_USE_BAYESIAN": True}
GROWTH_TABLES = ("growth_brms_meta", "growth_brms_user", "weekly_kpi")


@pytest.fixture(scope="module")
def fitted(load_synthetic, run_dag) -> dict:
    """150 synthetic students, weekly KPI built, one growth run for the test date."""
    world = load_synthetic(n_students=150, n_weeks=16, seed=7)
    kpi = KpiSettings.from_params({"KPI_LOOKBACK_WEEKS": 16}, {})
    build_weekly_kpi(Warehouse(), weekly_window(TEST_LOGICAL_DATE, 16), kpi)
    result = run_dag("fit_bayesian_growth", conf=CONF)
    assert result.succeeded, result.output[-5000:]
    return {"world": world, "run_dag": run_dag}


def effective_true_slopes(db: psycopg.Connection) -> dict[int, float]:
    """Each student's true accuracy slope over the fitted window.

    The generator's expected accuracy is clip(base + slope * week, 0.05, 0.97); a fast
    learner reaching the 0.97 ceiling inside the window really does gain less, so the
    truth to recover is the least-squares slope of the clipped curve over the window.
    """
    (start_date,) = fetch_all(db, "SELECT start_date FROM synthetic_run")[0]
    window = weekly_window(TEST_LOGICAL_DATE, LOOKBACK_WEEKS)
    weeks = np.array([(window.start + timedelta(weeks=w) - start_date).days // 7 for w in range(LOOKBACK_WEEKS)])
    truth = fetch_all(db, "SELECT user_id, base_accuracy, weekly_slope FROM synthetic_truth_student")
    return {
        user_id: float(np.polyfit(weeks, np.clip(base + slope * weeks, 0.05, 0.97), 1)[0])
        for user_id, base, slope in truth
    }


def test_run_records_a_converged_fit(fitted: dict, db: psycopg.Connection) -> None:
    ((status, n_users, n_shards, rhat_max, divergences, converged, shards, settings),) = fetch_all(
        db,
        "SELECT status, n_users, n_shards, rhat_max, divergences, converged, shards, settings "
        "FROM growth_brms_meta WHERE run_date = %s",
        (TEST_LOGICAL_DATE,),
    )
    assert n_shards == 2 and len(shards) == 2
    assert n_users == sum(shard["n_users"] for shard in shards) > 100
    assert settings["LOOKBACK_WEEKS"] == LOOKBACK_WEEKS and settings["BRMS_ITER"] == 1000
    assert all({"rhat_max", "ess_bulk_min", "divergences", "model_id"} <= set(shard) for shard in shards)
    assert status == "ok", f"diagnostics: rhat_max={rhat_max}, divergences={divergences}, shards={shards}"
    assert converged and divergences == 0 and rhat_max <= 1.05


def test_per_student_slopes_recover_the_truth(fitted: dict, db: psycopg.Connection) -> None:
    """r >= 0.75: with ~60 attempts a week the weekly accuracy has SE ~0.065, so over
    12 weeks a student's own slope has SE ~0.0054 against a population SD of true slopes
    of ~0.009: the reliability of even a no-pooling estimate is ~0.73 (r ~0.85).
    Partial pooling does a little better; 0.75 leaves room for sampling noise (SE of r
    ~0.03 at n = 150) while still failing a fit that returns shrunk-to-mean or
    shuffled slopes."""
    truth = effective_true_slopes(db)
    fitted_slopes = dict(
        fetch_all(db, "SELECT user_id, slope FROM growth_brms_user WHERE run_date = %s", (TEST_LOGICAL_DATE,))
    )
    users = sorted(fitted_slopes)
    correlation = np.corrcoef([fitted_slopes[u] for u in users], [truth[u] for u in users])[0, 1]
    assert correlation >= 0.75, f"r = {correlation:.3f}"


def test_population_slope_interval_covers_the_truth(fitted: dict, db: psycopg.Connection) -> None:
    truth = effective_true_slopes(db)
    users = [
        u for (u,) in fetch_all(db, "SELECT user_id FROM growth_brms_user WHERE run_date = %s", (TEST_LOGICAL_DATE,))
    ]
    true_mean = float(np.mean([truth[u] for u in users]))
    ((slope, lower, upper),) = fetch_all(
        db, "SELECT slope, slope_lower, slope_upper FROM growth_brms_meta WHERE run_date = %s", (TEST_LOGICAL_DATE,)
    )
    assert lower <= true_mean <= upper, (
        f"true {true_mean:.4f} outside [{lower:.4f}, {upper:.4f}] (estimate {slope:.4f})"
    )


def test_bayesian_p_written_to_the_last_week(fitted: dict, db: psycopg.Connection) -> None:
    last_week = TEST_LOGICAL_DATE - timedelta(days=7)
    rows = fetch_all(
        db,
        "SELECT k.p, g.p_goal FROM weekly_kpi AS k JOIN growth_brms_user AS g USING (user_id) "
        "WHERE k.week_start = %s AND g.run_date = %s AND k.p_source = 'brms'",
        (last_week, TEST_LOGICAL_DATE),
    )
    assert len(rows) > 100
    assert all(p == p_goal and 0 <= p <= 1 for p, p_goal in rows)
    # Goal probabilities must discriminate: students far below their goal get low P.
    assert min(p for p, _ in rows) < 0.2 and max(p for p, _ in rows) > 0.8


def test_rerun_of_the_same_date_replaces(fitted: dict, db: psycopg.Connection) -> None:
    before = {table: len(table_snapshot(db, table)) for table in GROWTH_TABLES}
    result = fitted["run_dag"]("fit_bayesian_growth", conf=CONF)
    assert result.succeeded, result.output[-5000:]
    after = {table: len(table_snapshot(db, table)) for table in GROWTH_TABLES}
    assert after == before
    assert fetch_all(db, "SELECT count(*) FROM growth_brms_meta WHERE run_date = %s", (TEST_LOGICAL_DATE,)) == [(1,)]


def test_too_little_data_skips_the_fit_with_a_clear_record(fitted: dict, db: psycopg.Connection) -> None:
    skip_date = date(2026, 11, 16)
    result = fitted["run_dag"](
        "fit_bayesian_growth", logical_date=skip_date, conf={**CONF, "BRMS_MIN_STUDENTS": 100000}
    )
    assert result.succeeded, result.output[-5000:]
    assert "skipping the fit: too little data to fit" in result.output
    ((status, message, n_shards, converged),) = fetch_all(
        db, "SELECT status, message, n_shards, converged FROM growth_brms_meta WHERE run_date = %s", (skip_date,)
    )
    assert (status, n_shards, converged) == ("skipped", 0, False)
    assert "BRMS_MIN_STUDENTS=100000" in message
    assert fetch_all(db, "SELECT count(*) FROM growth_brms_user WHERE run_date = %s", (skip_date,)) == [(0,)]


def test_stopped_service_fails_the_run_and_changes_nothing(
    fitted: dict, db: psycopg.Connection, refused_port: int
) -> None:
    connection = {"conn_type": "http", "host": "127.0.0.1", "port": refused_port, "password": "unused"}
    before = {table: table_snapshot(db, table) for table in GROWTH_TABLES}
    result = fitted["run_dag"](
        "fit_bayesian_growth",
        conf=CONF,
        env={"AIRFLOW_CONN_R_BRMS": json.dumps(connection), "LA_TASK_RETRIES": "1", "LA_RETRY_DELAY_SECONDS": "1"},
    )
    assert not result.succeeded
    assert "Connection refused" in result.output or "ConnectionError" in result.output
    assert {table: table_snapshot(db, table) for table in GROWTH_TABLES} == before
