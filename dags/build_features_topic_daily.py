"""Daily per-student, per-topic features (the metrics job, part 1)."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, get_current_context, task

from learning_analytics import catalog
from learning_analytics.kpi import build_features_topic_daily, features_window
from learning_analytics.pipeline import standard_dag_args
from learning_analytics.settings import FeaturesSettings
from learning_analytics.warehouse import Warehouse
from learning_analytics.windows import run_date_from_context

DOC_MD = """
### Daily topic features

Aggregates the `attempt` view into **`features_topic_daily`**: one row per student,
topic and local day (platform clock `LA_TIMEZONE`, default Asia/Seoul) with attempts,
correct answers, accuracy, time spent and the mean difficulty of the questions tried.
Feeds `cluster_segments`.

* **Window**: the `FEATURES_LOOKBACK_DAYS` local days before the run date (the local date
  of the logical date; 03:00 UTC is 12:00 in Seoul) (default 3,
  so late-arriving attempts are picked up). A backfill over a long period: trigger
  with a larger `FEATURES_LOOKBACK_DAYS`.
* **Idempotent**: the window's days are deleted and rebuilt in one transaction.
* SQL: `include/sql/kpi/features_topic_daily.sql`.
"""


@dag(**standard_dag_args(FeaturesSettings, tags=["learning-analytics", "metrics"], doc_md=DOC_MD))
def build_features_topic_daily_dag() -> None:
    @task(
        execution_timeout=timedelta(minutes=30),
        inlets=catalog.inlets("build_features_topic_daily"),
        outlets=catalog.outlets("build_features_topic_daily"),
        doc_md="Rebuilds the window's days of `features_topic_daily` in SQL.",
    )
    def build_features() -> int:
        context = get_current_context()
        settings = FeaturesSettings.from_params(context["params"])
        window = features_window(run_date_from_context(context), settings)
        return build_features_topic_daily(Warehouse(), window)

    build_features()


build_features_topic_daily_dag()
