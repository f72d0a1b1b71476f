"""Pure-Python checks of the forecast_prophet pipeline: payloads, answer -> rows, extract decisions."""

from __future__ import annotations

import importlib.util
import json
import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from learning_analytics.kpi import KpiNotReadyError, learning_index_standard_error
from learning_analytics.pipeline import RunContext
from learning_analytics.pipelines.prophet import (
    ANOMALY_COLUMNS,
    FIT_META_COLUMNS,
    FORECAST_COLUMNS,
    ProphetPipeline,
    anomaly_rows,
    fit_meta_rows,
    fit_payload,
    forecast_rows,
    run_settings,
)
from learning_analytics.settings import ProphetSettings
from learning_analytics.windows import weekly_window

RUN_DATE = date(2026, 11, 23)
DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "forecast_prophet.py"


def run_context(**params: Any) -> RunContext[ProphetSettings]:
    settings = ProphetSettings.from_params(params, environ={})
    return RunContext(
        window=weekly_window(RUN_DATE, settings.lookback_weeks),
        settings=settings,
        dag_id="forecast_prophet",
        run_id="t",
    )


def service_answer(**overrides: Any) -> dict[str, Any]:
    """A /prophet/fit answer shaped like r-forecast-plumber's (one fitted, one inactive, one skipped)."""
    answer: dict[str, Any] = {
        "model_id": "prophet-1",
        "fits": [
            {
                "series_id": 101,
                "status": "fitted",
                "params": {"growth": "linear", "k": 0.4, "m": 0.5, "delta": [0.0, 0.1], "slope_per_week": 1.2},
                "changepoints": ["2026-09-14", "2026-10-12"],
                "sigma": 2.5,
                "n_points": 12,
            },
            {
                "series_id": 102,
                "status": "inactive",
                "reason": "no activity in the last 2 weeks (since 2026-11-09)",
                "params": {"k": 0.0},
                "changepoints": [],
                "sigma": 1e-6,
                "n_points": 9,
            },
        ],
        "forecast": {
            "series_id": [101, 101, 102],
            "ds": ["2026-11-23", "2026-11-30", "2026-11-23"],
            "yhat": [50.0, 51.2, 7],
            "yhat_lower": [45.1, 46.3, 6.9],
            "yhat_upper": [54.9, 56.1, 7.1],
        },
        "anomalies": {
            "series_id": [101, 101],
            "ds": ["2026-10-05", "2026-10-05"],
            "y": [0, 31.5],
            "yhat": [44.0, 50.0],
            "score": [17.6, 2.7],
            "series": ["activity", "learning_index"],
            "direction": ["dip", "dip"],
        },
        "failures": {"series_id": [103], "status": ["skipped"], "reason": ["too few points: 3 non-missing"]},
        "settings": {"min_points": 4, "max_changepoints": 3},
    }
    answer.update(overrides)
    return answer


def chunk_result(answer: dict[str, Any], series_id: list[int]) -> dict[str, Any]:
    return {"shard": 0, "series_id": series_id, "fit": answer}


