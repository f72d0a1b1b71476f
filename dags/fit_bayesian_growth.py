"""Airflow DAG ``fit_bayesian_growth``: brms growth model -> goal probabilities.

Thin on purpose: the pipeline (what to read, fit and write) lives in
``learning_analytics.pipelines.growth``; the extract -> fit -> persist machinery in
``learning_analytics.pipeline``.
"""

from learning_analytics.pipeline import build_model_dag
from learning_analytics.pipelines.growth import GrowthPipeline

dag = build_model_dag(GrowthPipeline())
