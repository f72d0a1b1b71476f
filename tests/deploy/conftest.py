"""Facts the deployment tests compare against: the local stack script, the R service
Dockerfiles and ``.env.example``. Parsed from the files themselves, so a change in one
place that is not made in the others fails a test instead of a deployment.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RService:
    """One R service as the local stack runs it."""

    name: str
    #: Host port in scripts/stack.sh (and docker-compose.yaml).
    host_port: int
    #: Variable holding its token in .local/secrets.env / .env.
    token_var: str

    @property
    def conn_id(self) -> str:
        """Airflow connection id: the service name without ``-plumber``."""
        return self.name.removesuffix("-plumber").replace("-", "_")

    @property
    def gcp_token_secret(self) -> str:
        """Its token's name in GCP Secret Manager (SPEC section 4)."""
        return f"{self.name.removesuffix('-plumber')}-internal-token"


@dataclass(frozen=True)
class Stack:
    """What scripts/stack.sh defines."""

    services: tuple[RService, ...]
    conn_ids: frozenset[str]


@pytest.fixture(scope="session")
def stack() -> Stack:
    text = (PROJECT_ROOT / "scripts" / "stack.sh").read_text()
    ports_decl = re.search(r"SERVICE_PORTS=\((.*?)\n\)", text, flags=re.DOTALL)
    assert ports_decl, "scripts/stack.sh no longer declares SERVICE_PORTS"
    # Each port is a setting with a default: [name]="${LA_..._PORT:-8101}".
    ports = {name: int(port) for name, port in re.findall(r"\[([\w-]+)\]=\"\$\{\w+:-(\d+)\}\"", ports_decl.group(1))}
    tokens = dict(re.findall(r'^\s*([\w-]+-plumber)\) echo "\$(\w+)"', text, flags=re.MULTILINE))
    assert ports and set(tokens) == set(ports), f"stack.sh services {sorted(ports)} vs tokens {sorted(tokens)}"
    conn_ids = frozenset(name.lower() for name in re.findall(r"export AIRFLOW_CONN_(\w+)=", text))
    services = tuple(RService(name, ports[name], tokens[name]) for name in sorted(ports))
    return Stack(services=services, conn_ids=conn_ids)


def dockerfile_env(path: Path) -> dict[str, str]:
    """``ENV`` settings of a Dockerfile (``KEY=VALUE`` form, line continuations joined)."""
    text = path.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                key, _, value = item.partition("=")
                env[key] = value
    return env


@pytest.fixture(scope="session")
def r_image_env(stack: Stack) -> dict[str, dict[str, str]]:
    """``ENV`` of each R service's Dockerfile, by service name."""
    return {s.name: dockerfile_env(PROJECT_ROOT / "r-services" / s.name / "Dockerfile") for s in stack.services}


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a dotenv-style file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            key, sep, value = stripped.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            values[key] = value
    return values


@pytest.fixture(scope="session")
def env_example() -> dict[str, str]:
    return read_env_file(PROJECT_ROOT / ".env.example")


@pytest.fixture(scope="session")
def airflow_gcp_env() -> dict[str, str]:
    """The production Airflow environment (deploy/airflow/airflow.env)."""
    return read_env_file(PROJECT_ROOT / "deploy" / "airflow" / "airflow.env")


@pytest.fixture(scope="session")
def airflow_image_env() -> dict[str, str]:
    """``ENV`` of Dockerfile.airflow."""
    return dockerfile_env(PROJECT_ROOT / "Dockerfile.airflow")
