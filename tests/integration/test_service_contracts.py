"""Schemathesis against each real R service: its /openapi.json (built from the service's
schemas.json) must hold for whatever the fuzzer sends.

Each service runs as its own instance for the run (``r-services/run-service``, a
temporary model and job directory, one worker and no job queue), so fits that fuzzed
bodies may start are bounded (one at a time, 429 beyond) and stop with the instance:
the shared stack's services are not loaded. Checks: ``not_a_server_error`` (no 5xx for
any body; valid JSON never produces a 500) and ``response_schema_conformance`` (every
documented answer matches its schema). Bounded examples per operation and a fixed seed
keep the run to about a minute per service.

Negative control: the same run against a document whose Error schema demands a field
the services never send must fail, so a passing run means the responses were checked.
"""

from __future__ import annotations

import copy
import json
import os
import random
import secrets
import subprocess
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from la_testing import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(os.environ.get("VIRTUAL_ENV", "")) / "bin" / "schemathesis"
#: Fuzzed examples per operation (schemathesis adds coverage and stateful cases).
MAX_EXAMPLES = 20
SERVICES = ["r-brms-plumber", "r-forecast-plumber", "r-cluster-plumber"]


def schemathesis_command() -> list[str]:
    if SCHEMATHESIS.exists():
        return [str(SCHEMATHESIS)]
    return ["schemathesis"]


