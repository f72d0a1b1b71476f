"""Dockerfile.airflow: the image runs the Airflow and Python that CI tests."""

from __future__ import annotations

import re
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (PROJECT_ROOT / "Dockerfile.airflow").read_text()


def test_base_image_is_the_official_image_of_the_pinned_airflow_and_ci_python() -> None:
    pinned = re.search(r"^apache-airflow==(\S+)$", (PROJECT_ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned
    (base,) = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.MULTILINE)
    # Official tags are <airflow version>-python<major.minor>, e.g. 3.3.2-python3.11.
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert base == f"apache/airflow:{pinned.group(1)}-python{python}"


def test_image_installs_requirements_and_ships_the_package(airflow_image_env: dict[str, str]) -> None:
    assert re.search(
        r'pip install .*"apache-airflow==\$\{AIRFLOW_VERSION\}" -r /opt/airflow/requirements.txt', DOCKERFILE
    )
    for directory in ("dags", "plugins", "include"):
        assert re.search(rf"^COPY .*\b{directory}/ /opt/airflow/{directory}/$", DOCKERFILE, re.MULTILINE), directory
    assert "/opt/airflow/plugins" in airflow_image_env["PYTHONPATH"].split(":")


def test_sql_files_are_found_where_the_image_puts_them() -> None:
    """paths.py looks two directories above plugins/learning_analytics: /opt/airflow/include/sql."""
    from learning_analytics import paths

    assert paths.SQL_DIR == paths.PROJECT_ROOT / "include" / "sql"
    assert Path(paths.__file__).resolve().parents[2] == paths.PROJECT_ROOT
