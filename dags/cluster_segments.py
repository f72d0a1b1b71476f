"""Airflow DAG ``cluster_segments``: behavioural segments of students, ids stable across runs.

Thin on purpose: the pipeline (features, fit request, id matching, profiles, tables
written) lives in ``learning_analytics.pipelines.cluster``; the extract -> fit (one
shard: the whole population) -> persist machinery in ``learning_analytics.pipeline``.
"""

from learning_analytics.pipeline import build_model_dag
from learning_analytics.pipelines.cluster import ClusterPipeline

dag = build_model_dag(ClusterPipeline())
