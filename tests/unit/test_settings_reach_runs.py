"""Every setting, overridden through a run's Params, changes what the run sends.

For each setting of each DAG (``ALL_SETTINGS`` but growth, see below): settings for a
run whose Params set it to a valid non-default value (``from_params``, what the tasks
call with ``context["params"]``), and the same for a run without Params; then what the
pipeline produces from them: the window, the SQL parameters of its extract (through a
warehouse that records queries), the fit request body. The override must change that
output, and the output must not change when nothing is overridden (the control: an
observation that ignores its setting, or one that changes anyway, fails).

Settings that act only inside a run's SQL or persist, with no payload or parameter to
look at, are listed in :data:`OBSERVED_IN_A_RUN` with the integration test that runs
them with a non-default value; a test checks that test still sets them. Observers are
per settings class (the KPI builder and growth share GOAL_HORIZON_WEEKS and
METRICS_USE_BAYESIAN, each with its own meaning).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from learning_analytics.evaluation import EvaluationWindow
from learning_analytics.kpi import features_window, kpi_window, weekly_kpi_p_params
from learning_analytics.pipeline import RunContext
from learning_analytics.pipelines.cluster import ClusterPipeline, fit_payload
from learning_analytics.pipelines.growth import GrowthPipeline, stage1_sample
from learning_analytics.pipelines.growth import fit_payload as growth_fit_payload
from learning_analytics.pipelines.prophet import ProphetPipeline
from learning_analytics.pipelines.survival import SurvivalPipeline, observation_params
from learning_analytics.settings import (
    ALL_SETTINGS,
    GrowthSettings,
    ModelSettings,
    SettingSpec,
)

RUN_DATE = date(2026, 11, 23)
TESTS = Path(__file__).resolve().parents[1]
#: 150 students x 8 weeks as growth's extract returns them.
GROWTH_ROWS = pd.DataFrame(
    [
        {"user_id": user, "week": week, "accuracy": 0.5 + 0.002 * user, "n_attempts": 40, "n_correct": 20,
         "goal": 0.7, "target_week": 9, "usual_attempts": 40, "last_week_attempts": 40,
         "last_attempt_date": RUN_DATE - timedelta(days=1)}
        for user in range(1, 151)
        for week in range(8)
    ]
)  # fmt: skip


class RecordingWarehouse:
    """Answers the extract queries of the pipelines with small fixed frames and records
    every query with its parameters."""

    def __init__(self) -> None:
        self.queries: dict[str, dict[str, Any]] = {}

    def query_frame(self, relative_path: str, params: dict[str, Any]) -> pd.DataFrame:
        self.queries[relative_path] = params
        if relative_path == "kpi/readiness.sql":
            return pd.DataFrame([{"n_rows": 10, "n_complete_rows": 10, "latest_built_for": RUN_DATE}])
        if relative_path == "growth/weekly_accuracy.sql":
            return GROWTH_ROWS
        if relative_path == "prophet/weekly_series.sql":
            weeks = [RUN_DATE - timedelta(weeks=week) for week in range(1, 9)]
            return pd.DataFrame(
                [
                    {
                        "user_id": user,
                        "week_start": week,
                        "i_t": 10.0,
                        "n_attempts": 5,
                        "n_correct": 3,
                        "active_days": 2,
                    }
                    for user in range(1, 8)
                    for week in weeks
                ]
            )
        raise AssertionError(f"unexpected query {relative_path}")


def context(settings: ModelSettings, window: Any, dag_id: str) -> RunContext[Any]:
    return RunContext(window=window, settings=settings, dag_id=dag_id, run_id="t")


def prophet_extract(settings: Any) -> dict[str, Any]:
    pipeline = ProphetPipeline()
    warehouse = RecordingWarehouse()
    run = context(settings, pipeline.window(RUN_DATE, settings), "forecast_prophet")
    extracted = pipeline.extract(warehouse, run)  # type: ignore[arg-type]
    return {
        "series_query": warehouse.queries["prophet/weekly_series.sql"],
        "chunks": [sorted(chunk["user_id"].unique()) for chunk in extracted.shards],
    }


def prophet_request(settings: Any) -> dict[str, Any]:
    pipeline = ProphetPipeline()
    run = context(settings, pipeline.window(RUN_DATE, settings), "forecast_prophet")
    shard = RecordingWarehouse().query_frame("prophet/weekly_series.sql", {})
    request = pipeline.fit_request(shard, 0, run)
    return {key: value for key, value in request.items() if key != "series"}


def survival_request(settings: Any) -> dict[str, Any]:
    pipeline = SurvivalPipeline()
    window = pipeline.window(RUN_DATE, settings)
    return {"window": window.as_sql_params(), "extract": observation_params(window, settings)}


def cluster_request(settings: Any) -> dict[str, Any]:
    students = pd.DataFrame({"user_id": [1, 2, 3], "accuracy": [0.4, 0.5, 0.6], "active_days": [1.0, 2.0, 3.0]})
    return {
        "window": ClusterPipeline().window(RUN_DATE, settings).as_sql_params(),
        "fit": fit_payload(students, ["accuracy", "active_days"], settings),
    }


def kpi_sql(settings: Any) -> dict[str, Any]:
    return weekly_kpi_p_params(kpi_window(RUN_DATE, settings), settings)


def growth_extract(settings: Any) -> dict[str, Any]:
    pipeline = GrowthPipeline()
    warehouse = RecordingWarehouse()
    run = context(settings, pipeline.window(RUN_DATE, settings), "fit_bayesian_growth")
    extracted = pipeline.extract(warehouse, run)  # type: ignore[arg-type]
    return {
        "query": warehouse.queries["growth/weekly_accuracy.sql"],
        "skip_reason": extracted.skip_reason,
        "shards": [sorted(shard["user_id"].unique()) for shard in extracted.shards],
    }


def growth_request(settings: Any) -> dict[str, Any]:
    return {key: value for key, value in growth_fit_payload(GROWTH_ROWS, 0, settings).items() if key != "data"}


def growth_stage1(settings: Any) -> list[int]:
    return sorted(stage1_sample(GROWTH_ROWS, settings.stage1_students, settings.seed)["user_id"].unique())


#: Setting -> what a run produces from its settings that the setting must change.
GROWTH_OBSERVERS: dict[str, Callable[[Any], Any]] = {
    "LOOKBACK_WEEKS": growth_extract,
    "GOAL_HORIZON_WEEKS": growth_extract,
    "BRMS_MIN_STUDENTS": growth_extract,
    "BRMS_MIN_WEEKS": growth_extract,
    # full mode cuts 100-student shards, two-stage one chunk of everyone.
    "BRMS_FIT_MODE": lambda s: growth_extract(replace(s, shard_size=100)),
    "BRMS_CHUNK_SIZE": growth_extract,
    # Shards are what full mode fits (two-stage mode fits chunks).
    "BRMS_SHARD_SIZE": lambda s: growth_extract(replace(s, fit_mode="full")),
    "BRMS_ITER": growth_request,
    "BRMS_MAX_ITER": growth_request,
    "BRMS_CHAINS": growth_request,
    "BRMS_FAMILY": growth_request,
    "BRMS_ADAPT_DELTA": growth_request,
    "BRMS_MAX_RHAT": growth_request,
    "BRMS_MIN_ESS": growth_request,
    "BRMS_SEED": growth_request,
    "BRMS_STAGE1_STUDENTS": growth_stage1,
}
OBSERVERS: dict[str, Callable[[Any], Any]] = {
    "FEATURES_LOOKBACK_DAYS": lambda s: features_window(RUN_DATE, s).as_sql_params(),
    "KPI_LOOKBACK_WEEKS": kpi_sql,
    "KPI_P_HISTORY_WEEKS": kpi_sql,
    "GOAL_HORIZON_WEEKS": kpi_sql,
    "METRICS_USE_BAYESIAN": kpi_sql,
    "PROPHET_LOOKBACK_WEEKS": prophet_extract,
    "PROPHET_MIN_ACTIVE_WEEKS": prophet_extract,
    "PROPHET_CHUNK_SIZE": prophet_extract,
    "PROPHET_FORECAST_WEEKS": prophet_request,
    "PROPHET_ANOMALY_THRESHOLD": prophet_request,
    "SURVIVAL_LOOKBACK_DAYS": survival_request,
    "SURVIVAL_EVENT_THRESHOLD_DAYS": survival_request,
    "SURVIVAL_HORIZON_DAYS": survival_request,
    "CLUSTER_LOOKBACK_WEEKS": cluster_request,
    "CLUSTER_N_CLUSTERS": cluster_request,
    "CLUSTER_METHOD": cluster_request,
    "CLUSTER_K_MIN": cluster_request,
    "CLUSTER_K_MAX": cluster_request,
    "CLUSTER_SEED": cluster_request,
    "EVAL_LOOKBACK_WEEKS": lambda s: EvaluationWindow.for_run(RUN_DATE, s),
}

#: Settings with nothing to observe outside a run: (integration test that runs them with
#: a non-default value, why).
GROWTH_OBSERVED_IN_A_RUN: dict[str, tuple[str, str]] = {
    "BRMS_STAGE2_DRAWS": (
        "integration/test_fit_bayesian_growth.py",
        "thins stage 1's population draws inside the prepare task (needs the brms service)",
    ),
    "METRICS_USE_BAYESIAN": (
        "integration/test_fit_bayesian_growth.py",
        "decides in persist whether the run writes weekly_kpi.P",
    ),
}
OBSERVED_IN_A_RUN: dict[str, tuple[str, str]] = {
    "SURVIVAL_UPDATE_KPI": (
        "integration/test_fit_survival_churn.py",
        "decides in persist whether weekly_kpi.S is written",
    ),
    "EVAL_CALIBRATION_BINS": (
        "integration/test_evaluate_models.py",
        "binning of the calibration table, computed from the warehouse's predictions and outcomes",
    ),
    "EVAL_MIN_BIN_STUDENTS": (
        "integration/test_evaluate_models.py",
        "which calibration bins are judged, computed from the warehouse's predictions and outcomes",
    ),
}


#: Non-default values chosen for what they must change: the recorded series hold 7
#: students, so a chunk size below 7 splits them.
OVERRIDES: dict[str, Any] = {
    "PROPHET_CHUNK_SIZE": 3,
    # Growth's 150 recorded students: fewer per chunk/shard/sample, more than there are.
    "BRMS_CHUNK_SIZE": 100,
    "BRMS_SHARD_SIZE": 100,
    "BRMS_STAGE1_STUDENTS": 50,
    "BRMS_MIN_STUDENTS": 1000,
    "BRMS_MIN_WEEKS": 10,
}


def non_default(spec: SettingSpec, kind: type) -> Any:
    """A valid value other than the default (one step inside the bounds)."""
    if spec.name in OVERRIDES:
        return OVERRIDES[spec.name]
    if kind is bool:
        return not spec.default
    if spec.choices is not None:
        return next(choice for choice in spec.choices if choice != spec.default)
    if spec.optional_int:
        return "3"
    step = 1 if kind is int else 0.1 * float(spec.default)
    value = spec.default + step
    if spec.maximum is not None and value > spec.maximum:
        value = spec.default - step
    return value


def checked_settings() -> list[tuple[type[ModelSettings], SettingSpec, type]]:
    return [
        (cls, spec, kind)
        for cls in ALL_SETTINGS
        for _, spec, kind in cls._fields()  # noqa: SLF001 (the settings' own field table)
    ]


def observers_of(cls: type[ModelSettings]) -> dict[str, Callable[[Any], Any]]:
    return GROWTH_OBSERVERS if cls is GrowthSettings else OBSERVERS


def observed_in_a_run(cls: type[ModelSettings]) -> dict[str, tuple[str, str]]:
    return GROWTH_OBSERVED_IN_A_RUN if cls is GrowthSettings else OBSERVED_IN_A_RUN


CHECKED = checked_settings()


@pytest.mark.parametrize(
    ("cls", "spec", "kind"), CHECKED, ids=[f"{cls.__name__}.{spec.name}" for cls, spec, _ in CHECKED]
)
def test_overriding_a_setting_through_params_changes_what_the_run_sends(
    cls: type[ModelSettings], spec: SettingSpec, kind: type
) -> None:
    if spec.name in observed_in_a_run(cls):
        test_file, why = observed_in_a_run(cls)[spec.name]
        source = (TESTS / test_file).read_text()
        assert f'"{spec.name}"' in source, f"{spec.name} ({why}) is no longer overridden in {test_file}"
        return
    observers = observers_of(cls)
    assert spec.name in observers, f"say how {spec.name} reaches a run (OBSERVERS) or which run uses it"
    observe = observers[spec.name]
    value = non_default(spec, kind)
    assert value != spec.default
    default = observe(cls.from_params({}, environ={}))
    assert observe(cls.from_params({}, environ={})) == default  # the control: nothing overridden, nothing changes
    overridden = observe(cls.from_params({spec.name: value}, environ={}))
    assert overridden != default, f"{spec.name}={value!r} through Params changed nothing the run sends"


def test_every_setting_is_checked() -> None:
    for cls in ALL_SETTINGS:
        names = {spec.name for _, spec, _ in cls._fields()}  # noqa: SLF001
        observers, in_a_run = observers_of(cls), observed_in_a_run(cls)
        assert names <= set(observers) | set(in_a_run), (cls.__name__, names - set(observers) - set(in_a_run))
    assert not set(OBSERVERS) & set(OBSERVED_IN_A_RUN)
    assert not set(GROWTH_OBSERVERS) & set(GROWTH_OBSERVED_IN_A_RUN)
    growth = {spec.name for _, spec, _ in GrowthSettings._fields()}  # noqa: SLF001
    assert growth == set(GROWTH_OBSERVERS) | set(GROWTH_OBSERVED_IN_A_RUN)


def test_negative_control_an_observation_that_ignores_the_setting_fails() -> None:
    """PROPHET_CHUNK_SIZE seen through the fit request (which does not carry it) does not
    change: the check above would fail for an observer that misses its setting."""
    cls, spec, kind = next(item for item in CHECKED if item[1].name == "PROPHET_CHUNK_SIZE")
    default = prophet_request(cls.from_params({}, environ={}))
    assert prophet_request(cls.from_params({spec.name: non_default(spec, kind)}, environ={})) == default
