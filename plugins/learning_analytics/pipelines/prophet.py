"""Prophet: per-student forecast of the weekly learning index I_t, and anomalous weeks.

Model (r-forecast-plumber ``/prophet/fit``, details in its ``R/prophet_model.R``): one
prophet model per student of I_t on a logit scale of its range [0, 100] (forecasts never
leave it), with ln(1 + attempts) (capped where I_t stops growing with effort, 200
attempts) as an additive regressor and a linear trend (flat for fewer than 8 active
weeks); weeks without attempts stay out of the trend (I_t = 0 there by definition).
Weekly attempts are a second series, scored against the student's other weeks with a
sessions model (attempts per session from active days), so activity spikes and dips are
flagged where they happen; I_t is flagged net of effort, each week against its own
sampling error (its accuracy is measured from that week's attempts). Scores are
on a z scale; a week is flagged when its score exceeds ``PROPHET_ANOMALY_THRESHOLD``.
Forecasts: the median and the 80% band of the predictive distribution, widening with the
horizon, for ``PROPHET_FORECAST_WEEKS`` weeks. Students without an attempt in the
window's last 2 weeks are ``inactive``: scored, not forecast.

Why chunks: series are independent, so students are split into chunks of at most
``PROPHET_CHUNK_SIZE`` series, each one request fitted by a mapped task. A chunk's
answer does not depend on how students were chunked, so more Airflow workers and
more service replicas only make a run faster.

Which students get a series is decided in SQL (``include/sql/prophet/weekly_series.sql``):
students still preparing (a ``weekly_kpi`` row for the window's last week) with
attempts in at least ``PROPHET_MIN_ACTIVE_WEEKS`` weeks of the window. Students active in
fewer weeks are recorded in ``prophet_fit_meta`` as ``skipped`` with the reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import date
from typing import Any

import pandas as pd

from learning_analytics.kpi import I_T_EFFORT_SATURATION, learning_index_standard_error, require_weekly_kpi
from learning_analytics.pipeline import (
    Extracted,
    ModelPipeline,
    RunContext,
    chunk_by_key,
    column_table,
    frame_from_columns,
)
from learning_analytics.quality import TableGate, not_null, one_row_per
from learning_analytics.r_service import RServiceHook
from learning_analytics.settings import ProphetSettings
from learning_analytics.warehouse import Warehouse, WarehouseTransaction, to_json
from learning_analytics.windows import RunWindow, weekly_window

log = logging.getLogger(__name__)


FIT_META_COLUMNS = [
    "run_date", "user_id", "status", "reason", "model_id", "params",
    "changepoints", "sigma", "n_points", "settings",
]  # fmt: skip
ANOMALY_COLUMNS = ["run_date", "user_id", "week_start", "series", "direction", "y", "yhat", "score"]
FORECAST_COLUMNS = ["run_date", "user_id", "week_start", "yhat", "yhat_lower", "yhat_upper"]

DOC_MD = """
### Prophet forecast of the learning index, and anomalous weeks

Where is each student's weekly learning index `I_t` heading, and which weeks were
anomalous? Fits one prophet model per student on **r-forecast-plumber** (`/prophet/fit`)
and writes, keyed by the run's logical date (`run_date`):

* **`prophet_fit_meta`**: one row per student considered, `status`:
  `fitted` (forecast and scored), `inactive` (no attempt in the window's last 14 days:
  history scored for anomalies, no forecast), `skipped` (too little activity or too few
  points; `reason`) or `failed` (the service could not fit the series; `reason`); the
  chunk's `model_id`, prophet's `params` (model scale, see `scale`; `growth`, `k`, `m`,
  `delta`, the effort coefficient `beta`), `changepoints`, the residual scale `sigma`,
  `n_points` (weeks with attempts) and the `settings` used;
* **`prophet_anomalies`**: flagged weeks of two series per student, `series`
  `activity` (weekly attempts, `y` observed vs `yhat` expected attempts) or
  `learning_index` (`I_t` net of that week's effort, judged against the week's own
  sampling error: a week of a dozen attempts needs a bigger move than one of 150),
  `direction` `spike` or `dip`, and
  `score` (z scale) above `PROPHET_ANOMALY_THRESHOLD` (larger: fewer, surer flags).
  A zero week is a dip only for a student whose other weeks are busy; weeks after the
  last active week are never flagged;
