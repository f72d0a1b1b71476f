"""Survival: landmark Cox model of a student's risk of a long study gap (churn).

Model (r-forecast-plumber ``/survival/fit``): ``Surv(time, event) ~ covariates``,
Efron ties, on landmark rows. Definitions (full text and rationale in ``docs/survival.md``):

* **churn** (the event) is the completion of a gap of ``SURVIVAL_EVENT_THRESHOLD_DAYS``
  (T) local days without any attempt (its T-th idle day);
* **landmarks** are the days ``L = W - 1 - 7k`` of the window (W = the run date) whose
  :data:`BASELINE_DAYS`-day baseline lies inside the window; time 0 is the end of day L.
  Every student not churned at L (idle fewer than T days) is a row, with covariates
  measured over the baseline and **days idle** (``L - last active day``) among them;
* **time** is the days from L to the first churn completion, within
  ``SURVIVAL_HORIZON_DAYS`` (H) and the window (event = 1), otherwise censored there.

The students seen in the window are then scored at ``L = W - 1``: a student already idle
for T days is ``churned`` (S = 1); the others get ``p_event`` = P(a T-day gap completes
within H days | covariates, days idle) from ``/survival/predict``, and that is what
``weekly_kpi.s`` holds. ``p_event`` never decreases with days idle: the service holds
the effects of ``days_idle`` and ``missed_active_days`` non-negative (:data:`MONOTONE`).

One shard: the Cox partial likelihood couples every row, so the whole population is
fitted in one request (a fit of 10k students x 9 landmarks takes seconds).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import pandas as pd

from learning_analytics.kpi import require_weekly_kpi
from learning_analytics.pipeline import (
    Extracted,
    ModelPipeline,
    RunContext,
    column_table,
    frame_from_columns,
)
from learning_analytics.quality import TableGate, not_null, one_row_per, probability
from learning_analytics.r_service import RServiceHook
from learning_analytics.settings import SurvivalSettings
from learning_analytics.values import none_if_missing
from learning_analytics.warehouse import Warehouse, WarehouseTransaction, to_json
from learning_analytics.windows import RunWindow, daily_window, week_start

log = logging.getLogger(__name__)

#: Days over which covariates are measured, up to a landmark. Four weeks: long enough
#: for a trend of accuracy and of weekly I_t (four weeks) to be measured, short enough
#: to leave most of a 90-day window for landmarks. Never shorter than the event
#: threshold, so every student not yet churned has baseline attempts.
BASELINE_DAYS = 28
#: Fewer events than this and the run is skipped: a Cox fit of six covariates on a
#: handful of events is noise, and writing it into weekly_kpi.s would mislead.
MIN_EVENTS = 10
#: The model's covariates, named as they appear in the coefficients table.
COVARIATES: tuple[str, ...] = (
    "accuracy",
    "goal_gap",
    "attempts_per_week",
    "active_days_per_week",
    "accuracy_trend",
    "i_t_trend",
    "days_idle",
    "missed_active_days",
)
#: Covariates whose effect the service holds non-negative, so that S never decreases
#: as days idle grow (both grow with days idle, other things equal).
MONOTONE: tuple[str, ...] = ("days_idle", "missed_active_days")

RISK_COLUMNS = ["run_date", "user_id", "landmark_day", "days_idle", "time_days", "event", "risk_score", "p_event"]
ACTIVE_RISK_COLUMNS = [
    "run_date",
    "user_id",
    "status",
    "last_active_day",
    "days_idle",
    "covariates",
    "risk_score",
    "p_event",
]
KPI_COLUMNS = ["user_id", "week_start", "s", "s_run_date"]

DOC_MD = f"""
### Survival: 14-day churn risk, given what we know today

How likely is each student to be (or become) idle for `SURVIVAL_EVENT_THRESHOLD_DAYS` days
within `SURVIVAL_HORIZON_DAYS` days? A **landmark Cox model** (`/survival/fit` on
**r-forecast-plumber**, Efron ties) fitted on weekly landmarks of the window, then the
students of the window are scored at the run date with `/survival/predict`.

