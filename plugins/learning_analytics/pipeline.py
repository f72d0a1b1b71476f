"""The extract -> fit -> persist machinery shared by the four model DAGs.

A model is described by a :class:`ModelPipeline` subclass (what to read, how to
call its R service, what to write); :func:`build_model_dag` turns it into a DAG:

``extract``
    reads the lookback window from the warehouse (aggregation in SQL), splits it
    into shards of bounded size and stages each shard as a Parquet file. It returns
    only the shard URIs (or the reason the run has too little data to fit).
``fit`` (mapped, one task instance per shard)
    sends one shard to the R service through :class:`RServiceHook` and stages the
    answer as JSON. More Airflow workers and more service replicas fit more shards
    at once; a failed shard is retried alone.
``persist``
    reads every shard's answer and writes all of the run's rows in ONE transaction,
    replacing whatever an earlier run of the same logical date wrote.
"""

from __future__ import annotations

import logging
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

import pandas as pd
from airflow.sdk import dag, get_current_context, task
from airflow.sdk.definitions.dag import DAG

from learning_analytics.alerts import failure_notifiers
from learning_analytics.k8s import FIT_EXECUTOR_CONFIG, WAREHOUSE_EXECUTOR_CONFIG
from learning_analytics.quality import RUN_DATE_XCOM_KEY, TableGate, gate_tasks, gates_doc
from learning_analytics.r_service import RServiceHook
from learning_analytics.settings import ModelSettings
from learning_analytics.staging import RunStaging, read_frame, read_json
from learning_analytics.warehouse import Warehouse, WarehouseTransaction
from learning_analytics.windows import RunWindow, run_date_from_context

log = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=ModelSettings)

#: Every DAG of the package is owned by this team and starts on this date.
OWNER = "learning-analytics"
#: XCom key of the extract's outcome (skip reason, summary) next to its shard list.
EXTRACT_OUTCOME_KEY = "extract_outcome"
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)


def default_task_args() -> dict[str, Any]:
    """Retries for every task; ``LA_TASK_RETRIES`` / ``LA_RETRY_DELAY_SECONDS`` override.

    Retries cover a service restart or a database failover; the R-service hook also
    retries connection errors, 429 and 5xx within one try. A task that fails after its
    last retry alerts through the notifiers ``LA_ALERT_*`` turn on
    (:mod:`learning_analytics.alerts`).
    """
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": int(os.environ.get("LA_TASK_RETRIES", "2")),
        "retry_delay": timedelta(seconds=float(os.environ.get("LA_RETRY_DELAY_SECONDS", "300"))),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
    }
    notifiers = failure_notifiers()
    if notifiers:
        args["on_failure_callback"] = notifiers
    return args


def standard_dag_args(settings_cls: type[ModelSettings], *, tags: Sequence[str], doc_md: str) -> dict[str, Any]:
    """``@dag(...)`` arguments every DAG of the package shares, from its settings class.

    dag_id and schedule come from the settings class (one place, checked against the
    spec by the DAG-integrity test); the trigger form shows every setting as a Param.
    """
    return {
        "dag_id": settings_cls.dag_id,
        "schedule": settings_cls.schedule,
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "dagrun_timeout": timedelta(hours=6),
        "params": settings_cls.params(),
        "tags": list(tags),
        "doc_md": doc_md,
        "default_args": default_task_args(),
    }


@dataclass
class Extracted:
    """What ``extract`` produced: shards to fit, or why there is nothing to fit."""

    shards: list[pd.DataFrame] = field(default_factory=list)
    skip_reason: str | None = None
    #: Small facts about the extract, recorded by ``persist`` (e.g. sizes).
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext(Generic[SettingsT]):
    """What every step of a run knows: its window and its settings."""

    window: RunWindow
    settings: SettingsT
    dag_id: str
    run_id: str