* **`prophet_forecast`**: `PROPHET_FORECAST_WEEKS` weeks after the window per fitted
  student: `yhat` (median) and the 80% band `yhat_lower`/`yhat_upper`, inside [0, 100]
  and widening with the horizon. Chart it with the history from `weekly_kpi.i_t`.

Quality on synthetic students with a realized future: `docs/bench-prophet-quality.md`
(precision/recall of flags against the injected anomalies and the count baseline,
MASE against the naive forecast, interval coverage); choices in `docs/metrics.md`.

**Window**: the `PROPHET_LOOKBACK_WEEKS` complete weeks before the logical date, read
from `weekly_kpi` (built by `build_weekly_kpi`, Mondays 04:00). The run fails, and is
retried, while `weekly_kpi` has not been built for the window's last week.
**Who gets a series**: students still preparing (a `weekly_kpi` row for the window's
last week) with attempts in at least `PROPHET_MIN_ACTIVE_WEEKS` (4) weeks of the window;
inactive weeks count as `I_t = 0` and 0 attempts. Students active in fewer weeks get a
`skipped` meta row.
**Chunks**: at most `PROPHET_CHUNK_SIZE` students per mapped `fit` task (one request).
**Idempotent**: a rerun of the same logical date replaces all three tables' rows of
that date, in one transaction.
**On failure**: nothing is written. A stopped or failing service is retried by the
hook and then by the task; a 400 names the bad field in the `fit` log. A single series
that cannot be fitted does not fail the run: it is recorded as `failed`.
SQL: `include/sql/prophet/`.
"""


#: Range of I_t (docs/metrics.md): forecasts are made on a logit scale of it.
I_T_RANGE = (0.0, 100.0)


def fit_payload(shard: pd.DataFrame, settings: ProphetSettings) -> dict[str, Any]:
    """The ``/prophet/fit`` request of one chunk, column-oriented: I_t and its sampling error, attempts, active days.

    I_t above 100 (more than 200 attempts in a week at full accuracy) is sent as 100,
    the top of its range. ``y_se`` is each week's sampling error of I_t (its accuracy is
    measured from that week's attempts), against which the service judges
    ``learning_index`` anomalies; ``activity_saturation`` is where I_t stops growing with
    attempts, so that the service's effort regressor stops there too.
    """
    series = shard.rename(columns={"user_id": "series_id", "week_start": "ds", "i_t": "y", "n_attempts": "activity"})
    series["y_se"] = learning_index_standard_error(series["activity"], series["n_correct"])
    series = series.sort_values(["series_id", "ds"])[["series_id", "ds", "y", "y_se", "activity", "active_days"]]
    series["y"] = series["y"].clip(*I_T_RANGE)
    return {
        "series": column_table(series),
        "y_min": I_T_RANGE[0],
        "y_max": I_T_RANGE[1],
        "activity_saturation": I_T_EFFORT_SATURATION,
        "forecast_weeks": settings.forecast_weeks,
        "anomaly_threshold": settings.anomaly_threshold,
    }


def _iso_dates(values: pd.Series) -> pd.Series:
    return pd.Series([date.fromisoformat(str(value)) for value in values], index=values.index, dtype=object)


def fit_meta_rows(results: Sequence[dict[str, Any]], run_date: date, settings_json: str) -> pd.DataFrame:
    """``prophet_fit_meta`` rows of every series sent to the service.

    Series with a model keep the service's status (``fitted``, or ``inactive``: scored but
    not forecast); the service's ``failures`` keep theirs (``skipped``, ``inactive`` or
    ``failed``) and the reason; a series the answer does not mention at all is ``failed``
    (the answer is then incomplete, which must not go unnoticed).
    """
    rows: list[dict[str, Any]] = []
    for result in results:
        response = result["fit"]
        model_id = response["model_id"]
        answered: set[int] = set()
        for fit in response["fits"]:
            user_id = int(fit["series_id"])
            answered.add(user_id)
            rows.append(
                {
                    "user_id": user_id,
                    "status": fit["status"],
                    "reason": fit.get("reason"),
                    "model_id": model_id,
                    "params": fit["params"],
                    "changepoints": to_json(fit.get("changepoints") or []),
                    "sigma": fit["sigma"],
                    "n_points": fit.get("n_points"),
                }
            )
        failures = response.get("failures") or {}
        failed_ids = failures.get("series_id") or []
        statuses = failures.get("status") or ["failed"] * len(failed_ids)
        for series_id, status, reason in zip(failed_ids, statuses, failures.get("reason") or [], strict=True):
            answered.add(int(series_id))
            rows.append({"user_id": int(series_id), "status": status, "reason": reason, "model_id": model_id})
        for user_id in sorted(set(map(int, result["series_id"])) - answered):
            rows.append(
                {
                    "user_id": user_id,
                    "status": "failed",
                    "reason": "the service's answer did not mention this series",
                    "model_id": model_id,
                }
            )
    frame = pd.DataFrame(rows).reindex(columns=FIT_META_COLUMNS)
    frame["run_date"] = run_date
    frame["settings"] = settings_json
    # Integers or NULL (a float column would COPY 12.0 into an integer column).
    frame["n_points"] = pd.Series(
        [None if pd.isna(value) else int(value) for value in frame["n_points"]], index=frame.index, dtype=object
    )
    return frame


def _series_table_rows(
    results: Sequence[dict[str, Any]],
    table: str,
    value_columns: Sequence[str],
    run_date: date,
    columns: Sequence[str],
    text_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Rows of one column-oriented series table (``forecast``/``anomalies``) of every chunk."""
    frames = [frame_from_columns(result["fit"][table]) for result in results]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame(columns=columns)
    rows = pd.concat(frames, ignore_index=True)
    out = pd.DataFrame(
        {
            "run_date": run_date,
            "user_id": rows["series_id"].astype("int64"),
            "week_start": _iso_dates(rows["ds"]),
            **{name: rows[name].astype(str) for name in text_columns},
            **{name: rows[name].astype("float64") for name in value_columns},
        }
    )
    return out.reindex(columns=columns)


