"""Every DAG imports cleanly and carries what operators rely on in the UI."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import Param

from learning_analytics.settings import ALL_SETTINGS

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"

#: The product specification's schedules (UTC), plus the metrics job's builders
#: (the weekly KPI must run on Monday before fit_bayesian_growth at 04:30) and the
#: scoreboard (after the Monday model runs).
SPEC_SCHEDULES = {
    "fit_bayesian_growth": "30 4 * * 1",
    "forecast_prophet": "0 5 * * 1",
    "fit_survival_churn": "0 5 * * *",
    "cluster_segments": "0 7 1,15 * *",
    "build_weekly_kpi": "0 4 * * 1",
    "build_features_topic_daily": "0 3 * * *",
    # The scoreboard, after the Monday model runs.
    "evaluate_models": "0 9 * * 1",
}


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=DAGS_DIR, safe_mode=False)


def test_every_dag_file_imports_without_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    files = {path.name for path in DAGS_DIR.glob("*.py")}
    loaded = {Path(dag.fileloc).name for dag in dagbag.dags.values()}
    assert files == loaded, f"DAG files that define no DAG: {files - loaded}"


def test_dag_ids_and_schedules_match_the_spec(dagbag: DagBag) -> None:
    assert set(dagbag.dags) == set(SPEC_SCHEDULES)
    for dag_id, dag in dagbag.dags.items():
        assert dag.schedule == SPEC_SCHEDULES[dag_id], f"{dag_id}: schedule {dag.schedule!r}"
        assert type(dag.timetable).__name__ == "CronTriggerTimetable", dag_id
        assert not dag.catchup, f"{dag_id}: catchup would start a backfill on deploy"


@pytest.mark.parametrize("dag_id", sorted(SPEC_SCHEDULES))
def test_dag_has_owner_tags_retries_and_docs(dagbag: DagBag, dag_id: str) -> None:
    assert dag_id in dagbag.dags, f"{dag_id} is missing"
    dag = dagbag.dags[dag_id]
    assert dag.tags, f"{dag_id}: no tags"
    assert dag.doc_md and len(dag.doc_md.strip()) > 100, f"{dag_id}: doc_md missing or too thin"
    for task in dag.tasks:
        assert task.owner == "learning-analytics", f"{dag_id}.{task.task_id}: owner {task.owner}"
        assert task.retries >= 1, f"{dag_id}.{task.task_id}: no retries"
        assert task.doc_md, f"{dag_id}.{task.task_id}: no doc_md"
        assert task.execution_timeout is not None, f"{dag_id}.{task.task_id}: no timeout"


@pytest.mark.parametrize("settings_cls", ALL_SETTINGS, ids=lambda cls: cls.dag_id)
def test_params_are_the_settings_with_env_defaults(dagbag: DagBag, settings_cls) -> None:
    """One source of truth: each DAG's Params are exactly its settings, same names and defaults."""
    dag = dagbag.dags[settings_cls.dag_id]
    defaults = settings_cls.from_env().as_dict()
    assert set(dag.params.keys()) == set(defaults)
    for name, value in defaults.items():
        param = dag.params.get_param(name)
        assert isinstance(param, Param)
        assert param.value == value, f"{settings_cls.dag_id}.{name}: Param default {param.value!r} != env {value!r}"
        assert param.description, f"{settings_cls.dag_id}.{name}: Param without description"


def test_an_unknown_time_zone_fails_every_dag_at_parse_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LA_TIMEZONE", "Asia/Seul")
    broken = DagBag(dag_folder=DAGS_DIR, safe_mode=False)
    assert not broken.dags
    assert len(broken.import_errors) == len(list(DAGS_DIR.glob("*.py")))
    for error in broken.import_errors.values():
        assert "LA_TIMEZONE: 'Asia/Seul' is not a known IANA time zone name" in error


@pytest.mark.parametrize(
    "dag_id", ["fit_bayesian_growth", "forecast_prophet", "fit_survival_churn", "cluster_segments"]
)
def test_model_dags_gate_the_persisted_rows_and_document_the_gates(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    gates = [task for task in dag.tasks if task.task_type in ("SQLColumnCheckOperator", "SQLTableCheckOperator")]
    assert gates, f"{dag_id}: no quality gate"
    for gate in gates:
        assert gate.upstream_task_ids == {"persist"}, gate.task_id
        assert "run_date = " in gate.partition_clause, "gates read only the run's partition"
    assert "#### Quality gates" in dag.doc_md


def test_every_task_alerts_on_failure_when_alerts_are_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from learning_analytics.alerts import EmailFailureNotifier, WebhookFailureNotifier
    from learning_analytics.pipeline import default_task_args

    monkeypatch.delenv("LA_ALERT_EMAIL_TO", raising=False)
    monkeypatch.delenv("LA_ALERT_WEBHOOK_CONN_ID", raising=False)
    assert "on_failure_callback" not in default_task_args(), "alerts are off unless configured"
    monkeypatch.setenv("LA_ALERT_EMAIL_TO", "oncall@example.test")
    monkeypatch.setenv("LA_ALERT_WEBHOOK_CONN_ID", "alert_webhook")
    callbacks = default_task_args()["on_failure_callback"]
    assert [type(c) for c in callbacks] == [EmailFailureNotifier, WebhookFailureNotifier]
