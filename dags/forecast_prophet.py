"""Airflow DAG ``forecast_prophet``: per-student prophet forecasts and anomalous weeks of I_t.

Thin on purpose: the pipeline (what to read, fit and write) lives in
``learning_analytics.pipelines.prophet``; the extract -> fit (mapped over chunks of
students) -> persist machinery in ``learning_analytics.pipeline``.
"""

from learning_analytics.pipeline import build_model_dag
from learning_analytics.pipelines.prophet import ProphetPipeline

dag = build_model_dag(ProphetPipeline())
