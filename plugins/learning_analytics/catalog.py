"""What the Airflow UI shows about each DAG: a one-line description and lineage.

Lineage = which warehouse tables each DAG reads and writes, as Airflow Assets. One
place for the lists: the DAGs declare them as task ``inlets``/``outlets`` so the
Assets page and each DAG's graph show ``attempt -> features/KPI -> models -> KPI
columns``. Schedules stay the spec's crons; no DAG is scheduled on an asset.
``tests/dags/test_catalog.py`` compares these lists with the tables the SQL files and
the ``tx.*`` calls of each DAG's code actually read and write.

An asset URI names the warehouse connection, its database, schema and table in the
postgres provider's scheme (``postgres://host:port/database/schema/table``); the
connection id stands for the host because the same DAG runs against different
servers (local stack, CI, production) and the lineage must not change with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow.sdk import Asset

from learning_analytics.warehouse import ANALYTICS_CONN_ID

#: Database name in asset URIs (the production warehouse; see the note above).
WAREHOUSE_DATABASE = "analytics"
#: Group of every warehouse asset on the Assets page.
ASSET_GROUP = "warehouse"


@dataclass(frozen=True)
class DagCatalog:
    """One DAG: its description (the DAG list) and the tables (or views) it reads and
    writes; a table both read and written is in both."""

    description: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]


#: dag_id -> tables. ``attempt`` is the view over ``attempt_log`` the spec's metrics read.
DAGS: dict[str, DagCatalog] = {
    "build_features_topic_daily": DagCatalog(
        description="Daily per-student, per-topic features from the attempt log (feeds the segments).",
        reads=("attempt", "questions"),
        writes=("features_topic_daily",),
    ),
    "build_weekly_kpi": DagCatalog(
        description="Weekly KPI per student: activity, accuracy, learning index I_t and P(goal).",
        reads=("attempt", "students", "weekly_kpi", "growth_brms_meta", "growth_brms_user"),
        writes=("weekly_kpi",),
    ),
    "fit_bayesian_growth": DagCatalog(
        description="Bayesian growth (brms): each student's accuracy trajectory and P(reaching the goal).",
        reads=("attempt", "students", "weekly_kpi", "growth_brms_meta", "growth_brms_user"),
        writes=("growth_brms_meta", "growth_brms_user", "weekly_kpi"),
    ),
    "forecast_prophet": DagCatalog(
        description="Prophet forecast of each student's learning index I_t with anomaly flags.",
        reads=("weekly_kpi",),
        writes=("prophet_fit_meta", "prophet_anomalies", "prophet_forecast"),
    ),
    "fit_survival_churn": DagCatalog(
        description="Churn risk (Cox model): hazard ratios, each active student's risk S.",
        reads=("attempt", "students", "weekly_kpi"),
        writes=("survival_fit_meta", "survival_risk", "survival_active_risk", "weekly_kpi"),
    ),
    "cluster_segments": DagCatalog(
        description="Behavioural segments (k-means) with ids stable across runs.",
        reads=("features_topic_daily", "topics", "weekly_kpi", "segment_meta"),
        writes=("cluster_run_meta", "user_segment", "segment_meta"),
    ),
    "evaluate_models": DagCatalog(
        description="Scoreboard: every model's stored predictions scored on what happened, vs baselines.",
        reads=(
            "attempt",
            "weekly_kpi",
            "growth_brms_meta",
            "growth_brms_user",
            "prophet_fit_meta",
            "prophet_forecast",
            "prophet_anomalies",
            "survival_fit_meta",
            "survival_active_risk",
            "segment_meta",
            "user_segment",
            "synthetic_run",
            "synthetic_truth_student",
            "synthetic_truth_anomaly",
        ),
        writes=("model_evaluation",),
    ),
}


#: The metrics job: the tables these DAGs write are the models' inputs.
KPI_DAGS: tuple[str, ...] = ("build_features_topic_daily", "build_weekly_kpi")


def model_output_tables() -> tuple[str, ...]:
    """Every table the model DAGs and ``evaluate_models`` write, but not the KPI tables
    (``weekly_kpi`` gets model columns, but the KPI builders own its rows): what a test or
    benchmark empties to start a scenario from the source data alone."""
    kpi_tables = {table for dag_id in KPI_DAGS for table in DAGS[dag_id].writes}
    tables = (table for dag_id, dag in DAGS.items() if dag_id not in KPI_DAGS for table in dag.writes)
    return tuple(dict.fromkeys(table for table in tables if table not in kpi_tables))


def table_asset(table: str) -> Asset:
    """The Asset of one warehouse table (or view)."""
    return Asset(
        name=f"{ANALYTICS_CONN_ID}.public.{table}",
        uri=f"postgres://{ANALYTICS_CONN_ID}:5432/{WAREHOUSE_DATABASE}/public/{table}",
        group=ASSET_GROUP,
    )


def description(dag_id: str) -> str:
    return DAGS[dag_id].description


def inlets(dag_id: str) -> list[Asset]:
    """Assets the DAG's reading task declares."""
    return [table_asset(table) for table in DAGS[dag_id].reads]


def outlets(dag_id: str) -> list[Asset]:
    """Assets the DAG's writing task declares."""
    return [table_asset(table) for table in DAGS[dag_id].writes]
