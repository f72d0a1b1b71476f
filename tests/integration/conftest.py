"""Every integration module runs on a warehouse database of its own (see tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def module_warehouse(warehouse_uri: str) -> str:
    """Set up first in each module (autouse), so that every fixture and server of the
    module already sees its own database in ``ANALYTICS_DB_URI`` / ``AIRFLOW_CONN_ANALYTICS_DB``."""
    return warehouse_uri