class ModelPipeline(ABC, Generic[SettingsT]):
    """One model: subclasses say what to read, how to fit, what to write."""

    settings_cls: ClassVar[type[ModelSettings]]
    #: Airflow connection of the model's R service.
    service_conn_id: ClassVar[str]
    #: The service's fit endpoint, e.g. ``"growth/fit"``.
    fit_endpoint: ClassVar[str]
    tags: ClassVar[tuple[str, ...]]
    #: Markdown shown on the DAG page of the Airflow UI.
    doc_md: ClassVar[str]
    #: Seconds one fit request may take before the hook gives up on it.
    fit_timeout_s: ClassVar[float] = 1800.0
    #: Checks on the rows ``persist`` wrote (:mod:`learning_analytics.quality`).
    quality_checks: ClassVar[tuple[TableGate, ...]] = ()

    @abstractmethod
    def window(self, run_date: date, settings: SettingsT) -> RunWindow:
        """The dates this run reads, computed from its logical date."""

    @abstractmethod
    def extract(self, warehouse: Warehouse, run: RunContext[SettingsT]) -> Extracted:
        """Read the window (aggregating in SQL) and split it into shards."""

    @abstractmethod
    def fit_request(self, shard: pd.DataFrame, shard_index: int, run: RunContext[SettingsT]) -> dict[str, Any]:
        """The JSON body sent to ``fit_endpoint`` for one shard."""

    @abstractmethod
    def fit_result(
        self,
        service: RServiceHook,
        fit: dict[str, Any],
        shard: pd.DataFrame,
        shard_index: int,
        run: RunContext[SettingsT],
    ) -> dict[str, Any]:
        """What ``persist`` gets for one shard: the service's fit answer ``fit`` turned into
        a JSON-able result (synchronous follow-up calls such as predict happen here)."""

    @abstractmethod
    def persist(
        self,
        tx: WarehouseTransaction,
        results: Sequence[dict[str, Any]],
        extracted: dict[str, Any],
        run: RunContext[SettingsT],
    ) -> dict[str, Any]:
        """Write the run's rows inside ``tx``; return a small summary (row counts).

        ``results`` holds one ``fit_result`` per shard (empty when the run was
        skipped); ``extracted`` is ``{"skip_reason": ..., "summary": ...}`` of extract.
        """

    # -- helpers shared by the tasks -------------------------------------------------

    def run_context(self, context: dict[str, Any]) -> RunContext[SettingsT]:
        settings = self.settings_cls.from_params(context["params"])
        window = self.window(run_date_from_context(context), settings)  # type: ignore[arg-type]
        return RunContext(window=window, settings=settings, dag_id=context["dag"].dag_id, run_id=context["run_id"])  # type: ignore[arg-type]

    def fit_shard(
        self, service: RServiceHook, shard: pd.DataFrame, shard_index: int, run: RunContext[SettingsT]
    ) -> dict[str, Any]:
        """Fit one shard on the service and return its ``fit_result``."""
        fit = service.call(self.fit_endpoint, self.fit_request(shard, shard_index, run))
        return self.fit_result(service, fit, shard, shard_index, run)

    def service(self) -> RServiceHook:
        return RServiceHook(self.service_conn_id, timeout_s=self.fit_timeout_s)


