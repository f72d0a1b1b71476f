"""evaluate_models end to end: the four model DAGs run at T, the future happens, the
scoreboard scores them (real warehouse, real R services, `airflow dags test`).

One scenario (module fixture), small enough for the suite: 120 synthetic students
whose data continue 6 weeks past T; every model DAG runs for T (they read nothing
at or after T, see test_no_lookahead.py), cluster_segments also two weeks earlier
(stability needs a previous run), the weekly KPI is built for the 6 future weeks,
then evaluate_models runs for E = T + 6 weeks.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg
import pytest

from la_testing import LENIENT_GROWTH_CONF, TEST_LOGICAL_DATE, fetch_all, table_snapshot
from learning_analytics import synthetic
from learning_analytics.catalog import model_output_tables

T = TEST_LOGICAL_DATE
FUTURE_WEEKS = 6
E = T + timedelta(weeks=FUTURE_WEEKS)
HISTORY_WEEKS = 12
N_STUDENTS = 120
#: Every table a model run or the scoreboard writes: emptied first, so that runs left
#: by other test modules in this database are not scored here.
#: Small but real fits; the goal horizon is inside the 6 realized weeks.
#: Convergence is judged leniently (this test is about the scoreboard; a run that fails
#: diagnostics fails its quality gate): test_fit_bayesian_growth.py holds the real bar.
GROWTH_CONF = {
    "LOOKBACK_WEEKS": 6,
    "BRMS_ITER": 400,
    "BRMS_CHAINS": 1,
    "GOAL_HORIZON_WEEKS": 4,
    **LENIENT_GROWTH_CONF,
}
#: ~80 scored students: calibration bins of 5+ are judged (the default 30 needs 300).
EVALUATION_CONF = {"EVAL_MIN_BIN_STUDENTS": 5, "EVAL_CALIBRATION_BINS": 5}


def evaluation_rows(conn: psycopg.Connection, evaluated_for: date) -> list[tuple]:
    """The scoreboard rows of one evaluation date, without the timestamp."""
    return fetch_all(
        conn,
        "SELECT model, run_date, horizon, metric, value, baseline, baseline_value, n, note, detail::text"
        " FROM model_evaluation WHERE evaluated_for = %s ORDER BY model, run_date, horizon, metric",
        (evaluated_for,),
    )


@pytest.fixture(scope="module")
def scenario(warehouse_uri: str, run_dag: Any) -> dict[str, Any]:
    data = synthetic.generate(N_STUDENTS, HISTORY_WEEKS, seed=11, end_date=T, future_weeks=FUTURE_WEEKS)
    with psycopg.connect(warehouse_uri, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(model_output_tables())}")
    synthetic.load(warehouse_uri, data)
    runs = [
        ("build_features_topic_daily", T, {"FEATURES_LOOKBACK_DAYS": 7 * HISTORY_WEEKS}),
        ("build_weekly_kpi", T, {"KPI_LOOKBACK_WEEKS": HISTORY_WEEKS}),
        ("fit_bayesian_growth", T, GROWTH_CONF),
        ("forecast_prophet", T, {}),
        ("fit_survival_churn", T, {}),
        ("cluster_segments", T - timedelta(weeks=2), {}),
        ("cluster_segments", T, {}),
        # The future happens: its weeks of KPI are what forecasts are scored on.
        ("build_weekly_kpi", E, {"KPI_LOOKBACK_WEEKS": FUTURE_WEEKS}),
        ("evaluate_models", E, EVALUATION_CONF),
    ]
    for dag_id, logical_date, conf in runs:
        result = run_dag(dag_id, logical_date=logical_date, conf=conf)
        assert result.succeeded, f"{dag_id} {logical_date} failed:\n{result.output[-4000:]}"
    with psycopg.connect(warehouse_uri) as conn:
        rows = evaluation_rows(conn, E)
    return {"rows": rows, "data": data}


def by_metric(rows: list[tuple], model: str) -> dict[tuple[str, str], tuple]:
    return {(row[2], row[3]): row for row in rows if row[0] == model}


def test_every_model_is_scored_beside_a_baseline(scenario: dict[str, Any]) -> None:
    rows = scenario["rows"]
    assert {row[0] for row in rows} == {"growth", "prophet", "survival", "cluster"}
    # The runs of the window: each model's run at T, and cluster's earlier run too.
    assert {row[1] for row in rows if row[0] != "cluster"} == {T}
    assert {row[1] for row in rows if row[0] == "cluster"} == {T - timedelta(weeks=2), T}
    growth = by_metric(rows, "growth")
    for metric in ("brier", "log_loss", "auc", "calibration_max_error"):
        row = growth[("target_week", metric)]
        assert row[7] > 0, f"growth {metric} rests on no student"
        assert row[5] is not None and row[6] is not None, f"growth {metric} has no baseline value"
    assert 0 <= growth[("target_week", "brier")][4] <= 1
    assert growth[("window", "slope_corr_truth")][4] is not None

    prophet = by_metric(rows, "prophet")
    for horizon in ("all", "1w", "2w", "3w", "4w"):
        assert prophet[(horizon, "mase")][4] > 0, f"prophet MASE at {horizon}"
        assert prophet[(horizon, "mae")][5] == "naive_4w"
    assert prophet[("window", "anomaly_recall")][5] == "count_rule"

    survival = by_metric(rows, "survival")
    assert survival[("14d", "auc")][7] > 0 and survival[("14d", "auc")][5] == "days_idle_only"
    assert survival[("14d", "calibration_in_the_large")][6] is not None

    cluster = by_metric(rows, "cluster")
    assert cluster[("previous_run", "stability_ari")][7] > 0
    assert cluster[("window", "ari_truth")][4] > 0.5  # four well-separated true segments


def test_naive_forecast_scores_mase_one_against_itself(scenario: dict[str, Any], db: psycopg.Connection) -> None:
    """Negative control of the MASE row: re-scored with the naive forecast in place of
    prophet's, MASE must be exactly 1; it is not, so the row compares two forecasts."""
    prophet_mase = by_metric(scenario["rows"], "prophet")[("all", "mase")][4]
    (naive_mae,) = fetch_all(
        db,
        "SELECT baseline_value FROM model_evaluation WHERE evaluated_for = %s AND model = 'prophet'"
        " AND horizon = 'all' AND metric = 'mae'",
        (E,),
    )[0]
    (model_mae,) = fetch_all(
        db,
        "SELECT value FROM model_evaluation WHERE evaluated_for = %s AND model = 'prophet'"
        " AND horizon = 'all' AND metric = 'mae'",
        (E,),
    )[0]
    assert prophet_mase == pytest.approx(model_mae / naive_mae)
    assert model_mae != pytest.approx(naive_mae)


