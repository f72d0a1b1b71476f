"""Weekly KPI per student (the metrics job, part 2)."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, get_current_context, task

from learning_analytics import catalog
from learning_analytics.kpi import build_weekly_kpi, kpi_window
from learning_analytics.pipeline import standard_dag_args
from learning_analytics.settings import KpiSettings
from learning_analytics.warehouse import Warehouse
from learning_analytics.windows import run_date_from_context

DOC_MD = """
### Weekly KPI

Builds **`weekly_kpi`**, one row per student and week (Monday 00:00 on the platform
clock `LA_TIMEZONE`, default Asia/Seoul), from the
`attempt` view: attempts, correct, accuracy, active days, time spent and the
learning index

`I_t = 100 * accuracy_t * min(1, ln(1 + attempts_t) / ln(201))`

(accuracy weighted by log-effort capped at 200 attempts: I_t is in [0, 100]; 0 in a
week without attempts). A student has a row for every week from their first attempt to their
exam week, so inactive weeks are visible to the models.

`P` = probability of reaching the accuracy goal at the target week (the exam week,
at most `GOAL_HORIZON_WEEKS` ahead). With `METRICS_USE_BAYESIAN=false` it is the
simple estimate (a least-squares line through the last `KPI_P_HISTORY_WEEKS` weeks);
with `true`, P comes from the latest converged `fit_bayesian_growth` run where one
exists (`p_source` says which). `S` is written by `fit_survival_churn` and kept.

* **Schedule**: Mondays 04:00 UTC (13:00 in Seoul, after the local week closed), before
  `fit_bayesian_growth` (04:30). The run date is the local date of the logical date.
* **Window**: the `KPI_LOOKBACK_WEEKS` complete weeks before the logical date.
* **Idempotent and order-independent**: rows of the window are upserted in one
  transaction; `built_for` keeps the latest run date that built a row, so reruns,
  backfills and runs in any order leave identical tables (`updated_at` is the wall
  clock of the last write and differs).
* **Backfills**: oldest first, one run at a time (`max_active_runs=1`; P of a week
  reads the weeks before it). `airflow backfill create` does not read the DAG's limit:
  pass `--max-active-runs 1` (README, "Backfills"). The build task also runs one
  instance at a time across runs.
* SQL: `include/sql/kpi/weekly_kpi.sql` (activity, I_t), then `include/sql/kpi/weekly_kpi_p.sql`
  (P); details in `docs/metrics.md`.
"""


@dag(**standard_dag_args(KpiSettings, tags=["learning-analytics", "metrics"], doc_md=DOC_MD))
def build_weekly_kpi_dag() -> None:
    @task(
        execution_timeout=timedelta(minutes=30),
        inlets=catalog.inlets("build_weekly_kpi"),
        outlets=catalog.outlets("build_weekly_kpi"),
        # Overlapping windows of concurrent runs (a backfill) would contend for the same rows.
        max_active_tis_per_dag=1,
        doc_md="Rebuilds the window's weeks of `weekly_kpi` (activity, I_t, P) in SQL.",
    )
    def build_kpi() -> int:
        context = get_current_context()
        settings = KpiSettings.from_params(context["params"])
        window = kpi_window(run_date_from_context(context), settings)
        return build_weekly_kpi(Warehouse(), window, settings)

    build_kpi()


build_weekly_kpi_dag()
