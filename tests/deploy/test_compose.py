"""docker-compose.yaml: valid for Compose, complete, and consistent with the local stack.

No Docker engine runs on CI machines, so the file is validated statically. Every
structural check runs twice: on the output of ``docker-compose config`` (Debian's
Compose v1, which validates the schema, resolves anchors and substitutes ``.env.example``)
and on a plain PyYAML parse with the same substitution, so the checks still run where
the binary is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
COMPOSE_BIN = shutil.which("docker-compose")

AIRFLOW_SERVICES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
ONE_SHOT_JOBS = ("airflow-init", "warehouse-init")
#: R services listen here inside their containers (r-services/*/Dockerfile: PORT=8000).
R_CONTAINER_PORT = 8000

_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_]\w*)|(?P<escaped>\$))")
_SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|FERNET", re.IGNORECASE)


class MissingVariable(Exception):
    """A ``${VAR:?message}`` reference to an unset variable."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution (``$$``, ``$VAR``, ``${VAR}``, ``:-``, ``-``, ``:?``, ``?``)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            return env.get(match.group("named"), "")
        name, operator, argument = re.fullmatch(r"(\w+)(:?[-?])?(.*)", match.group("braced"), re.DOTALL).groups()  # type: ignore[union-attr]
        current = env.get(name)
        unset = current is None or (operator is not None and operator.startswith(":") and current == "")
        if operator in (":-", "-"):
            return argument if unset else str(current)
        if operator in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {argument}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def compose_config(method: str, env_file: Path) -> dict[str, Any]:
    """The resolved compose model, by ``docker-compose config`` or by PyYAML."""
    env = {}
    for line in env_file.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    if method == "pyyaml":
        raw = yaml.safe_load(COMPOSE_FILE.read_text())
        return interpolate(raw, env)
    # A scrubbed environment: the shell's variables (e.g. the local stack's real tokens
    # exported by .local/stack.env) would take precedence over the env file.
    result = subprocess.run(
        [COMPOSE_BIN, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent)},
        cwd=PROJECT_ROOT,
    )
    if result.returncode != 0:
        raise MissingVariable(result.stderr.strip())
    return yaml.safe_load(result.stdout)


def _require(method: str) -> None:
    if method == "docker-compose" and COMPOSE_BIN is None:
        pytest.skip("docker-compose (Debian package docker-compose) is not installed; the PyYAML variant still runs")


@pytest.fixture(scope="module", params=["docker-compose", "pyyaml"])
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    _require(request.param)
    return compose_config(request.param, ENV_EXAMPLE)


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """``(host, container)`` pairs, from short (``"8101:8000"``) or long syntax."""
    pairs = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.add((int(port["published"]), int(port["target"])))
        else:
            host, _, container = str(port).rpartition(":")
            pairs.add((int(host), int(container)))
    return pairs


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def mount_targets(service: dict[str, Any]) -> set[str]:
    targets = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            targets.add(volume["target"])
        else:
            targets.add(volume.split(":")[1])
    return targets


def test_docker_compose_accepts_the_file() -> None:
    _require("docker-compose")
    config = compose_config("docker-compose", ENV_EXAMPLE)
    assert config["services"], "docker-compose config printed no services"


@pytest.mark.parametrize("method", ["docker-compose", "pyyaml"])
def test_missing_secrets_stop_compose_with_the_variable_named(method: str, tmp_path: Path) -> None:
    _require(method)
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    with pytest.raises(MissingVariable, match=r"AIRFLOW_JWT_SECRET|LA_DB_PASSWORD|R_\w+_TOKEN|POSTGRES_PASSWORD"):
        compose_config(method, env_file)


def test_every_component_is_defined(compose: dict[str, Any], stack: Any) -> None:
    expected = {"postgres", *AIRFLOW_SERVICES, *ONE_SHOT_JOBS, *(s.name for s in stack.services)}
    assert set(services(compose)) == expected


def test_r_services_match_the_local_stack_and_their_images(
    compose: dict[str, Any], stack: Any, env_example: dict[str, str], r_image_env: dict[str, dict[str, str]]
) -> None:
    for r_service in stack.services:
        service = services(compose)[r_service.name]
        image_env = r_image_env[r_service.name]
        env = environment(service)
        assert published_ports(service) == {(r_service.host_port, R_CONTAINER_PORT)}, r_service.name
        assert int(image_env["PORT"]) == R_CONTAINER_PORT and env["PORT"] == str(R_CONTAINER_PORT)
        assert env["HOST"] == "0.0.0.0"
        assert env["R_SERVICE_TOKEN"] == env_example[r_service.token_var], f"{r_service.name} token variable"
        assert env["MODEL_DIR"] == image_env["MODEL_DIR"] and env["MODEL_DIR"] in mount_targets(service)
        assert Path(service["build"]["dockerfile"]).as_posix().endswith(f"r-services/{r_service.name}/Dockerfile")
        check = healthcheck_command(service)
        assert f"127.0.0.1:{R_CONTAINER_PORT}/health" in check, f"{r_service.name} healthcheck: {check}"


