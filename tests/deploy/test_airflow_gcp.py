"""Airflow on GCP: the secrets backend configuration resolves our connection ids.

With the environment of deploy/airflow/airflow.env, Airflow itself (server side and the
task-SDK worker side) instantiates the GCP Secret Manager backend, and the backend asks
for ``airflow-connections-<conn_id>`` in project ``univprepai`` for every connection the
DAGs use. Nothing talks to GCP: credentials are a dummy authorized-user file (loaded
lazily, never refreshed) and the Secret Manager client's lookup is replaced by a
recorder that answers with the committed connection templates.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_AIRFLOW = PROJECT_ROOT / "deploy" / "airflow"
BACKEND_CLASS = "airflow.providers.google.cloud.secrets.secret_manager.CloudSecretManagerBackend"
#: Connections the DAGs use (scripts/stack.sh defines the same ids locally) plus the one
#: remote logging uses on GCP.
REMOTE_LOG_CONN_ID = "google_cloud_default"


@pytest.fixture
def secrets_backend_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, airflow_gcp_env: dict[str, str]) -> None:
    """The production [secrets] settings plus offline dummy Google credentials."""
    for key, value in airflow_gcp_env.items():
        if key.startswith("AIRFLOW__SECRETS__"):
            monkeypatch.setenv(key, value)
    credentials = tmp_path / "dummy-credentials.json"
    credentials.write_text(
        json.dumps({"type": "authorized_user", "client_id": "x", "client_secret": "x", "refresh_token": "x"})
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
    # A different ambient project proves the configured project_id is the one used.
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "some-other-project")
    monkeypatch.setenv("NO_GCE_CHECK", "True")


def connection_template(conn_id: str) -> dict[str, Any]:
    return json.loads((DEPLOY_AIRFLOW / "connections" / f"{conn_id}.json").read_text())


def test_configuration_names_the_backend_and_prefixes(airflow_gcp_env: dict[str, str]) -> None:
    assert airflow_gcp_env["AIRFLOW__SECRETS__BACKEND"] == BACKEND_CLASS
    assert json.loads(airflow_gcp_env["AIRFLOW__SECRETS__BACKEND_KWARGS"]) == {
        "connections_prefix": "airflow-connections",
        "variables_prefix": "airflow-variables",
        "project_id": "univprepai",
        "sep": "-",
    }


@pytest.mark.parametrize("side", ["server", "worker"])
def test_airflow_instantiates_the_backend_and_maps_every_connection_id(
    side: str, secrets_backend_env: None, monkeypatch: pytest.MonkeyPatch, stack: Any
) -> None:
    from airflow.providers.google.cloud._internal_client.secret_manager_client import _SecretManagerClient
    from airflow.providers.google.cloud.secrets.secret_manager import CloudSecretManagerBackend

    if side == "server":
        from airflow.configuration import initialize_secrets_backends

        backends = initialize_secrets_backends()
    else:
        from airflow.sdk.configuration import initialize_secrets_backends as initialize_worker_backends
        from airflow.sdk.execution_time.secrets import DEFAULT_SECRETS_SEARCH_PATH_WORKERS

        backends = initialize_worker_backends(default_backends=DEFAULT_SECRETS_SEARCH_PATH_WORKERS)
    backend = backends[0]
    assert isinstance(backend, CloudSecretManagerBackend), "the custom backend must be searched first"
    assert (backend.project_id, backend.connections_prefix, backend.variables_prefix, backend.sep) == (
        "univprepai",
        "airflow-connections",
        "airflow-variables",
        "-",
    )

    requested: list[tuple[str, str]] = []

    def recorded_lookup(self: Any, secret_id: str, project_id: str, secret_version: str = "latest") -> str | None:
        requested.append((secret_id, project_id))
        if secret_id.startswith("airflow-variables-"):
            return "a variable value"
        return json.dumps(connection_template(secret_id.removeprefix("airflow-connections-")))

    monkeypatch.setattr(_SecretManagerClient, "get_secret", recorded_lookup)
    for conn_id in sorted(stack.conn_ids | {REMOTE_LOG_CONN_ID}):
        connection = backend.get_connection(conn_id)
        assert requested[-1] == (f"airflow-connections-{conn_id}", "univprepai")
        assert connection is not None and connection.conn_type == connection_template(conn_id)["conn_type"]
    assert backend.get_variable("some_key") == "a variable value"
    assert requested[-1] == ("airflow-variables-some_key", "univprepai")


def test_connection_templates_point_at_the_kubernetes_services(stack: Any) -> None:
    from airflow.models.connection import Connection

    templates = {p.stem for p in (DEPLOY_AIRFLOW / "connections").glob("*.json")}
    assert templates == set(stack.conn_ids) | {REMOTE_LOG_CONN_ID}
    for r_service in stack.services:
        raw = (DEPLOY_AIRFLOW / "connections" / f"{r_service.conn_id}.json").read_text()
        connection = Connection.from_json(raw, conn_id=r_service.conn_id)
        assert connection.conn_type == "http" and not connection.login, (
            "RServiceHook sends the password as bearer token"
        )
        assert connection.host == f"{r_service.name}.learning-analytics.svc.cluster.local"
        assert (connection.port, connection.schema, connection.password) == (8000, "http", "change-me")
    warehouse = Connection.from_json(
        (DEPLOY_AIRFLOW / "connections" / "analytics_db.json").read_text(), conn_id="analytics_db"
    )
    assert (warehouse.conn_type, warehouse.login, warehouse.schema, warehouse.password) == (
        "postgres",
        "analytics",
        "analytics",
        "change-me",
    )


def test_helm_values_carry_exactly_the_documented_environment(airflow_gcp_env: dict[str, str]) -> None:
    values = yaml.safe_load((DEPLOY_AIRFLOW / "values.yaml").read_text())
    assert {item["name"]: item["value"] for item in values["env"]} == airflow_gcp_env
    assert values["executor"] == "KubernetesExecutor"
    pinned = re.search(r"^apache-airflow==(\S+)$", (PROJECT_ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned and values["airflowVersion"] == pinned.group(1)
    assert values["postgresql"]["enabled"] is False


def test_chart_secrets_are_synced_from_secret_manager_with_the_chart_keys() -> None:
    values = yaml.safe_load((DEPLOY_AIRFLOW / "values.yaml").read_text())
    produced = {
        doc["spec"]["target"]["name"]: {item["secretKey"] for item in doc["spec"]["data"]}
        for doc in yaml.safe_load_all((DEPLOY_AIRFLOW / "externalsecrets.yaml").read_text())
    }
    # Key names the official chart reads from each referenced Secret.
    expected = {
        values["data"]["metadataSecretName"]: {"connection"},
        values["fernetKeySecretName"]: {"fernet-key"},
        values["apiSecretKeySecretName"]: {"api-secret-key"},
        values["jwtSecretName"]: {"jwt-secret"},
    }
    assert produced == expected


def test_production_settings_are_valid_pipeline_settings(airflow_gcp_env: dict[str, str]) -> None:
    from learning_analytics.settings import ALL_SETTINGS, GrowthSettings

    assert GrowthSettings.from_env(airflow_gcp_env).lookback_weeks == 12
    for settings_cls in ALL_SETTINGS:
        settings_cls.from_env(airflow_gcp_env)


def test_deployment_guide_documents_every_secret(stack: Any) -> None:
    guide = (PROJECT_ROOT / "docs" / "deployment.md").read_text()
    for conn_id in stack.conn_ids | {REMOTE_LOG_CONN_ID}:
        assert f"airflow-connections-{conn_id}" in guide, conn_id
    for r_service in stack.services:
        assert f"gcloud secrets create {r_service.gcp_token_secret}" in guide, r_service.gcp_token_secret
