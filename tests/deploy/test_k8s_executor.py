"""plugins/learning_analytics/k8s.py: pod overrides the KubernetesExecutor can apply."""

from __future__ import annotations

from datetime import datetime

import pytest
from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
from kubernetes.client import models as k8s
from kubernetes.utils import parse_quantity

from learning_analytics.k8s import (
    BASE_CONTAINER_NAME,
    FIT_EXECUTOR_CONFIG,
    FIT_TASK_RESOURCES,
    WAREHOUSE_EXECUTOR_CONFIG,
    WAREHOUSE_TASK_RESOURCES,
    TaskResources,
    executor_config,
)

CONFIGS = {
    "fit": (FIT_EXECUTOR_CONFIG, FIT_TASK_RESOURCES),
    "warehouse": (WAREHOUSE_EXECUTOR_CONFIG, WAREHOUSE_TASK_RESOURCES),
}


def template_pod() -> k8s.V1Pod:
    """Stand-in for the chart's pod template: one ``base`` container with defaults."""
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="task", labels={"component": "worker"}),
        spec=k8s.V1PodSpec(
            service_account_name="airflow-worker",
            containers=[
                k8s.V1Container(
                    name=BASE_CONTAINER_NAME,
                    image="registry.example/airflow:1",
                    env=[k8s.V1EnvVar(name="LA_STAGING_BASE", value="gs://bucket")],
                    resources=k8s.V1ResourceRequirements(requests={"cpu": "100m", "memory": "256Mi"}),
                )
            ],
        ),
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_executor_config_is_a_pod_override_the_executor_accepts(name: str) -> None:
    config, resources = CONFIGS[name]
    pod = PodGenerator.from_obj(config)
    assert isinstance(pod, k8s.V1Pod)
    (container,) = pod.spec.containers
    assert container.name == BASE_CONTAINER_NAME
    assert container.resources.requests == {"cpu": resources.cpu, "memory": resources.memory}
    assert parse_quantity(resources.memory) <= parse_quantity(resources.memory_limit)
    assert parse_quantity(resources.cpu) > 0


def test_override_changes_only_the_resources_of_the_template() -> None:
    merged = PodGenerator.reconcile_pods(template_pod(), FIT_EXECUTOR_CONFIG["pod_override"])
    (container,) = merged.spec.containers
    assert container.image == "registry.example/airflow:1"
    assert [env.name for env in container.env] == ["LA_STAGING_BASE"]
    assert merged.spec.service_account_name == "airflow-worker"
    assert container.resources.requests == {"cpu": FIT_TASK_RESOURCES.cpu, "memory": FIT_TASK_RESOURCES.memory}
    assert container.resources.limits == {"memory": FIT_TASK_RESOURCES.memory_limit}


def test_executor_config_survives_dag_serialization() -> None:
    from airflow.sdk import DAG, task
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("k8s_executor_config_probe", schedule=None, start_date=datetime(2026, 1, 1)) as dag:

        @task(executor_config=executor_config(TaskResources(cpu="2", memory="3Gi", memory_limit="6Gi")))
        def heavy() -> None:
            """Never run: only serialized."""

        heavy()

    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    pod = restored.get_task("heavy").executor_config["pod_override"]
    assert isinstance(pod, k8s.V1Pod)
    assert pod.spec.containers[0].resources.requests == {"cpu": "2", "memory": "3Gi"}