def test_airflow_components_share_one_image_and_configuration(compose: dict[str, Any]) -> None:
    airflow = {name: services(compose)[name] for name in (*AIRFLOW_SERVICES, *ONE_SHOT_JOBS)}
    assert len({service["image"] for service in airflow.values()}) == 1
    assert all(Path(s["build"]["dockerfile"]).name == "Dockerfile.airflow" for s in airflow.values())
    shared_keys = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__FERNET_KEY")
    for key in shared_keys:
        assert len({environment(service)[key] for service in airflow.values()}) == 1, key
    env = environment(airflow["airflow-scheduler"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-api-server:8080/execution/"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
    commands = {name: " ".join(airflow[name]["command"]) for name in AIRFLOW_SERVICES}
    assert commands == {
        "airflow-api-server": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }
    assert published_ports(airflow["airflow-api-server"]) == {(8080, 8080)}
    assert "8080/api/v2/version" in healthcheck_command(airflow["airflow-api-server"])


def test_connections_are_the_stack_ids_pointing_at_compose_services(
    compose: dict[str, Any], stack: Any, env_example: dict[str, str]
) -> None:
    env = environment(services(compose)["airflow-scheduler"])
    conn_vars = {
        key.removeprefix("AIRFLOW_CONN_").lower(): value
        for key, value in env.items()
        if key.startswith("AIRFLOW_CONN_")
    }
    assert set(conn_vars) == stack.conn_ids
    for r_service in stack.services:
        conn = json.loads(conn_vars[r_service.conn_id])
        assert conn["conn_type"] == "http" and "login" not in conn
        assert (conn["host"], conn["port"], conn["schema"]) == (r_service.name, R_CONTAINER_PORT, "http")
        assert conn["password"] == env_example[r_service.token_var]
    warehouse = json.loads(conn_vars["analytics_db"])
    assert (warehouse["host"], warehouse["port"], warehouse["login"], warehouse["schema"]) == (
        "postgres",
        5432,
        "analytics",
        "analytics",
    )
    assert warehouse["password"] == env_example["LA_DB_PASSWORD"]


def test_start_order_waits_for_migrations_data_and_healthy_services(compose: dict[str, Any], stack: Any) -> None:
    svc = services(compose)
    for name in AIRFLOW_SERVICES:
        assert svc[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", name
        assert svc[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name
    scheduler_deps = svc["airflow-scheduler"]["depends_on"]
    assert scheduler_deps["warehouse-init"]["condition"] == "service_completed_successfully"
    for r_service in stack.services:
        assert scheduler_deps[r_service.name]["condition"] == "service_healthy"
    assert " ".join(svc["airflow-init"]["command"]) == "db migrate"


def test_warehouse_job_migrates_and_loads_synthetic_data(compose: dict[str, Any]) -> None:
    job = services(compose)["warehouse-init"]
    script = " ".join(job["command"])
    assert "python -m learning_analytics.migrations" in script
    # The DSN carries the password: from the environment, never on a command line.
    assert "--dsn" not in script
    assert "python -m learning_analytics.synthetic --students" in script
    env = environment(job)
    assert (env["LA_SYNTHETIC_STUDENTS"], env["LA_SYNTHETIC_WEEKS"], env["LA_SYNTHETIC_SEED"]) == ("500", "16", "42")
    assert env["ANALYTICS_DB_URI"].endswith("@postgres:5432/analytics")
    assert job.get("restart", "no") == "no"


def test_postgres_init_creates_the_stack_role_and_databases(compose: dict[str, Any]) -> None:
    postgres = services(compose)["postgres"]
    assert "/docker-entrypoint-initdb.d" in mount_targets(postgres)
    env = environment(postgres)
    assert (env["LA_DB_NAME"], env["LA_AIRFLOW_DB_NAME"]) == ("analytics", "airflow")
    assert "pg_isready" in healthcheck_command(postgres)
    script = (PROJECT_ROOT / "deploy" / "compose" / "initdb" / "10-learning-analytics.sh").read_text()
    assert "CREATE ROLE analytics LOGIN" in script
    assert 'CREATE DATABASE :"warehouse_db" OWNER analytics' in script
    assert 'CREATE DATABASE :"airflow_db" OWNER analytics' in script
    assert os.access(PROJECT_ROOT / "deploy" / "compose" / "initdb" / "10-learning-analytics.sh", os.X_OK)


def test_secret_values_come_from_the_env_file_only() -> None:
    """Every token/password in the compose file is a ``${...}`` reference, never a literal."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    literals = []
    for name, service in raw["services"].items():
        for key, value in environment(service).items():
            if key.startswith("AIRFLOW_CONN_"):
                password = re.search(r'"password": "([^"]*)"', value)
                if password and not password.group(1).startswith("${"):
                    literals.append(f"{name}.{key}")
            elif _SECRET_NAME.search(key) and value and not re.fullmatch(r"\$\{[^}]+\}", value):
                literals.append(f"{name}.{key}")
    assert literals == []


def test_env_example_defines_every_variable_and_only_placeholders(env_example: dict[str, str]) -> None:
    required = set(re.findall(r"\$\{(\w+):?\?", COMPOSE_FILE.read_text()))
    assert required <= set(env_example), f"missing in .env.example: {sorted(required - set(env_example))}"
    for key, value in env_example.items():
        if _SECRET_NAME.search(key):
            assert value == "" or value.startswith("change-me"), f".env.example {key} must be a change-me placeholder"