**Window**: the `SURVIVAL_LOOKBACK_DAYS` local days before the logical date (daily at
05:00 UTC = 14:00 in Seoul; days on the platform clock `LA_TIMEZONE`).
**Landmarks** every 7 days back from the day before the logical date; at each, every student
not yet churned is a row: **covariates** (`{"`, `".join(COVARIATES)}`) over the {BASELINE_DAYS}
days up to it, among them **days idle**; **event** = a gap of
`SURVIVAL_EVENT_THRESHOLD_DAYS` idle days completes within the horizon. Proportional hazards
are tested (`cox.zph`); a covariate with p < 0.01 gets separate effects before and after
the median event time. The effects of `{"`, `".join(MONOTONE)}` are held non-negative, so
S never decreases as days idle grow. Full definitions: `docs/survival.md`.

**Writes**, keyed by the logical date (`run_date`):

* **`survival_fit_meta`**: one row: coefficients, **held-out** concordance (5-fold by
  student; `concordance_in_sample` next to it), the proportional-hazards test and
  `ph_actions` (which covariate got a time interaction), `constraints`, sizes, warnings,
  settings; or `status = 'skipped'` with the reason when fewer than {MIN_EVENTS} churn
  events were seen (e.g. a lookback without any);
* **`survival_risk`**: the fitted rows (student x landmark): days idle, time, event, risk;
* **`survival_active_risk`**: every student with an attempt in the window, at the run date:
  `status` `churned` (already idle for the threshold: `p_event` = 1) or `active`
  (`p_event` from the model), days idle, the covariates used;