def column_table(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """A frame as the services' column-oriented JSON table (NaN -> null, dates ISO)."""
    table: dict[str, list[Any]] = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            values = [None if pd.isna(value) else value.date().isoformat() for value in column]
        else:
            values = [
                None if value is None or (isinstance(value, float) and math.isnan(value))
                else value.isoformat() if isinstance(value, date)
                else value
                for value in column.astype(object).tolist()
            ]  # fmt: skip
        table[str(name)] = values
    return table


def frame_from_columns(table: dict[str, Any]) -> pd.DataFrame:
    """A column-oriented JSON table from a service as a frame (scalars become 1-row columns)."""
    return pd.DataFrame({name: values if isinstance(values, list) else [values] for name, values in table.items()})


def chunk_by_key(frame: pd.DataFrame, key: str, max_keys: int) -> list[pd.DataFrame]:
    """Split ``frame`` into parts holding at most ``max_keys`` distinct ``key`` values.

    Keys are spread round-robin in sorted order, so parts are balanced and a key's
    rows never straddle two parts; the same data always gives the same parts.
    """
    if frame.empty:
        return []
    keys = pd.Series(sorted(frame[key].unique()))
    n_parts = -(-len(keys) // max_keys)
    part_of_key = pd.Series(range(len(keys)), index=keys) % n_parts
    part = frame[key].map(part_of_key)
    return [frame[part == index].reset_index(drop=True) for index in range(n_parts)]


def build_model_dag(pipeline: ModelPipeline[Any]) -> DAG:
    """The DAG of ``pipeline``: ``extract >> fit.expand(shards) >> persist >> quality gates``."""
    doc_md = pipeline.doc_md + gates_doc(pipeline.quality_checks)

    @dag(**standard_dag_args(pipeline.settings_cls, tags=pipeline.tags, doc_md=doc_md))
    def model_dag() -> None:
        @task(
            execution_timeout=timedelta(minutes=30),
            executor_config=WAREHOUSE_EXECUTOR_CONFIG,
            doc_md="Reads the lookback window from the warehouse, splits it into shards and stages "
            "them; returns only their URIs. Logs why a run with too little data is skipped.",
        )
        def extract() -> list[dict[str, Any]]:
            context = get_current_context()
            run = pipeline.run_context(context)
            log.info(
                "window %s .. %s (exclusive), settings %s", run.window.start, run.window.end, run.settings.as_dict()
            )
            extracted = pipeline.extract(Warehouse(), run)
            staging = RunStaging(run.dag_id, run.run_id)
            shards = [
                {"shard_uri": staging.write_frame(f"shard-{index:04d}", shard), "shard_index": index}
                for index, shard in enumerate(extracted.shards)
            ]
            if extracted.skip_reason:
                log.warning("skipping the fit: %s", extracted.skip_reason)
            else:
                log.info("staged %s shard(s): %s", len(shards), extracted.summary)
            # The mapped fit needs the shard list as the return value; the rest of the
            # extract's outcome travels under its own (small) key for persist.
            context["ti"].xcom_push(
                key=EXTRACT_OUTCOME_KEY, value={"skip_reason": extracted.skip_reason, "summary": extracted.summary}
            )
            return shards

        @task(
            execution_timeout=timedelta(seconds=pipeline.fit_timeout_s * 2),
            executor_config=FIT_EXECUTOR_CONFIG,
            doc_md="Fits one shard on the model's R service (bearer token from the connection, "
            "retries on connection errors, 429 and 5xx) and stages the answer.",
        )
        def fit(shard_uri: str, shard_index: int) -> str:
            context = get_current_context()
            run = pipeline.run_context(context)
            shard = read_frame(shard_uri)
            started = time.monotonic()
            log.info("shard %s: %s rows", shard_index, len(shard))
            result = pipeline.fit_shard(pipeline.service(), shard, shard_index, run)
            log.info("shard %s: fitted in %.1f s", shard_index, time.monotonic() - started)
            return RunStaging(run.dag_id, run.run_id).write_json(f"fit-{shard_index:04d}", result)

        @task(
            trigger_rule="none_failed",
            # Concurrent runs (a backfill) persist one at a time: growth and survival
            # also update weekly_kpi rows that overlapping runs share.
            max_active_tis_per_dag=1,
            executor_config=WAREHOUSE_EXECUTOR_CONFIG,
            execution_timeout=timedelta(minutes=30),
            doc_md="Writes every output table of the run in one transaction, replacing the rows "
            "of earlier runs of the same logical date; nothing is written if anything fails.",
        )
        def persist(result_uris: Sequence[str] | None) -> dict[str, Any]:
            context = get_current_context()
            run = pipeline.run_context(context)
            outcome = context["ti"].xcom_pull(task_ids="extract", key=EXTRACT_OUTCOME_KEY)
            results = [read_json(uri) for uri in (result_uris or []) if uri]
            with Warehouse().transaction() as tx:
                written = pipeline.persist(tx, results, outcome, run)
            log.info("run %s committed: %s", run.window.run_date, written)
            context["ti"].xcom_push(key=RUN_DATE_XCOM_KEY, value=run.window.run_date.isoformat())
            return written

        shards = extract()
        persisted = persist(fit.expand_kwargs(shards))
        persisted >> gate_tasks(pipeline.quality_checks)

    return model_dag()