def test_rerun_replaces_by_value(scenario: dict[str, Any], db: psycopg.Connection, run_dag: Any) -> None:
    db.execute(
        "INSERT INTO model_evaluation (evaluated_for, model, run_date, horizon, metric, value, n)"
        " VALUES (%s, 'growth', %s, 'target_week', 'stale_metric', 0.5, 1)",
        (E, T - timedelta(weeks=1)),
    )
    db.execute(
        "UPDATE model_evaluation SET value = -1 WHERE evaluated_for = %s AND model = 'survival' AND metric = 'auc'",
        (E,),
    )
    other_dates = table_snapshot_other_dates(db)
    result = run_dag("evaluate_models", logical_date=E, conf=EVALUATION_CONF)
    assert result.succeeded, result.output[-4000:]
    assert evaluation_rows(db, E) == scenario["rows"]
    assert table_snapshot_other_dates(db) == other_dates


def table_snapshot_other_dates(db: psycopg.Connection) -> list[tuple]:
    return [row for row in table_snapshot(db, "model_evaluation") if row[0] != E]


def test_a_date_without_closed_outcome_windows_writes_nothing(
    scenario: dict[str, Any], db: psycopg.Connection, run_dag: Any
) -> None:
    # On the day of the earliest model run, no run is older: nothing has happened yet.
    earliest = T - timedelta(weeks=2)
    result = run_dag("evaluate_models", logical_date=earliest)
    assert result.succeeded, result.output[-4000:]
    assert evaluation_rows(db, earliest) == []
    assert "no run with a closed outcome window" in result.output
    assert "nothing written" in result.output
