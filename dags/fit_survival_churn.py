"""Airflow DAG ``fit_survival_churn``: daily Cox model of 14-day study gaps and each active student's churn risk.

Thin on purpose: the pipeline (what to read, fit and write) lives in
``learning_analytics.pipelines.survival``; the extract -> fit (one shard: a Cox model
needs every student at once) -> persist machinery in ``learning_analytics.pipeline``.
"""

from learning_analytics.pipeline import build_model_dag
from learning_analytics.pipelines.survival import SurvivalPipeline

dag = build_model_dag(SurvivalPipeline())
