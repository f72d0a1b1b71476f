"""The extract -> fit -> persist machinery shared by the four model DAGs.

A model is described by a :class:`ModelPipeline` subclass (what to read, how to
call its R service, what to write); :func:`build_model_dag` turns it into a DAG:

``extract``
    reads the lookback window from the warehouse (aggregation in SQL), splits it
    into shards of bounded size and stages each shard as a Parquet file. It returns
    only the shard URIs (or the reason the run has too little data to fit).
``fit`` (mapped, one task instance per shard)
    submits one shard to the R service as a fit job (:class:`RServiceHook`) and waits
    for it as a reschedule-mode sensor: between pokes the task holds no worker slot.
    Every poke re-submits under the same Idempotency-Key
    (``dag_id/run_id/task_id/map_index/<body digest>``), which re-attaches to the
    shard's job, so neither a poke nor a task retry ever starts a second fit; only a
    job that lost its worker (service restarted) is replaced by a new attempt. The
    finished fit goes through ``fit_result`` and is staged as JSON. More service
    replicas fit more shards at once; a failed shard is retried alone.
``prepare`` (only for pipelines with ``has_prepare_step``)
    one step between extract and the mapped fits that needs all shards, e.g. the
    stage-1 fit of a two-stage model; its small JSON result is staged for the fits
    and persist (:meth:`ModelPipeline.prepared`).
``persist``
    reads every shard's answer and writes all of the run's rows in ONE transaction,
    replacing whatever an earlier run of the same logical date wrote.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

import pandas as pd
from airflow.sdk import Context, PokeReturnValue, dag, get_current_context, task
from airflow.sdk.definitions.dag import DAG
from airflow.sdk.exceptions import AirflowFailException

from learning_analytics import catalog
from learning_analytics.alerts import failure_notifiers
from learning_analytics.k8s import FIT_EXECUTOR_CONFIG, WAREHOUSE_EXECUTOR_CONFIG
from learning_analytics.quality import RUN_DATE_XCOM_KEY, TableGate, gate_tasks, gates_doc
from learning_analytics.r_service import RServiceHook, RServiceUnavailableError, idempotency_key
from learning_analytics.settings import ModelSettings, platform_timezone
from learning_analytics.staging import RunStaging, read_frame, read_json
from learning_analytics.values import none_if_missing
from learning_analytics.warehouse import Warehouse, WarehouseTransaction
from learning_analytics.windows import RunWindow, run_date_from_context

log = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=ModelSettings)

#: Every DAG of the package is owned by this team and starts on this date.
OWNER = "learning-analytics"
#: Context key the fit task fills with its shard's label (``map_index_template``).
SHARD_LABEL_KEY = "shard_label"
#: XCom key of the extract's outcome (skip reason, summary) next to its shard list.
EXTRACT_OUTCOME_KEY = "extract_outcome"
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
#: Staged name of the prepare step's result.
PREPARED_NAME = "prepared.json"


def fit_poke_interval_s() -> float:
    """Seconds between two polls of a fit job (``LA_FIT_POKE_INTERVAL_S``, default 30)."""
    return float(os.environ.get("LA_FIT_POKE_INTERVAL_S", "30"))


def fit_wait_limit_s(pipeline: ModelPipeline[Any]) -> float:
    """Seconds a fit task waits for its job, counted from its first poke across
    reschedules (``LA_FIT_WAIT_LIMIT_S``; default twice the model's ``fit_timeout_s``).
    The task then cancels the job on the service and fails."""
    return float(os.environ.get("LA_FIT_WAIT_LIMIT_S", pipeline.fit_timeout_s * 2))


def default_task_args() -> dict[str, Any]:
    """Retries for every task; ``LA_TASK_RETRIES`` / ``LA_RETRY_DELAY_SECONDS`` override.

    Retries cover a database failover or a service that stays unreachable; the
    R-service hook also retries connection errors, 429, 502, 503 and 504 within one
    try. Bad input (4xx) and service bugs (500) fail at once, without retries.
    A task that fails after its last retry alerts through the notifiers ``LA_ALERT_*``
    turn on (:mod:`learning_analytics.alerts`).
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
    spec by the DAG-integrity test); the trigger form shows every setting as a Param;
    the one-line description (DAG list) comes from :mod:`learning_analytics.catalog`.
    An unknown ``LA_TIMEZONE`` fails here, when the DAG file is parsed.
    """
    platform_timezone()
    return {
        "dag_id": settings_cls.dag_id,
        "description": catalog.description(settings_cls.dag_id),
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
    #: How a mapped fit task is labelled in the UI: "<unit> 3: 200 <members>".
    shard_label_words: ClassVar[tuple[str, str]] = ("shard", "students")
    #: Seconds a fit job may take: ``fit_shard`` waits this long, the fit task's sensor
    #: gives up after twice this (counted from its first poke, across reschedules).
    fit_timeout_s: ClassVar[float] = 1800.0
    #: Checks on the rows ``persist`` wrote (:mod:`learning_analytics.quality`).
    quality_checks: ClassVar[tuple[TableGate, ...]] = ()
    #: Whether the DAG runs :meth:`prepare` between extract and the mapped fits.
    has_prepare_step: ClassVar[bool] = False

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

    def prepare(
        self, service: RServiceHook, shards: Sequence[pd.DataFrame], run: RunContext[SettingsT]
    ) -> dict[str, Any] | None:
        """Optional step before the mapped fits (``has_prepare_step``): sees every shard,
        returns a small JSON-able document that :meth:`prepared` gives the fits and persist."""
        return None

    def prepared(self, run: RunContext[SettingsT]) -> dict[str, Any] | None:
        """What :meth:`prepare` returned for this run (None if it returned nothing)."""
        path = RunStaging(run.dag_id, run.run_id).root / PREPARED_NAME
        return read_json(str(path)) if path.exists() else None

    # -- helpers shared by the tasks -------------------------------------------------

    def run_context(self, context: dict[str, Any]) -> RunContext[SettingsT]:
        settings = self.settings_cls.from_params(context["params"])
        window = self.window(run_date_from_context(context), settings)  # type: ignore[arg-type]
        return RunContext(window=window, settings=settings, dag_id=context["dag"].dag_id, run_id=context["run_id"])  # type: ignore[arg-type]

    def fit_shard(
        self, service: RServiceHook, shard: pd.DataFrame, shard_index: int, run: RunContext[SettingsT]
    ) -> dict[str, Any]:
        """Fit one shard on the service, waiting for its job, and return its ``fit_result``.

        Blocks the caller (benchmarks use it; the DAG's fit task polls instead). The key
        names the run and shard, so calling again after a timeout re-attaches to the job.
        """
        request = self.fit_request(shard, shard_index, run)
        key = idempotency_key(run.dag_id, run.run_id, "fit_shard", shard_index, request)
        fit = service.fit(self.fit_endpoint, request, idempotency_key=key, timeout_s=self.fit_timeout_s)
        return self.fit_result(service, fit, shard, shard_index, run)

    def poll_fit(
        self,
        service: RServiceHook,
        shard: pd.DataFrame,
        shard_index: int,
        run: RunContext[SettingsT],
        key_parts: tuple[str, str, str, int],
    ) -> dict[str, Any] | None:
        """One poke of the fit task: submit-or-reattach, then the ``fit_result`` once the job
        has succeeded (``None`` while it runs, while the service says it is busy (429/503)
        or after a job lost its worker: the next poke submits it again).

        :raises RServiceRequestError: the job failed on its input or a service bug (fails
            the task without retries).
        :raises requests.ConnectionError: the service stayed unreachable through the hook's
            attempts (the task fails and is retried; its retry re-attaches to the job).
        """
        try:
            job = self.submit_fit(service, shard, shard_index, run, key_parts)
            fit = service.job_result(service.job(job["job_id"]), self.fit_endpoint)
        except RServiceUnavailableError as err:
            log.warning("shard %s: %s; polling again later", shard_index, err)
            return None
        if fit is None:
            log.info("shard %s: job %s is %s", shard_index, job["job_id"], job["status"])
            return None
        return self.fit_result(service, fit, shard, shard_index, run)

    def submit_fit(
        self,
        service: RServiceHook,
        shard: pd.DataFrame,
        shard_index: int,
        run: RunContext[SettingsT],
        key_parts: tuple[str, str, str, int],
    ) -> dict[str, Any]:
        """Submit the shard's fit job, or re-attach to it: the Idempotency-Key names the
        task instance and the request, so every poke, retry and cancel finds one job."""
        request = self.fit_request(shard, shard_index, run)
        return service.submit(self.fit_endpoint, request, idempotency_key=idempotency_key(*key_parts, request))

    def cancel_fit(
        self,
        service: RServiceHook,
        shard: pd.DataFrame,
        shard_index: int,
        run: RunContext[SettingsT],
        key_parts: tuple[str, str, str, int],
    ) -> str:
        """Cancel the shard's fit job (found by its Idempotency-Key); returns its id."""
        job_id = self.submit_fit(service, shard, shard_index, run, key_parts)["job_id"]
        service.cancel(job_id)
        return job_id

    def shard_label(self, shard: pd.DataFrame, shard_index: int) -> str:
        """What a mapped fit task holds, shown as its map index in the UI."""
        unit, members = self.shard_label_words
        if "user_id" in shard.columns:
            return f"{unit} {shard_index}: {shard['user_id'].nunique()} {members}"
        return f"{unit} {shard_index}: {len(shard)} rows"

    def service(self) -> RServiceHook:
        # Submits and polls answer at once; the timeout bounds the synchronous
        # follow-up calls of fit_result (e.g. predict).
        return RServiceHook(self.service_conn_id, timeout_s=600.0)


def column_table(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """A frame as the services' column-oriented JSON table (missing -> null, dates ISO)."""
    table: dict[str, list[Any]] = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            values = [None if pd.isna(value) else value.date().isoformat() for value in column]
        else:
            values = [
                value.isoformat() if isinstance(value, date) else value
                for value in map(none_if_missing, column.astype(object).tolist())
            ]
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


# -- the steps of a model DAG's tasks (the factory below only wires them) -------------


def extract_step(pipeline: ModelPipeline[Any], context: Context) -> list[dict[str, Any]]:
    """``extract``: read the run's window, stage the shards; return their URIs."""
    run = pipeline.run_context(context)
    log.info("window %s .. %s (exclusive), settings %s", run.window.start, run.window.end, run.settings.as_dict())
    warehouse = Warehouse()
    warehouse.require_clock(run.window.timezone)
    extracted = pipeline.extract(warehouse, run)
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


def prepare_step(pipeline: ModelPipeline[Any], context: Context, staged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``prepare``: the model's step over every shard, staged; pass the shard list on."""
    run = pipeline.run_context(context)
    staging = RunStaging(run.dag_id, run.run_id)
    # Earlier tries of this run may have staged a result: never reuse it.
    (staging.root / PREPARED_NAME).unlink(missing_ok=True)
    if staged:
        document = pipeline.prepare(pipeline.service(), [read_frame(shard["shard_uri"]) for shard in staged], run)
        if document is not None:
            staging.write_json(PREPARED_NAME.removesuffix(".json"), document)
    return staged


def fit_poke(pipeline: ModelPipeline[Any], context: Context, shard_uri: str, shard_index: int) -> PokeReturnValue:
    """One poke of ``fit``: submit or re-attach to the shard's job; stage its result when
    done; cancel it and fail once it has outlived ``LA_FIT_WAIT_LIMIT_S``."""
    run = pipeline.run_context(context)
    ti = context["ti"]
    task_key = (ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
    shard = read_frame(shard_uri)
    context[SHARD_LABEL_KEY] = pipeline.shard_label(shard, shard_index)  # type: ignore[literal-required]
    result = pipeline.poll_fit(pipeline.service(), shard, shard_index, run, task_key)
    if result is None:
        first_poke = ti.get_first_reschedule_date(context)
        waited_s = (datetime.now(UTC) - first_poke).total_seconds() if first_poke else 0.0
        if waited_s + fit_poke_interval_s() > fit_wait_limit_s(pipeline):
            job_id = pipeline.cancel_fit(pipeline.service(), shard, shard_index, run, task_key)
            raise AirflowFailException(
                f"shard {shard_index}: the fit job {job_id} did not finish within "
                f"LA_FIT_WAIT_LIMIT_S={fit_wait_limit_s(pipeline):.0f} s; cancelled it on the service"
            )
        return PokeReturnValue(is_done=False)
    log.info("shard %s (%s rows): fitted", shard_index, len(shard))
    return PokeReturnValue(
        is_done=True, xcom_value=RunStaging(run.dag_id, run.run_id).write_json(f"fit-{shard_index:04d}", result)
    )


def persist_step(pipeline: ModelPipeline[Any], context: Context, result_uris: Sequence[str] | None) -> dict[str, Any]:
    """``persist``: every output table of the run in one transaction."""
    run = pipeline.run_context(context)
    outcome = context["ti"].xcom_pull(task_ids="extract", key=EXTRACT_OUTCOME_KEY)
    results = [read_json(uri) for uri in (result_uris or []) if uri]
    with Warehouse().transaction() as tx:
        written = pipeline.persist(tx, results, outcome, run)
    log.info("run %s committed: %s", run.window.run_date, written)
    context["ti"].xcom_push(key=RUN_DATE_XCOM_KEY, value=run.window.run_date.isoformat())
    return written


def build_model_dag(pipeline: ModelPipeline[Any]) -> DAG:
    """The DAG of ``pipeline``: ``extract >> [prepare >>] fit.expand(shards) >> persist >>
    quality gates``; each task runs its step function above."""
    doc_md = pipeline.doc_md + gates_doc(pipeline.quality_checks)

    @dag(**standard_dag_args(pipeline.settings_cls, tags=pipeline.tags, doc_md=doc_md))
    def model_dag() -> None:
        @task(
            execution_timeout=timedelta(minutes=30),
            executor_config=WAREHOUSE_EXECUTOR_CONFIG,
            inlets=catalog.inlets(pipeline.settings_cls.dag_id),
            doc_md="Reads the lookback window from the warehouse, splits it into shards and stages "
            "them; returns only their URIs. Logs why a run with too little data is skipped.",
        )
        def extract() -> list[dict[str, Any]]:
            return extract_step(pipeline, get_current_context())

        @task.sensor(
            mode="reschedule",
            poke_interval=fit_poke_interval_s(),
            # A margin over our own limit (fit_poke): the task cancels its job and fails
            # first, with a message; the sensor's own timeout would leave the job running.
            timeout=fit_wait_limit_s(pipeline) + 2 * fit_poke_interval_s(),
            execution_timeout=timedelta(minutes=20),
            executor_config=FIT_EXECUTOR_CONFIG,
            map_index_template="{{ shard_label }}",
            doc_md="Submits one shard to the model's R service as a fit job and polls it in "
            "reschedule mode (no worker slot held between polls). The Idempotency-Key "
            "re-attaches every poke and retry to the same job; a 4xx or a service error "
            "fails the task at once with the service's message. A job still unfinished "
            "after LA_FIT_WAIT_LIMIT_S is cancelled on the service and the task fails. "
            "Stages the result.",
        )
        def fit(shard_uri: str, shard_index: int) -> PokeReturnValue:
            return fit_poke(pipeline, get_current_context(), shard_uri, shard_index)

        @task(
            trigger_rule="none_failed",
            # Concurrent runs (a backfill) persist one at a time: growth and survival
            # also update weekly_kpi rows that overlapping runs share.
            max_active_tis_per_dag=1,
            executor_config=WAREHOUSE_EXECUTOR_CONFIG,
            outlets=catalog.outlets(pipeline.settings_cls.dag_id),
            execution_timeout=timedelta(minutes=30),
            doc_md="Writes every output table of the run in one transaction, replacing the rows "
            "of earlier runs of the same logical date; nothing is written if anything fails.",
        )
        def persist(result_uris: Sequence[str] | None) -> dict[str, Any]:
            return persist_step(pipeline, get_current_context(), result_uris)

        shards = extract()
        if pipeline.has_prepare_step:

            @task(
                execution_timeout=timedelta(seconds=pipeline.fit_timeout_s * 2),
                executor_config=FIT_EXECUTOR_CONFIG,
                doc_md="Runs the model's step that needs every shard before the mapped fits "
                "(see the DAG doc) and stages its result; passes the shard list on.",
            )
            def prepare(staged: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return prepare_step(pipeline, get_current_context(), staged)

            shards = prepare(shards)
        persisted = persist(fit.expand_kwargs(shards))
        persisted >> gate_tasks(pipeline.quality_checks)

    return model_dag()