def anomaly_rows(results: Sequence[dict[str, Any]], run_date: date) -> pd.DataFrame:
    """``prophet_anomalies`` rows: the weeks each chunk's answer flagged, per series."""
    return _series_table_rows(
        results, "anomalies", ["y", "yhat", "score"], run_date, ANOMALY_COLUMNS, text_columns=["series", "direction"]
    )


def forecast_rows(results: Sequence[dict[str, Any]], run_date: date) -> pd.DataFrame:
    """``prophet_forecast`` rows: each fitted series' weeks after the window."""
    return _series_table_rows(results, "forecast", ["yhat", "yhat_lower", "yhat_upper"], run_date, FORECAST_COLUMNS)


def run_settings(run: RunContext[ProphetSettings], results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a run used, for ``prophet_fit_meta.settings``: DAG settings, window, service settings."""
    service_settings = next((result["fit"].get("settings") for result in results), None)
    return {
        **run.settings.as_dict(),
        "window_start": run.window.start.isoformat(),
        "window_end": run.window.end.isoformat(),
        "service": service_settings,
    }


class ProphetPipeline(ModelPipeline[ProphetSettings]):
    """extract weekly I_t -> fit chunks of series -> fit meta, anomalies, forecasts."""

    settings_cls = ProphetSettings
    service_conn_id = "r_forecast"
    fit_endpoint = "prophet/fit"
    tags = ("learning-analytics", "model", "prophet")
    # A 500-series chunk takes ~10-30 s on two cores; the margin covers a busy service.
    fit_timeout_s = 900.0

    shard_label_words = ("chunk", "series")
    doc_md = DOC_MD
    quality_checks = (
        TableGate(
            "prophet_fit_meta",
            columns={"user_id": not_null(), "status": not_null()},
            checks={"one_row_per_student": ("one meta row per student (series)", one_row_per("user_id"))},
        ),
        TableGate(
            "prophet_forecast",
            # I_t is on [0, 100]; a forecast a whole scale outside it is a broken fit (NaN fails too).
            columns={
                "user_id": not_null(),
                "week_start": not_null(),
                "yhat": {"min": {"geq_to": -100.0}, "max": {"leq_to": 200.0}},
            },
            checks={
                "one_row_per_student_week": ("one forecast per student and week", one_row_per("user_id", "week_start")),
                "interval_brackets_forecast": (
                    "`yhat_lower <= yhat <= yhat_upper` where the interval is set",
                    "bool_and(coalesce(yhat_lower <= yhat AND yhat <= yhat_upper, true))",
                ),
                "forecast_students_were_fitted": (
                    "every forecast student has a `fitted` meta row",
                    "count(DISTINCT user_id) <= (SELECT count(*) FROM prophet_fit_meta AS m"
                    " WHERE m.run_date = {run_date} AND m.status = 'fitted')",
                ),
            },
        ),
        TableGate(
            "prophet_anomalies",
            columns={"user_id": not_null(), "week_start": not_null(), "series": not_null()},
            checks={
                "one_row_per_student_week_series": (
                    "one anomaly per student, week and series",
                    one_row_per("user_id", "week_start", "series"),
                )
            },
        ),
    )

    def window(self, run_date: date, settings: ProphetSettings) -> RunWindow:
        return weekly_window(run_date, settings.lookback_weeks)

    def extract(self, warehouse: Warehouse, run: RunContext[ProphetSettings]) -> Extracted:
        window = run.window
        require_weekly_kpi(warehouse, window.end)
        series = warehouse.query_frame(
            "prophet/weekly_series.sql", {**window.as_sql_params(), "min_active_weeks": run.settings.min_active_weeks}
        )
        n_series = int(series["user_id"].nunique()) if not series.empty else 0
        summary: dict[str, Any] = {"n_series": n_series, "n_points": len(series)}
        if n_series == 0:
            return Extracted(
                skip_reason=f"no student was active in at least {run.settings.min_active_weeks} weeks of "
                f"{window.start} .. {window.end} (exclusive)",
                summary=summary,
            )
        chunks = chunk_by_key(series, "user_id", run.settings.chunk_size)
        summary["n_chunks"] = len(chunks)
        return Extracted(shards=chunks, summary=summary)

    def fit_request(self, shard: pd.DataFrame, shard_index: int, run: RunContext[ProphetSettings]) -> dict[str, Any]:
        return fit_payload(shard, run.settings)

    def fit_result(
        self,
        service: RServiceHook,
        fit: dict[str, Any],
        shard: pd.DataFrame,
        shard_index: int,
        run: RunContext[ProphetSettings],
    ) -> dict[str, Any]:
        response = fit
        n_failures = len((response.get("failures") or {}).get("series_id") or [])
        log.info(
            "chunk %s: %s series with a model (%s inactive), %s skipped, inactive or failed, %s anomaly flags"
            " (model %s, %.1f s in R)",
            shard_index,
            len(response["fits"]),
            sum(fit["status"] == "inactive" for fit in response["fits"]),
            n_failures,
            len(response["anomalies"]["series_id"]),
            response["model_id"],
            response.get("elapsed_s", float("nan")),
        )
        return {
            "shard": shard_index,
            "series_id": sorted(int(user_id) for user_id in shard["user_id"].unique()),
            "fit": response,
        }

    def persist(
        self,
        tx: WarehouseTransaction,
        results: Sequence[dict[str, Any]],
        extracted: dict[str, Any],
        run: RunContext[ProphetSettings],
    ) -> dict[str, Any]:
        window = run.window
        key = {"run_date": window.run_date}
        if extracted.get("skip_reason"):
            log.warning("no series fitted: %s", extracted["skip_reason"])
        settings_json = to_json(run_settings(run, results))

        # Meta: the students skipped for too little activity (decided in SQL), then
        # every series sent to the service.
        tx.delete_partition("prophet_fit_meta", key)
        n_too_little_activity = tx.execute_file(
            "prophet/insufficient_activity.sql",
            {**window.as_sql_params(), "min_active_weeks": run.settings.min_active_weeks, "settings": settings_json},
        )
        meta = fit_meta_rows(results, window.run_date, settings_json)
        tx.upsert("prophet_fit_meta", meta, ["run_date", "user_id"])
        anomalies = anomaly_rows(results, window.run_date)
        forecasts = forecast_rows(results, window.run_date)
        written = {
            "prophet_anomalies": tx.replace_partition(
                "prophet_anomalies", anomalies, key, ["run_date", "user_id", "week_start", "series"]
            ),
            "prophet_forecast": tx.replace_partition(
                "prophet_forecast", forecasts, key, ["run_date", "user_id", "week_start"]
            ),
        }
        written["prophet_fit_meta"] = n_too_little_activity + len(meta)
        statuses = Counter(meta["status"]) + Counter({"skipped": n_too_little_activity})
        if statuses["failed"]:
            log.warning("%s series could not be fitted; see prophet_fit_meta.reason", statuses["failed"])
        status = "skipped" if extracted.get("skip_reason") else "ok"
        log.info("prophet run %s: status %s, series %s, %s", window.run_date, status, dict(statuses), written)
        return {"status": status, **written, "n_shards": len(results), "series": dict(statuses)}