def test_dag_file_builds_the_forecast_dag_with_the_spec_schedule_and_settings() -> None:
    spec = importlib.util.spec_from_file_location("forecast_prophet_dag", DAG_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    assert dag.dag_id == "forecast_prophet"
    assert dag.schedule == "0 5 * * 1"
    # extract -> fit -> persist, then the quality gates on the persisted rows.
    gates = set(dag.task_ids) - {"extract", "fit", "persist"}
    assert {"extract", "fit", "persist"} <= set(dag.task_ids)
    assert gates and all(task_id.startswith("check_prophet_") for task_id in gates), gates
    assert {name: dag.params[name] for name in dag.params} == {
        "PROPHET_LOOKBACK_WEEKS": 12,
        "PROPHET_FORECAST_WEEKS": 4,
        "PROPHET_ANOMALY_THRESHOLD": 2.5,
        "PROPHET_CHUNK_SIZE": ProphetSettings.from_env({}).chunk_size,
        "PROPHET_MIN_ACTIVE_WEEKS": 4,
    }
    text = DAG_FILE.read_text()
    assert "airflow" in text.lower() and "dag" in text.lower()  # safe-mode discovery


def test_fit_payload_is_column_oriented_sorted_with_iso_dates_and_the_run_settings() -> None:
    shard = pd.DataFrame(
        {
            "user_id": [7, 5, 5],
            "week_start": [date(2026, 9, 7), date(2026, 9, 14), date(2026, 9, 7)],
            "i_t": [10.5, 0.0, 103.25],
            "n_attempts": [12, 0, 250],
            "n_correct": [3, 0, 250],
            "active_days": [2, 0, 6],
        }
    )
    payload = fit_payload(shard, run_context(PROPHET_FORECAST_WEEKS=6, PROPHET_ANOMALY_THRESHOLD=3.0).settings)
    y_se = payload["series"].pop("y_se")
    assert payload == {
        "series": {
            "series_id": [5, 5, 7],
            "ds": ["2026-09-07", "2026-09-14", "2026-09-07"],
            # I_t above 100 (over 200 attempts a week) is sent as the top of its range.
            "y": [100.0, 0.0, 10.5],
            "activity": [250, 0, 12],
            "active_days": [6, 0, 2],
        },
        "y_min": 0.0,
        "y_max": 100.0,
        "activity_saturation": 200,
        "forecast_weeks": 6,
        "anomaly_threshold": 3.0,
    }
    # The sampling error of I_t: none for the week without attempts (not a measurement).
    assert y_se[1] is None
    assert y_se[0] == pytest.approx(learning_index_standard_error([250], [250])[0])
    assert y_se[2] == pytest.approx(learning_index_standard_error([12], [3])[0])
    assert all(type(value) is int for value in payload["series"]["series_id"])
    json.dumps({**payload, "y_se": y_se}, allow_nan=False)  # what the hook sends


def test_learning_index_standard_error_is_the_binomial_error_of_the_weeks_accuracy() -> None:
    # 40 attempts, 20 right: p = 20.5 / 41 = 0.5, effort ln(41) / ln(201).
    effort = math.log(41) / math.log(201)
    assert learning_index_standard_error([40], [20])[0] == pytest.approx(100 * effort * math.sqrt(0.25 / 40))
    # Past 200 attempts the effort factor is 1; all right still has an error.
    assert learning_index_standard_error([400], [400])[0] == pytest.approx(
        100 * math.sqrt((400.5 / 401) * (0.5 / 401) / 400)
    )
    # A week of 20 attempts is noisier than one of 200 at the same accuracy: sqrt(10)
    # for the accuracy, times ln(21) / ln(201) for the effort factor that scales it.
    few, many = learning_index_standard_error([20, 200], [12, 120])
    assert few / many == pytest.approx(
        math.sqrt(10 * (12.5 / 21 * 8.5 / 21) / (120.5 / 201 * 80.5 / 201)) * math.log(21) / math.log(201)
    )
    assert math.isnan(learning_index_standard_error([0], [0])[0])


def test_fit_payload_survives_the_parquet_round_trip_of_staging(tmp_path: Path) -> None:
    shard = pd.DataFrame(
        {
            "user_id": [1, 1],
            "week_start": [date(2026, 9, 7), date(2026, 9, 14)],
            "i_t": [1.0, 2.0],
            "n_attempts": [3, 4],
            "n_correct": [1, 2],
            "active_days": [1, 1],
        }
    )
    shard.to_parquet(tmp_path / "shard.parquet", index=False)
    payload = fit_payload(pd.read_parquet(tmp_path / "shard.parquet"), run_context().settings)
    assert payload["series"]["ds"] == ["2026-09-07", "2026-09-14"]


def test_fit_meta_rows_cover_fitted_skipped_and_unanswered_series() -> None:
    results = [chunk_result(service_answer(), [101, 102, 103, 104])]
    meta = fit_meta_rows(results, RUN_DATE, '{"x": 1}')
    assert list(meta.columns) == FIT_META_COLUMNS
    by_user = meta.set_index("user_id")
    assert by_user["status"].to_dict() == {101: "fitted", 102: "inactive", 103: "skipped", 104: "failed"}
    assert by_user.loc[102, "reason"].startswith("no activity in the last 2 weeks")
    assert pd.isna(by_user.loc[101, "reason"])
    assert by_user.loc[103, "reason"] == "too few points: 3 non-missing"
    assert "did not mention" in by_user.loc[104, "reason"]
    assert (meta["model_id"] == "prophet-1").all()
    assert (meta["run_date"] == RUN_DATE).all() and (meta["settings"] == '{"x": 1}').all()
    assert by_user.loc[101, "params"]["delta"] == [0.0, 0.1]
    assert json.loads(by_user.loc[101, "changepoints"]) == ["2026-09-14", "2026-10-12"]
    assert json.loads(by_user.loc[102, "changepoints"]) == []
    assert by_user.loc[101, "sigma"] == 2.5
    # integers (or None), never floats such as 12.0, which an integer column rejects
    assert by_user["n_points"].tolist() == [12, 9, None, None]
    assert pd.isna(by_user.loc[103, "params"]) and pd.isna(by_user.loc[103, "sigma"])


def test_fit_meta_rows_of_a_skipped_run_are_an_empty_frame_with_the_table_columns() -> None:
    meta = fit_meta_rows([], RUN_DATE, "{}")
    assert meta.empty and list(meta.columns) == FIT_META_COLUMNS


def test_fit_meta_rows_call_failures_without_a_status_failed() -> None:
    answer = service_answer(fits=[], failures={"series_id": [9], "reason": ["fit failed: optimizer error"]})
    meta = fit_meta_rows([chunk_result(answer, [9])], RUN_DATE, "{}")
    assert meta[["user_id", "status", "reason"]].to_dict("records") == [
        {"user_id": 9, "status": "failed", "reason": "fit failed: optimizer error"}
    ]


def test_fit_meta_rows_of_several_chunks_keep_each_chunks_model_id() -> None:
    first = chunk_result(service_answer(), [101, 102, 103])
    second = chunk_result(
        service_answer(
            model_id="prophet-2",
            fits=[
                {"series_id": 201, "status": "fitted", "params": {}, "changepoints": [], "sigma": 1.0, "n_points": 12}
            ],
            failures={"series_id": [], "status": [], "reason": []},
        ),
        [201],
    )
    meta = fit_meta_rows([first, second], RUN_DATE, "{}")
    assert meta.set_index("user_id")["model_id"].to_dict() == {
        101: "prophet-1", 102: "prophet-1", 103: "prophet-1", 201: "prophet-2",
    }  # fmt: skip


def test_forecast_and_anomaly_rows_are_typed_table_rows() -> None:
    results = [chunk_result(service_answer(), [101, 102, 103])]
    forecast = forecast_rows(results, RUN_DATE)
    assert list(forecast.columns) == FORECAST_COLUMNS
    assert forecast["week_start"].tolist() == [date(2026, 11, 23), date(2026, 11, 30), date(2026, 11, 23)]
    assert forecast["user_id"].dtype == "int64" and forecast["yhat"].dtype == "float64"
    assert forecast.iloc[2].to_dict() == {
        "run_date": RUN_DATE, "user_id": 102, "week_start": date(2026, 11, 23),
        "yhat": 7.0, "yhat_lower": 6.9, "yhat_upper": 7.1,
    }  # fmt: skip
    anomalies = anomaly_rows(results, RUN_DATE)
    assert list(anomalies.columns) == ANOMALY_COLUMNS
    week = {"run_date": RUN_DATE, "user_id": 101, "week_start": date(2026, 10, 5)}
    assert anomalies.to_dict("records") == [
        {**week, "series": "activity", "direction": "dip", "y": 0.0, "yhat": 44.0, "score": 17.6},
        {**week, "series": "learning_index", "direction": "dip", "y": 31.5, "yhat": 50.0, "score": 2.7},
    ]


def test_empty_tables_in_the_answers_give_empty_frames_with_the_table_columns() -> None:
    empty_answer = service_answer(
        fits=[],
        forecast={"series_id": [], "ds": [], "yhat": [], "yhat_lower": [], "yhat_upper": []},
        anomalies={"series_id": [], "ds": [], "y": [], "yhat": [], "score": [], "series": [], "direction": []},
    )
    results = [chunk_result(empty_answer, [103])]
    assert forecast_rows(results, RUN_DATE).empty and list(forecast_rows(results, RUN_DATE).columns) == FORECAST_COLUMNS
    assert anomaly_rows([], RUN_DATE).empty and list(anomaly_rows([], RUN_DATE).columns) == ANOMALY_COLUMNS


def test_run_settings_record_the_dag_settings_window_rule_and_service_settings() -> None:
    run = run_context(PROPHET_LOOKBACK_WEEKS=8)
    recorded = run_settings(run, [chunk_result(service_answer(), [101])])
    assert recorded["PROPHET_LOOKBACK_WEEKS"] == 8 and recorded["PROPHET_ANOMALY_THRESHOLD"] == 2.5
    assert recorded["window_start"] == "2026-09-28" and recorded["window_end"] == "2026-11-23"
    assert recorded["PROPHET_MIN_ACTIVE_WEEKS"] == 4
    assert recorded["service"] == {"min_points": 4, "max_changepoints": 3}
    assert run_settings(run, [])["service"] is None


class FakeWarehouse:
    """Answers the pipeline's two queries with fixed frames."""

    def __init__(self, readiness: dict[str, Any], series: pd.DataFrame) -> None:
        self.readiness = readiness
        self.series = series
        self.queries: list[tuple[str, dict[str, Any]]] = []

    def query_frame(self, relative_path: str, params: dict[str, Any]) -> pd.DataFrame:
        self.queries.append((relative_path, params))
        if relative_path == "kpi/readiness.sql":
            return pd.DataFrame([self.readiness])
        return self.series


READY = {"n_rows": 300, "n_complete_rows": 300, "latest_built_for": RUN_DATE}


def weekly_series(n_students: int, n_weeks: int = 12) -> pd.DataFrame:
    start = weekly_window(RUN_DATE, n_weeks).start
    return pd.DataFrame(
        [
            {"user_id": 1000 + student, "week_start": start + timedelta(weeks=week), "i_t": float(week)}
            for student in range(n_students)
            for week in range(n_weeks)
        ]
    )


def test_extract_splits_students_into_chunks_of_at_most_the_chunk_size() -> None:
    warehouse = FakeWarehouse(READY, weekly_series(25))
    extracted = ProphetPipeline().extract(warehouse, run_context(PROPHET_CHUNK_SIZE=10))  # type: ignore[arg-type]
    assert extracted.skip_reason is None
    assert [chunk["user_id"].nunique() for chunk in extracted.shards] == [9, 8, 8]
    assert sum(len(chunk) for chunk in extracted.shards) == 25 * 12
    assert extracted.summary == {"n_series": 25, "n_points": 300, "n_chunks": 3}
    series_query = dict(warehouse.queries)["prophet/weekly_series.sql"]
    assert series_query["window_start"] == date(2026, 8, 31) and series_query["window_end"] == RUN_DATE
    assert series_query["min_active_weeks"] == 4


def test_extract_skips_the_fit_when_no_student_has_a_series() -> None:
    empty = pd.DataFrame(columns=["user_id", "week_start", "i_t"])
    extracted = ProphetPipeline().extract(FakeWarehouse(READY, empty), run_context())  # type: ignore[arg-type]
    assert extracted.shards == [] and "no student was active" in (extracted.skip_reason or "")


@pytest.mark.parametrize(
    "readiness",
    [
        {"n_rows": 0, "n_complete_rows": 0, "latest_built_for": None},
        {"n_rows": 300, "n_complete_rows": 0, "latest_built_for": date(2026, 11, 20)},
    ],
    ids=["no rows for the last week", "last week built before it ended"],
)
def test_extract_fails_while_weekly_kpi_is_not_built_for_the_last_week(readiness: dict[str, Any]) -> None:
    with pytest.raises(KpiNotReadyError, match="run build_weekly_kpi for 2026-11-23 first"):
        ProphetPipeline().extract(FakeWarehouse(readiness, weekly_series(3)), run_context())  # type: ignore[arg-type]
