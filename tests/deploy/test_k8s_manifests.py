"""Kubernetes manifests (deploy/k8s, deploy/airflow/externalsecrets.yaml), checked offline.

Built-in kinds are validated with ``kubernetes-validate`` (strict: unknown fields fail)
against the OpenAPI schemas of Kubernetes ``K8S_VERSION``, and field by field against
the models of the official ``kubernetes`` Python client (missing required fields
fail); the External Secrets objects against the ``v1`` CRD schemas that External Secrets
publishes (tests/deploy/schemas/, made strict the way ``kubectl apply``'s server-side
field validation is). Cross-references are followed: each
Deployment's token Secret is produced by an ExternalSecret that reads the documented
GCP secret through the ClusterSecretStore, its model directory is on a ReadWriteMany
claim, its Service and PodDisruptionBudget select its pods.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes import client

PROJECT_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = PROJECT_ROOT / "deploy" / "k8s"
AIRFLOW_EXTERNAL_SECRETS = PROJECT_ROOT / "deploy" / "airflow" / "externalsecrets.yaml"
NAMESPACE = "learning-analytics"
#: External Secrets 0.17+ serves only v1 (docs/deployment.md pins the chart).
ESO_API_VERSION = "external-secrets.io/v1"
#: Kubernetes version the built-in kinds are validated for (GKE regular channel, 2026).
K8S_VERSION = "1.33.0"
SCHEMA_DIR = Path(__file__).parent / "schemas"

#: kind -> (apiVersion, kubernetes client model or None for CRDs, namespaced)
KINDS: dict[str, tuple[str, str | None, bool]] = {
    "Namespace": ("v1", "V1Namespace", False),
    "Deployment": ("apps/v1", "V1Deployment", True),
    "Service": ("v1", "V1Service", True),
    "PersistentVolumeClaim": ("v1", "V1PersistentVolumeClaim", True),
    "PodDisruptionBudget": ("policy/v1", "V1PodDisruptionBudget", True),
    "NetworkPolicy": ("networking.k8s.io/v1", "V1NetworkPolicy", True),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "V2HorizontalPodAutoscaler", True),
    "ExternalSecret": (ESO_API_VERSION, None, True),
    "ClusterSecretStore": (ESO_API_VERSION, None, False),
}
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.rglob("*.yaml") if p.name != "kustomization.yaml") + [AIRFLOW_EXTERNAL_SECRETS]


def load_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path, doc))
    return docs


DOCUMENTS = load_documents()


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in DOCUMENTS if doc["kind"] == kind}


def schema_errors(data: Any, type_name: str, where: str) -> list[str]:
    """Fields of ``data`` that the client model ``type_name`` does not define or types differently."""
    if type_name.startswith("list["):
        if not isinstance(data, list):
            return [f"{where}: expected a list"]
        item_type = type_name[5:-1]
        return [error for i, item in enumerate(data) for error in schema_errors(item, item_type, f"{where}[{i}]")]
    if type_name.startswith(("dict(", "dict[")):
        if not isinstance(data, dict):
            return [f"{where}: expected a mapping"]
        value_type = type_name[5:-1].split(", ", 1)[1]
        return [error for key, item in data.items() for error in schema_errors(item, value_type, f"{where}.{key}")]
    primitives = {"str": str, "int": int, "bool": bool, "float": (int, float)}
    if type_name in primitives:
        ok = isinstance(data, primitives[type_name]) and not (type_name == "int" and isinstance(data, bool))
        return [] if ok else [f"{where}: expected {type_name}, got {data!r}"]
    if type_name in ("object", "datetime"):
        return []
    model = getattr(client, type_name)
    if not isinstance(data, dict):
        return [f"{where}: expected a {type_name} mapping"]
    json_to_attr = {json_key: attr for attr, json_key in model.attribute_map.items()}
    errors = [f"{where}.{key}: unknown field of {type_name}" for key in data if key not in json_to_attr]
    for key, value in data.items():
        if key in json_to_attr:
            errors += schema_errors(value, model.openapi_types[json_to_attr[key]], f"{where}.{key}")
    return errors


def missing_required_fields(data: dict[str, Any], model_name: str) -> str | None:
    """Build the client model: its setters reject a missing required field."""
    try:
        # The client's own JSON -> model conversion (name-mangled private API).
        client.ApiClient()._ApiClient__deserialize(data, model_name)  # type: ignore[attr-defined]
    except ValueError as err:
        return str(err)
    return None


@pytest.mark.parametrize(
    ("path", "doc"), DOCUMENTS, ids=[f"{p.relative_to(PROJECT_ROOT)}:{d.get('kind')}" for p, d in DOCUMENTS]
)
def test_document_is_a_valid_object_of_its_kind(path: Path, doc: dict[str, Any]) -> None:
    assert doc.get("kind") in KINDS, f"{path.name}: unexpected kind {doc.get('kind')}"
    api_version, model, namespaced = KINDS[doc["kind"]]
    assert doc["apiVersion"] == api_version
    name = doc["metadata"]["name"]
    assert _DNS_1123.match(name) and len(name) <= 63, name
    assert ("namespace" in doc["metadata"]) == namespaced, f"{name}: namespace set iff the kind is namespaced"
    if model is not None:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert schema_errors(doc, model, doc["kind"]) == []
        assert missing_required_fields(doc, model) is None
    else:
        crd_validator(doc["kind"]).validate(doc)


def strict_schema(schema: Any) -> Any:
    """A CRD's OpenAPI schema that rejects unknown fields, as ``kubectl apply`` does
    (server-side field validation ``Strict``), except where the CRD preserves them."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: strict_schema(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    """Validator of the published ``v1`` schema of an External Secrets kind."""
    schema = json.loads((SCHEMA_DIR / f"{kind.lower()}-external-secrets.io-v1.json").read_text())
    schema = strict_schema(schema)
    # metadata is validated by the API server, not by the CRD schema.
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def test_validators_reject_what_a_current_cluster_rejects() -> None:
    """Negative controls: the same validators fail on objects a cluster would refuse."""
    external = next(iter(by_kind("ExternalSecret").values()))
    typo = copy.deepcopy(external)
    typo["spec"]["secretStoreRefs"] = typo["spec"].pop("secretStoreRef")
    assert list(crd_validator("ExternalSecret").iter_errors(typo))
    wrong_type = copy.deepcopy(external)
    wrong_type["spec"]["data"][0]["remoteRef"] = "r-brms-internal-token"
    assert list(crd_validator("ExternalSecret").iter_errors(wrong_type))
    store = copy.deepcopy(next(iter(by_kind("ClusterSecretStore").values())))
    store["spec"]["provider"]["gcpsm"]["projectId"] = store["spec"]["provider"]["gcpsm"].pop("projectID")
    assert list(crd_validator("ClusterSecretStore").iter_errors(store))
    deployment = copy.deepcopy(next(iter(by_kind("Deployment").values())))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    hpa = copy.deepcopy(next(iter(by_kind("HorizontalPodAutoscaler").values())))
    hpa["apiVersion"] = "autoscaling/v2beta2"  # removed in Kubernetes 1.26
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(hpa, K8S_VERSION, strict=True)


def test_every_manifest_is_listed_in_a_kustomization() -> None:
    listed: set[Path] = set()
    for kustomization in K8S_DIR.rglob("kustomization.yaml"):
        for resource in yaml.safe_load(kustomization.read_text())["resources"]:
            target = (kustomization.parent / resource).resolve()
            assert target.exists(), f"{kustomization}: {resource} does not exist"
            listed.add(target)
    orphans = [p for p in K8S_DIR.rglob("*.yaml") if p.name != "kustomization.yaml" and p.resolve() not in listed]
    assert orphans == []


def test_cluster_secret_store_reads_gcp_secret_manager_of_univprepai() -> None:
    stores = by_kind("ClusterSecretStore")
    assert len(stores) == 1
    (store,) = stores.values()
    assert store["spec"]["provider"]["gcpsm"]["projectID"] == "univprepai"


def test_every_external_secret_uses_the_store_and_names_its_keys() -> None:
    stores = by_kind("ClusterSecretStore")
    for name, external in by_kind("ExternalSecret").items():
        spec = external["spec"]
        assert spec["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": next(iter(stores))}, name
        assert spec["target"]["name"] and spec["refreshInterval"], name
        assert spec["data"] and all(item["secretKey"] and item["remoteRef"]["key"] for item in spec["data"]), name


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    return main


def env_var(main: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [item for item in main["env"] if item["name"] == name]
    assert len(matches) == 1, f"{main['name']}: {name} set {len(matches)} times"
    return matches[0]


def test_each_r_service_has_a_deployment_service_and_external_secret(stack: Any) -> None:
    names = {s.name for s in stack.services}
    assert set(by_kind("Deployment")) == names
    assert set(by_kind("Service")) == names
    assert {s.name for s in stack.services} <= {n.removesuffix("-token") for n in by_kind("ExternalSecret")}


def test_deployment_token_comes_from_the_documented_gcp_secret(stack: Any) -> None:
    produced = {
        (ext["spec"]["target"]["name"], item["secretKey"]): item["remoteRef"]["key"]
        for ext in by_kind("ExternalSecret").values()
        if ext["metadata"]["namespace"] == NAMESPACE
        for item in ext["spec"]["data"]
    }
    for r_service in stack.services:
        ref = env_var(container(by_kind("Deployment")[r_service.name]), "R_SERVICE_TOKEN")["valueFrom"]["secretKeyRef"]
        assert produced.get((ref["name"], ref["key"])) == r_service.gcp_token_secret, r_service.name


def test_deployment_runs_the_image_as_its_dockerfile_expects(
    stack: Any, r_image_env: dict[str, dict[str, str]]
) -> None:
    for r_service in stack.services:
        deployment = by_kind("Deployment")[r_service.name]
        main = container(deployment)
        version = (PROJECT_ROOT / "r-services" / r_service.name / "VERSION").read_text().strip()
        assert main["image"].endswith(f"/{r_service.name}:{version}"), main["image"]
        assert main["ports"] == [{"name": "http", "containerPort": int(r_image_env[r_service.name]["PORT"])}]
        assert env_var(main, "HOST")["value"] == "0.0.0.0"
        assert env_var(main, "PORT")["value"] == r_image_env[r_service.name]["PORT"]
        resources = main["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], r_service.name
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_probes_use_the_open_health_endpoint(stack: Any) -> None:
    for r_service in stack.services:
        main = container(by_kind("Deployment")[r_service.name])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            action = main[probe]["httpGet"]
            assert action["path"] == "/health" and action["port"] in ("http", 8000), f"{r_service.name} {probe}"
        # Liveness must tolerate a busy service longer than readiness does.
        live, ready = main["livenessProbe"], main["readinessProbe"]
        assert live["periodSeconds"] * live["failureThreshold"] > ready["periodSeconds"] * ready["failureThreshold"]


def test_model_dir_is_on_a_read_write_many_claim_shared_by_replicas(
    stack: Any, r_image_env: dict[str, dict[str, str]]
) -> None:
    claims = by_kind("PersistentVolumeClaim")
    for r_service in stack.services:
        pod = by_kind("Deployment")[r_service.name]["spec"]["template"]["spec"]
        main = container(by_kind("Deployment")[r_service.name])
        model_dir = env_var(main, "MODEL_DIR")["value"]
        assert model_dir == r_image_env[r_service.name]["MODEL_DIR"]
        (mount,) = [m for m in main["volumeMounts"] if m["mountPath"] == model_dir]
        assert mount.get("subPath") == r_service.name, "services keep their models apart on the shared volume"
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        claim = claims[volume["persistentVolumeClaim"]["claimName"]]
        assert "ReadWriteMany" in claim["spec"]["accessModes"]


def test_service_and_disruption_budget_select_the_deployment_pods(stack: Any) -> None:
    budgets = {
        doc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]: doc
        for doc in by_kind("PodDisruptionBudget").values()
    }
    for r_service in stack.services:
        pod_labels = by_kind("Deployment")[r_service.name]["spec"]["template"]["metadata"]["labels"]
        service = by_kind("Service")[r_service.name]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        (port,) = service["spec"]["ports"]
        assert port["port"] == 8000 and port["targetPort"] == "http"
        assert budgets[r_service.name]["spec"]["minAvailable"] == 1


def test_network_policy_admits_airflow_on_the_service_port(stack: Any) -> None:
    (policy,) = by_kind("NetworkPolicy").values()
    selected = policy["spec"]["podSelector"]["matchLabels"]
    for r_service in stack.services:
        pod_labels = by_kind("Deployment")[r_service.name]["spec"]["template"]["metadata"]["labels"]
        assert selected.items() <= pod_labels.items(), r_service.name
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "airflow"}


def pod_containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    pod = deployment["spec"]["template"]["spec"]
    return pod.get("initContainers", []) + pod["containers"]


def test_every_container_runs_as_non_root_on_a_read_only_root(stack: Any) -> None:
    for r_service in stack.services:
        deployment = by_kind("Deployment")[r_service.name]
        pod = deployment["spec"]["template"]["spec"]
        for item in pod_containers(deployment):
            context = {**pod["securityContext"], **item.get("securityContext", {})}
            where = f"{r_service.name}/{item['name']}"
            assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, where
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["readOnlyRootFilesystem"] is True, where


def test_only_tmp_and_the_model_dir_are_writable(stack: Any, r_image_env: dict[str, dict[str, str]]) -> None:
    for r_service in stack.services:
        pod = by_kind("Deployment")[r_service.name]["spec"]["template"]["spec"]
        main = container(by_kind("Deployment")[r_service.name])
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in main["volumeMounts"]}
        model_dir = r_image_env[r_service.name]["MODEL_DIR"]
        assert set(mounts) == {model_dir, "/tmp"}, r_service.name
        assert "emptyDir" in mounts["/tmp"] and mounts["/tmp"]["emptyDir"].get("sizeLimit"), r_service.name
        assert env_var(main, "TMPDIR")["value"] == "/tmp", "R's tempdir() must be on the writable volume"


def test_each_r_service_scales_with_an_autoscaler_within_its_disruption_budget(stack: Any) -> None:
    autoscalers = by_kind("HorizontalPodAutoscaler")
    assert set(autoscalers) == {s.name for s in stack.services}
    for r_service in stack.services:
        deployment = by_kind("Deployment")[r_service.name]
        spec = autoscalers[r_service.name]["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": r_service.name}
        assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
        # minAvailable 1 of the budget must leave a pod to evict: at least 2 replicas.
        assert 2 <= spec["minReplicas"] < spec["maxReplicas"] <= 10, r_service.name
        (metric,) = spec["metrics"]
        assert metric["resource"]["name"] == "cpu" and 50 <= metric["resource"]["target"]["averageUtilization"] <= 90
        assert "cpu" in container(deployment)["resources"]["requests"], "CPU utilisation needs a CPU request"


def test_shipped_crd_schemas_are_the_served_v1_of_external_secrets() -> None:
    note = (SCHEMA_DIR / "README.md").read_text()
    assert "external-secrets/external-secrets" in note and "v2.9.0" in note
    for kind in ("ExternalSecret", "ClusterSecretStore"):
        schema = json.loads((SCHEMA_DIR / f"{kind.lower()}-external-secrets.io-v1.json").read_text())
        assert {"spec", "status", "apiVersion", "kind"} <= set(schema["properties"]), kind
    guide = (PROJECT_ROOT / "docs" / "deployment.md").read_text()
    assert re.search(r"external-secrets/external-secrets --version 2\.9\.0", guide), (
        "chart pinned to the schemas' release"
    )