class ServiceInstance:
    """An R service of this checkout on a free port, with its own token and model dir."""

    #: The port is free when chosen but another process may take it before the service
    #: binds it; the service then exits at once and is started again on another port.
    PORT_ATTEMPTS = 3

    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.token = secrets.token_hex(16)
        self.log_path = tmp / "service.log"
        self.env = {
            **os.environ,
            "R_SERVICE_TOKEN": self.token,
            "MODEL_DIR": str(tmp / "models"),
            "R_WORKERS": "1",
            "JOB_QUEUE_MAX": "0",
            # The stack's compiled Stan models (compiling anew takes minutes).
            "BRMS_TEMPLATE_DIR": str(PROJECT_ROOT / ".local" / "models" / "r-brms-plumber" / "brms-templates"),
        }
        for _ in range(self.PORT_ATTEMPTS):
            if self.start_on(free_port()):
                return
        pytest.fail(f"{name}: every port tried was taken; log: {self.log_path}")

    def start_on(self, port: int) -> bool:
        """Start the service on ``port`` and wait for its /health; False if the port was taken."""
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [str(PROJECT_ROOT / "r-services" / "run-service"), self.name, str(port)],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while True:
            try:
                health = requests.get(f"{self.url}/health", timeout=2)
                # The service's name tells our process from another server on the port.
                if health.status_code == 200 and health.json().get("service") == self.name:
                    return True
            except (requests.ConnectionError, requests.Timeout, ValueError):
                pass
            if self.process.poll() is not None:
                self.log.close()
                if "Failed to create server" in self.log_path.read_text():
                    return False
                pytest.fail(f"{self.name} exited at start; log: {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.name} did not start; log: {self.log_path}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)  # the service and its workers: its own session
            self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module", params=SERVICES)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceInstance]:
    instance = ServiceInstance(request.param, tmp_path_factory.mktemp(request.param))
    yield instance
    instance.stop()


def run_schemathesis(service: ServiceInstance, schema: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    config = tmp / "schemathesis.toml"
    # httpuv drops the connection on unknown HTTP methods (QUERY, TRACE): a transport
    # detail, not an answer; the coverage phase tries only methods HTTP clients send.
    config.write_text('[phases.coverage]\nunexpected-methods = ["PUT", "PATCH"]\n')
    return subprocess.run(
        [
            *schemathesis_command(),
            "--config-file",
            str(config),
            "run",
            schema,
            "--url",
            service.url,
            "-H",
            f"Authorization: Bearer {service.token}",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "1",
            "--no-shrink",
            "--request-timeout",
            "60",
        ],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_openapi_marks_health_and_openapi_open(service: ServiceInstance) -> None:
    spec = requests.get(f"{service.url}/openapi.json", timeout=10).json()
    assert spec["paths"]["/health"]["get"]["security"] == []
    assert spec["paths"]["/openapi.json"]["get"]["security"] == []
    assert spec["security"] == [{"bearerAuth": []}]
    fits = [path for path in spec["paths"] if path.endswith("/fit")]
    assert fits, "every service has a fit endpoint"
    for path in fits:
        operation = spec["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].startswith(
            "#/components/schemas/"
        )
        assert {"202", "400", "429"} <= set(operation["responses"])


def test_fuzzing_finds_no_server_error_and_no_response_off_schema(service: ServiceInstance, tmp_path: Path) -> None:
    result = run_schemathesis(service, f"{service.url}/openapi.json", tmp_path)
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis.log").write_text(output)
    assert result.returncode == 0, output[-6000:]
    assert " passed" in output


# One negative control is enough: the check is the same for every service.
@pytest.mark.parametrize("service", ["r-cluster-plumber"], indirect=True)
def test_negative_control_a_wrong_error_schema_fails(service: ServiceInstance, tmp_path: Path) -> None:
    spec = requests.get(f"{service.url}/openapi.json", timeout=10).json()
    spec["components"]["schemas"]["Error"]["required"] = ["error", "field_never_sent"]
    wrong = tmp_path / "wrong-openapi.json"
    wrong.write_text(json.dumps(spec))
    result = run_schemathesis(service, str(wrong), tmp_path)
    assert result.returncode != 0
    assert "field_never_sent" in result.stdout + result.stderr


def json_schema(openapi: dict[str, Any], name: str) -> dict[str, Any]:
    """Component ``name`` as a standalone JSON Schema (OpenAPI 3.0 ``nullable`` -> type null)."""

    def convert(node: Any) -> Any:
        if isinstance(node, dict):
            node = {key: convert(value) for key, value in node.items()}
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
            if node.get("exclusiveMinimum") is True:
                node["exclusiveMinimum"] = node.pop("minimum")
            if "$ref" in node:
                node["$ref"] = node["$ref"].replace("#/components/schemas/", "#/$defs/")
            return node
        if isinstance(node, list):
            return [convert(item) for item in node]
        return node

    definitions = convert(copy.deepcopy(openapi["components"]["schemas"]))
    return {"$defs": definitions, "$ref": f"#/$defs/{name}"}


def real_requests() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """One small valid fit per fit endpoint (and the predict that follows it)."""
    rng = random.Random(1)
    users, weeks = range(1, 11), range(6)
    growth = {
        "data": {
            "user_id": [u for u in users for _ in weeks],
            "week": [w for _ in users for w in weeks],
            "accuracy": [min(1.0, max(0.0, 0.5 + 0.02 * w + rng.gauss(0, 0.05))) for _ in users for w in weeks],
        },
        "iter": 300,
        "chains": 1,
    }
    days = [(date(2026, 1, 5) + timedelta(weeks=i)).isoformat() for i in range(12)]
    prophet = {"series": {"series_id": [1] * 12 + [2] * 12, "ds": days * 2, "y": [rng.random() for _ in range(24)]}}
    survival = {
        "data": {
            "user_id": list(range(40)),
            "time": [rng.randint(1, 60) for _ in range(40)],
            "event": [i % 2 for i in range(40)],
            "x": [rng.random() for _ in range(40)],
        },
        "covariates": ["x"],
    }
    cluster = {
        "data": {
            "user_id": list(range(30)),
            "a": [rng.random() for _ in range(30)],
            "b": [rng.random() for _ in range(30)],
        },
        "features": ["a", "b"],
    }
    return {
        "r-brms-plumber": [("/growth/fit", growth)],
        "r-forecast-plumber": [("/prophet/fit", prophet), ("/survival/fit", survival)],
        "r-cluster-plumber": [("/cluster/fit", cluster)],
    }


def test_real_fit_jobs_match_the_documented_job_and_result_schemas(service: ServiceInstance) -> None:
    """The fuzzer rarely sends a body valid enough to fit; these do, and every answer on
    the way (accepted, polled job, result) must match the served document."""
    headers = {"Authorization": f"Bearer {service.token}"}
    openapi = requests.get(f"{service.url}/openapi.json", timeout=10).json()
    for path, body in real_requests()[service.name]:
        accepted = requests.post(f"{service.url}{path}", json=body, headers=headers, timeout=60)
        assert accepted.status_code == 202, accepted.text
        jsonschema.validate(accepted.json(), json_schema(openapi, "JobAccepted"))
        deadline = time.monotonic() + 300
        while True:
            job = requests.get(f"{service.url}{accepted.headers['Location']}", headers=headers, timeout=60).json()
            jsonschema.validate(job, json_schema(openapi, "Job"))
            if job["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert job["status"] == "succeeded", job
        contracts = json.loads((PROJECT_ROOT / "r-services" / service.name / "schemas.json").read_text())
        fit_schema = contracts["endpoints"][path]["post"]["job_result"]
        jsonschema.validate(job["result"], json_schema(openapi, fit_schema))
        wrong = copy.deepcopy(job["result"])
        wrong["model_id"] = 42  # negative control: the validation does look at the result
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, json_schema(openapi, fit_schema))
