"""Per-task pod resources for the KubernetesExecutor (production on GKE).

Under the KubernetesExecutor every task instance runs in a pod built from the chart's
pod template (small default requests, ``workers.resources`` in
``deploy/airflow/values.yaml``). A task that needs more passes ``executor_config`` with a
``pod_override``; the executor merges the override into the template's container named
``base``, so only the resources change (image, env, service account stay). Other
executors (LocalExecutor in docker-compose and the local stack) ignore
``executor_config``, so the same DAG code runs everywhere.

Usage in a task definition::

    from learning_analytics.k8s import FIT_EXECUTOR_CONFIG

    @task(executor_config=FIT_EXECUTOR_CONFIG)
    def fit(...): ...
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes.client import models as k8s

#: The KubernetesExecutor merges a pod_override into the template container of this name.
BASE_CONTAINER_NAME = "base"


@dataclass(frozen=True)
class TaskResources:
    """Kubernetes resource requests of one task's pod.

    :param cpu: CPU request (Kubernetes quantity, e.g. ``"500m"``); no CPU limit, so a
        task may burst on an idle node instead of being throttled.
    :param memory: memory request (e.g. ``"2Gi"``).
    :param memory_limit: memory limit; above it the pod is OOM-killed and the task retried.
    """

    cpu: str
    memory: str
    memory_limit: str

    def pod_override(self) -> k8s.V1Pod:
        """A pod that sets only the ``base`` container's resources."""
        return k8s.V1Pod(
            spec=k8s.V1PodSpec(
                containers=[
                    k8s.V1Container(
                        name=BASE_CONTAINER_NAME,
                        resources=k8s.V1ResourceRequirements(
                            requests={"cpu": self.cpu, "memory": self.memory},
                            limits={"memory": self.memory_limit},
                        ),
                    )
                ]
            )
        )


def executor_config(resources: TaskResources) -> dict[str, k8s.V1Pod]:
    """``executor_config`` for ``@task(...)`` giving the task's pod ``resources``."""
    return {"pod_override": resources.pod_override()}


#: ``extract`` and ``persist`` hold a run's whole window (or all shard answers) in pandas
#: and COPY it to PostgreSQL: memory scales with the number of students.
WAREHOUSE_TASK_RESOURCES = TaskResources(cpu="1", memory="2Gi", memory_limit="4Gi")
#: ``fit`` reads one staged shard, waits on the R service (which does the computing)
#: and stages its JSON answer: one shard's worth of memory, little CPU. Small requests
#: let many mapped fit pods share a node.
FIT_TASK_RESOURCES = TaskResources(cpu="250m", memory="1Gi", memory_limit="2Gi")

WAREHOUSE_EXECUTOR_CONFIG = executor_config(WAREHOUSE_TASK_RESOURCES)
FIT_EXECUTOR_CONFIG = executor_config(FIT_TASK_RESOURCES)