* **`weekly_kpi.s`** (and `s_run_date`) when `SURVIVAL_UPDATE_KPI` is true: that `p_event`
  in the row of the week containing the day before the logical date (only rows that
  exist: `build_weekly_kpi` creates a week's rows on the Monday after it).

**Needs** `weekly_kpi` of the last complete week (`i_t_trend`): the run fails, and is
retried, until `build_weekly_kpi` has built it; and the warehouse's clock must be
`LA_TIMEZONE`.
**Idempotent**: a rerun of the same date replaces all of the above in one transaction
(`weekly_kpi.s` values of the earlier run of that date are cleared first).
**On failure**: nothing is written. SQL: `include/sql/survival/`.
"""


def baseline_days(settings: SurvivalSettings) -> int:
    """Days of the covariate baseline: :data:`BASELINE_DAYS`, at least the event threshold."""
    return max(BASELINE_DAYS, settings.event_threshold_days)


def observation_params(window: RunWindow, settings: SurvivalSettings) -> dict[str, Any]:
    """Parameters of ``survival/churn_observations.sql``."""
    return {
        **window.as_sql_params(),
        "event_threshold_days": settings.event_threshold_days,
        "baseline_days": baseline_days(settings),
        "horizon_days": settings.horizon_days,
    }


def kpi_week(run_date: date) -> date:
    """The ``weekly_kpi`` week that receives a run's S: the week of the day before ``run_date``."""
    return week_start(run_date - timedelta(days=1))


def fit_rows(observations: pd.DataFrame) -> pd.DataFrame:
    """The rows fitted: one per student and landmark, at risk at the landmark."""
    return observations[observations["role"] == "fit"].reset_index(drop=True)


def score_rows(observations: pd.DataFrame) -> pd.DataFrame:
    """The students scored by the model now: seen in the window and not churned yet."""
    rows = observations[(observations["role"] == "score") & (observations["status"] == "active")]
    return rows.reset_index(drop=True)


def churned_rows(observations: pd.DataFrame) -> pd.DataFrame:
    """The students seen in the window who are idle for the threshold already: S = 1."""
    rows = observations[(observations["role"] == "score") & (observations["status"] == "churned")]
    return rows.reset_index(drop=True)


def observation_sizes(observations: pd.DataFrame) -> dict[str, int]:
    """Fitted rows, landmarks, students and events; students scored and churned now."""
    fitted = fit_rows(observations)
    return {
        "n_fit_rows": len(fitted),
        "n_landmarks": int(fitted["landmark_day"].nunique()),
        "n_students": int(fitted["user_id"].nunique()),
        "n_events": int(fitted["event"].sum()) if not fitted.empty else 0,
        "n_active": len(score_rows(observations)),
        "n_churned": len(churned_rows(observations)),
    }


def skip_reason(sizes: dict[str, int], window: RunWindow) -> str | None:
    """Why a run cannot be fitted, or ``None``."""
    if sizes["n_events"] < MIN_EVENTS:
        return (
            f"too few churn events to fit: {sizes['n_events']} in {sizes['n_fit_rows']} student-landmarks "
            f"({sizes['n_landmarks']} landmarks) in {window.start} .. {window.end} (exclusive); "
            f"at least {MIN_EVENTS} are needed"
        )
    return None


def fit_payload(fitted: pd.DataFrame, horizon_days: int) -> dict[str, Any]:
    """The ``/survival/fit`` request: one row per student and landmark, column-oriented."""
    data = fitted[["user_id", "time_days", "event", *COVARIATES]].rename(columns={"time_days": "time"})
    data = data.astype({"user_id": "int64", "event": "int64"})
    return {
        "data": column_table(data),
        "covariates": list(COVARIATES),
        "monotone": list(MONOTONE),
        "horizon_days": horizon_days,
    }


def predict_payload(model_id: str, scored: pd.DataFrame, horizon_days: int) -> dict[str, Any]:
    """The ``/survival/predict`` request for the students scored now."""
    data = scored[["user_id", *COVARIATES]].astype({"user_id": "int64"})
    return {
        "model_id": model_id,
        "data": column_table(data),
        "horizon_days": horizon_days,
    }


def risk_rows(result: dict[str, Any], run_date: date) -> pd.DataFrame:
    """``survival_risk``: each fitted row's landmark, time, event and fitted risk.

    The fit's risk table is in the order of the rows sent (user ids repeat across landmarks).
    """
    observed = frame_from_columns(result["fit_rows"])
    risk = frame_from_columns(result["fit"]["risk"])
    if len(risk) != len(observed) or risk["user_id"].tolist() != observed["user_id"].tolist():
        raise ValueError(f"the fit's risk table has {len(risk)} rows that do not match the {len(observed)} rows sent")
    rows = pd.concat([observed, risk[["risk_score", "p_event"]]], axis=1)
    rows["landmark_day"] = [date.fromisoformat(str(day)) for day in rows["landmark_day"]]
    rows["run_date"] = run_date
    return rows.reindex(columns=RISK_COLUMNS)


def covariate_records(rows: pd.DataFrame) -> list[dict[str, float | None]]:
    """Each row's covariates as sent (missing as ``None``: churned students may have none)."""
    return [
        {name: none_if_missing(value) for name, value in record.items()}
        for record in rows[list(COVARIATES)].astype(object).to_dict(orient="records")
    ]


def active_risk_rows(result: dict[str, Any], run_date: date) -> pd.DataFrame:
    """``survival_active_risk``: every student seen in the window, at the run date.

    ``active`` students get the model's risk; ``churned`` ones (idle for the threshold
    already) ``p_event`` = 1 and no model score.
    """
    scored = frame_from_columns(result["score_rows"])
    churned = frame_from_columns(result["churned_rows"])
    if result.get("prediction"):
        # The answer also carries a list of warnings, not a column.
        prediction = frame_from_columns(
            {name: result["prediction"][name] for name in ("user_id", "risk_score", "p_event")}
        )
        scored = scored.merge(prediction, on="user_id", how="inner", validate="one_to_one")
        if len(scored) != len(result["score_rows"]["user_id"]):
            raise ValueError(
                f"the prediction covers {len(scored)} of the {len(result['score_rows']['user_id'])} active students"
            )
    churned = churned.assign(risk_score=None, p_event=1.0)
    rows = pd.concat([frame for frame in (scored, churned) if not frame.empty], ignore_index=True)
    if rows.empty:
        return pd.DataFrame(columns=ACTIVE_RISK_COLUMNS)
    rows["covariates"] = covariate_records(rows)
    rows["last_active_day"] = [date.fromisoformat(str(day)) for day in rows["last_active_day"]]
    rows["days_idle"] = rows["days_idle"].astype(int)
    rows["run_date"] = run_date
    return rows.reindex(columns=ACTIVE_RISK_COLUMNS)


def kpi_rows(active_risk: pd.DataFrame, run_date: date) -> pd.DataFrame:
    """``weekly_kpi`` updates: ``s`` = ``p_event`` in the week of the day before ``run_date``."""
    return pd.DataFrame(
        {
            "user_id": active_risk["user_id"],
            "week_start": kpi_week(run_date),
            "s": active_risk["p_event"],
            "s_run_date": run_date,
        },
        columns=KPI_COLUMNS,
    )


def run_settings(run: RunContext[SurvivalSettings]) -> dict[str, Any]:
    """What a run used, for ``survival_fit_meta.settings``."""
    return {
        **run.settings.as_dict(),
        "LA_TIMEZONE": run.window.timezone,
        "baseline_days": baseline_days(run.settings),
        "min_events": MIN_EVENTS,
        "monotone": list(MONOTONE),
        "kpi_week": kpi_week(run.window.run_date).isoformat(),
    }


def fit_meta_row(
    result: dict[str, Any] | None,
    sizes: dict[str, int],
    skip: str | None,
    run: RunContext[SurvivalSettings],
) -> dict[str, Any]:
    """The run's ``survival_fit_meta`` row (``skipped`` without a model when ``result`` is None)."""
    window = run.window
    row: dict[str, Any] = {
        "run_date": window.run_date,
        "window_start": window.start,
        "window_end": window.end,
        "settings": to_json(run_settings(run)),
        "covariates": list(COVARIATES),
        "horizon_days": run.settings.horizon_days,
        "sizes": to_json(sizes),
    }
    if result is None:
        return {
            **row,
            "status": "skipped",
            "message": skip,
            "n": sizes["n_fit_rows"],
            "n_events": sizes["n_events"],
        }
    fit = result["fit"]
    warnings = [
        *(fit.get("warnings") or []),
        *((result.get("prediction") or {}).get("warnings") or []),
    ]
    return {
        **row,
        "status": "ok",
        "message": None,
        "model_id": fit["model_id"],
        "coefficients": to_json(fit["coefficients"]),
        "concordance": fit["concordance"],
        "concordance_in_sample": fit.get("concordance_in_sample"),
        "ph_test": to_json(fit.get("ph_test")),
        "ph_actions": to_json(fit.get("ph_actions") or []),
        "constraints": to_json(fit.get("constraints")),
        "n": fit["n"],
        "n_events": fit["n_events"],
        "warnings": to_json(warnings),
    }


class SurvivalPipeline(ModelPipeline[SurvivalSettings]):
    """extract survival observations -> Cox fit + score active students -> meta, risks, weekly_kpi.S."""

    settings_cls = SurvivalSettings
    service_conn_id = "r_forecast"
    fit_endpoint = "survival/fit"
    tags = ("learning-analytics", "model", "survival")
    # A Cox fit of 10k students takes seconds; the margin covers a busy service.
    fit_timeout_s = 600.0

    doc_md = DOC_MD
    quality_checks = (
        TableGate(
            "survival_risk",
            columns={"user_id": not_null(), "p_event": probability()},
            checks={
                "one_row_per_student_landmark": (
                    "one row per student and landmark",
                    one_row_per("user_id", "landmark_day"),
                ),
                "rows_within_meta": (
                    "no more rows than the `n` landmark rows of the fit's meta row",
                    "count(*) <= coalesce((SELECT n FROM survival_fit_meta AS m WHERE m.run_date = {run_date}), 0)",
                ),
            },
        ),
        TableGate(
            "survival_active_risk",
            columns={"user_id": not_null(), "p_event": probability()},
            checks={"one_row_per_student": ("one row per student", one_row_per("user_id"))},
        ),
    )

    def window(self, run_date: date, settings: SurvivalSettings) -> RunWindow:
        return daily_window(run_date, settings.lookback_days)

    def extract(self, warehouse: Warehouse, run: RunContext[SurvivalSettings]) -> Extracted:
        # i_t_trend of the students scored now reads the last complete week.
        require_weekly_kpi(warehouse, week_start(run.window.run_date))
        observations = warehouse.query_frame(
            "survival/churn_observations.sql",
            observation_params(run.window, run.settings),
        )
        sizes = observation_sizes(observations)
        reason = skip_reason(sizes, run.window)
        if reason:
            return Extracted(skip_reason=reason, summary=sizes)
        return Extracted(shards=[observations], summary=sizes)

    def fit_request(self, shard: pd.DataFrame, shard_index: int, run: RunContext[SurvivalSettings]) -> dict[str, Any]:
        return fit_payload(fit_rows(shard), run.settings.horizon_days)

    def fit_result(
        self,
        service: RServiceHook,
        fit: dict[str, Any],
        shard: pd.DataFrame,
        shard_index: int,
        run: RunContext[SurvivalSettings],
    ) -> dict[str, Any]:
        horizon_days = run.settings.horizon_days
        fitted, scored, churned = fit_rows(shard), score_rows(shard), churned_rows(shard)
        log.info(
            "Cox fit %s: %s rows of %s students, %s events, held-out concordance %s (in sample %s); "
            "time interactions %s; fixed at 0 %s; hazard ratios %s",
            fit["model_id"],
            fit["n"],
            fit.get("n_users"),
            fit["n_events"],
            fit["concordance"],
            fit.get("concordance_in_sample"),
            [action["covariate"] for action in fit.get("ph_actions") or []],
            (fit.get("constraints") or {}).get("fixed_at_zero"),
            {row["term"]: round(row["hazard_ratio"], 4) for row in fit["coefficients"]},
        )
        for warning in fit.get("warnings") or []:
            log.warning("survival fit: %s", warning)
        prediction = (
            service.call(
                "survival/predict",
                predict_payload(fit["model_id"], scored, horizon_days),
            )
            if not scored.empty
            else None
        )
        log.info("scored %s active students; %s churned already (S = 1)", len(scored), len(churned))
        # days_idle is one of the covariates.
        day_columns = ["user_id", "status", "last_active_day", *COVARIATES]
        return {
            "shard": shard_index,
            "fit_rows": column_table(
                fitted[["user_id", "landmark_day", "days_idle", "time_days", "event"]].astype(
                    {"event": "int64", "days_idle": "int64"}
                )
            ),
            "score_rows": column_table(scored[day_columns]),
            "churned_rows": column_table(churned[day_columns]),
            "fit": fit,
            "prediction": prediction,
        }

    def persist(
        self,
        tx: WarehouseTransaction,
        results: Sequence[dict[str, Any]],
        extracted: dict[str, Any],
        run: RunContext[SurvivalSettings],
    ) -> dict[str, Any]:
        run_date = run.window.run_date
        key = {"run_date": run_date}
        sizes = dict(extracted.get("summary") or {})
        skip = extracted.get("skip_reason")
        if skip:
            log.warning("no model this run: %s", skip)
        result = results[0] if results else None
        risks = risk_rows(result, run_date) if result else pd.DataFrame(columns=RISK_COLUMNS)
        active = active_risk_rows(result, run_date) if result else pd.DataFrame(columns=ACTIVE_RISK_COLUMNS)
        written = {
            "survival_risk": tx.replace_partition("survival_risk", risks, key, ["run_date", "user_id", "landmark_day"]),
            "survival_active_risk": tx.replace_partition("survival_active_risk", active, key, ["run_date", "user_id"]),
        }
        if run.settings.update_kpi:
            tx.execute_file("survival/clear_kpi_risk.sql", key)
            written["weekly_kpi.s"] = tx.update_columns(
                "weekly_kpi", kpi_rows(active, run_date), ["user_id", "week_start"]
            )
        else:
            log.info("SURVIVAL_UPDATE_KPI is false: weekly_kpi.s left as it is")
        sizes["n_kpi_updated"] = written.get("weekly_kpi.s", 0)
        meta = fit_meta_row(result, sizes, skip, run)
        written["survival_fit_meta"] = tx.replace_partition(
            "survival_fit_meta", pd.DataFrame([meta]), key, ["run_date"]
        )
        log.info("survival run %s: %s", run_date, written)
        return {"status": meta["status"], **written}
