"""Airflow DAG ``evaluate_models``: the scoreboard of every model, prospectively.

Thin on purpose: the scoring lives in ``learning_analytics.evaluation`` (queries in
``include/sql/evaluation/``) and ``learning_analytics.scoring`` (the metrics).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from learning_analytics import catalog
from learning_analytics.evaluation import EVALUATORS, MODELS, EvaluationWindow, persist_evaluation
from learning_analytics.k8s import WAREHOUSE_EXECUTOR_CONFIG
from learning_analytics.pipeline import standard_dag_args
from learning_analytics.settings import EvaluationSettings
from learning_analytics.staging import RunStaging, read_json
from learning_analytics.warehouse import Warehouse
from learning_analytics.windows import run_date_from_context

log = logging.getLogger(__name__)

DOC_MD = """
### Model scoreboard

Scores the predictions that earlier runs of the four model DAGs stored, on what
actually happened after them (the `attempt` view and `weekly_kpi`), each metric
beside a simple baseline on the same students, into **`model_evaluation`**
(model, evaluated run date, horizon, metric, value, baseline, baseline value, n,
note; `evaluated_for` = this run's logical date).

| model | metrics | baseline |
|---|---|---|
| growth | Brier, log loss, AUC, calibration by decile of P(goal) vs the realized event | climatology; simple P |
| prophet | MAE, MASE, interval coverage of I_t forecasts, per horizon | naive: mean of last 4 weeks |
| survival | AUC, Brier, calibration-in-the-large of S vs a completed gap | Kaplan-Meier; days idle only |
| cluster | ARI with the previous run, share of students who changed segment | activity-level segments |

Growth's realized event: the observed accuracy in the target week reaches the goal.
Survival's: a gap of `SURVIVAL_EVENT_THRESHOLD_DAYS` without attempts is completed
within the horizon.

On a synthetic data set (and only there) the truth is scored too: anomaly
precision/recall by kind (baseline: count-based rule with as many flags), segment
ARI vs the true segments, slope correlation vs the true slopes.

* **Which runs**: model runs dated in the `EVAL_LOOKBACK_WEEKS` weeks before the
  logical date whose outcome window closed before the Monday of the logical date
  (nothing of the current week is read). A date with no closed window writes
  nothing and says so in the log.
* **Schedule**: Mondays 09:00 UTC, after the Monday model runs.
* **Idempotent**: each model's rows of the logical date are replaced in one
  transaction; a model whose evaluation failed keeps its earlier rows.
* Definitions: `docs/model-quality.md`.
"""


@dag(
    **standard_dag_args(EvaluationSettings, tags=["learning-analytics", "evaluation"], doc_md=DOC_MD),
)
def evaluate_models_dag() -> None:
    def evaluation_context() -> tuple[EvaluationWindow, EvaluationSettings, RunStaging]:
        context = get_current_context()
        settings = EvaluationSettings.from_params(context["params"])
        window = EvaluationWindow.for_run(run_date_from_context(context), settings)
        return window, settings, RunStaging(context["dag"].dag_id, context["run_id"])

    @task(
        execution_timeout=timedelta(minutes=30),
        executor_config=WAREHOUSE_EXECUTOR_CONFIG,
        inlets=catalog.inlets(EvaluationSettings.dag_id),
        doc_md="Scores one model's stored predictions whose outcome window has closed; stages the "
        "metric rows and returns their URI.",
    )
    def evaluate(model: str) -> str:
        window, settings, staging = evaluation_context()
        log.info(
            "%s: runs dated %s .. %s (exclusive), outcomes before %s",
            model, window.since, window.until, window.outcome_end,
        )  # fmt: skip
        rows = EVALUATORS[model](Warehouse(), window, settings)
        if not rows:
            log.warning("%s: no run with a closed outcome window; nothing to score", model)
        for row in rows:
            log.info(
                "%s %s %s %s: %s (baseline %s: %s), n=%s%s",
                model, row["run_date"], row["horizon"], row["metric"], _fmt(row["value"]), row["baseline"],
                _fmt(row["baseline_value"]), row["n"], f" [{row['note']}]" if row["note"] else "",
            )  # fmt: skip
        return staging.write_json(f"evaluation-{model}", [{**row, "run_date": str(row["run_date"])} for row in rows])

    @task(
        trigger_rule="all_done",
        execution_timeout=timedelta(minutes=30),
        executor_config=WAREHOUSE_EXECUTOR_CONFIG,
        outlets=catalog.outlets(EvaluationSettings.dag_id),
        doc_md="Replaces each evaluated model's `model_evaluation` rows of the logical date in one "
        "transaction (a model whose evaluation failed keeps its earlier rows).",
    )
    def persist(row_uris: list[str | None]) -> dict[str, int]:
        window, _, _ = evaluation_context()
        written: dict[str, Any] = {}
        with Warehouse().transaction() as tx:
            for model, uri in zip(MODELS, row_uris, strict=True):
                if uri is None:
                    log.error("%s: evaluation failed; its earlier rows are kept", model)
                    continue
                written[model] = persist_evaluation(tx, window.evaluated_for, model, read_json(uri))
        log.info("model_evaluation for %s: %s", window.evaluated_for, written)
        if not any(written.values()):
            log.warning("no model had a closed outcome window by %s: nothing written", window.outcome_end)
        return written

    persist([evaluate.override(task_id=f"evaluate_{model}")(model) for model in MODELS])


def _fmt(value: float | None) -> str:
    return "NULL" if value is None else f"{value:.4f}"


evaluate_models_dag()
