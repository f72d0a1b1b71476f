"""Hand-off of data between the tasks of one run, outside XCom.

Each task writes what the next one needs under
``<LA_STAGING_BASE>/<dag_id>/<run_id>/`` and passes only the URI through XCom, so
XComs stay small and every task can be retried on its own (files are named
deterministically and overwritten by a retry). Staged files are kept for
debugging; retention is the store's job (a bucket lifecycle rule in production). ``LA_STAGING_BASE`` is a local
``file://`` directory in development and an object-store URI in production, e.g.
``gs://univprepai-airflow-staging`` (uses the ``google_cloud_default`` connection
through Airflow's object storage; set ``LA_STAGING_CONN_ID`` to use another).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pandas as pd
from airflow.sdk import ObjectStoragePath

STAGING_BASE_ENV = "LA_STAGING_BASE"
STAGING_CONN_ENV = "LA_STAGING_CONN_ID"
DEFAULT_STAGING_BASE = "file:///tmp/learning-analytics/staging"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _segment(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "run"


class RunStaging:
    """Staging area of one DAG run.

    :param dag_id: the DAG.
    :param run_id: the DAG run (made path-safe).
    :param base: base URI; defaults to ``$LA_STAGING_BASE``.
    """

    def __init__(self, dag_id: str, run_id: str, base: str | None = None) -> None:
        base = base or os.environ.get(STAGING_BASE_ENV, DEFAULT_STAGING_BASE)
        conn_id = os.environ.get(STAGING_CONN_ENV) or None
        self.root = ObjectStoragePath(base, conn_id=conn_id) / _segment(dag_id) / _segment(run_id)

    def _path(self, name: str) -> ObjectStoragePath:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_frame(self, name: str, frame: pd.DataFrame) -> str:
        """Store ``frame`` as ``<name>.parquet``; return its URI for XCom."""
        path = self._path(f"{name}.parquet")
        with path.open("wb") as handle:
            frame.to_parquet(handle, index=False)
        return str(path)

    def write_json(self, name: str, document: Any) -> str:
        """Store ``document`` as ``<name>.json``; return its URI for XCom."""
        path = self._path(f"{name}.json")
        with path.open("w") as handle:
            json.dump(document, handle)
        return str(path)


def read_frame(uri: str) -> pd.DataFrame:
    """Load a frame written by :meth:`RunStaging.write_frame`."""
    with ObjectStoragePath(uri, conn_id=os.environ.get(STAGING_CONN_ENV) or None).open("rb") as handle:
        return pd.read_parquet(handle)


def read_json(uri: str) -> Any:
    """Load a document written by :meth:`RunStaging.write_json`."""
    with ObjectStoragePath(uri, conn_id=os.environ.get(STAGING_CONN_ENV) or None).open("r") as handle:
        return json.load(handle)
