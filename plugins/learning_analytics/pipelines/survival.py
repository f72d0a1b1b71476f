"""Survival: Cox model of the time until a student starts a long study gap (churn).

Model (r-forecast-plumber ``/survival/fit``): ``Surv(time, event) ~ covariates``,
Efron ties. Definitions (full text and rationale in ``docs/survival.md``):

* **churn** (the event) starts on the first day of a student's first gap of at least
  ``SURVIVAL_EVENT_THRESHOLD_DAYS`` (T) UTC days without any attempt;
* **time origin** is a landmark: the last day of a :data:`BASELINE_DAYS`-day baseline
  that begins on the student's first active day in the window. Covariates are measured
  over the baseline only, so nothing that happens after time 0 (in particular the gap
  itself) leaks into them; students who churned within their baseline are not at risk
  at time 0 and are left out of the fit;
* **time** is ``churn_start - origin_day`` in days (event = 1), or censored at
  ``(window_end - T) - origin_day``: a gap starting later cannot yet be T days long
  inside the window.

The currently active students (an attempt in the window's last T days, i.e. not
churned at the window end) are scored with ``/survival/predict`` on the same covariates
measured over the window's last baseline period, time 0 being the window's last day:
their ``p_event`` is the probability that a churn gap starts within
``SURVIVAL_HORIZON_DAYS`` days, and that is what ``weekly_kpi.s`` holds.

One shard: the Cox partial likelihood couples every student, so the whole population
is fitted in one request (a fit of 10k students takes seconds).
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
from learning_analytics.warehouse import Warehouse, WarehouseTransaction, to_json
from learning_analytics.windows import RunWindow, daily_window, week_start

log = logging.getLogger(__name__)

#: Days over which covariates are measured, before time 0. Four weeks: long enough for
#: a trend of accuracy and of weekly I_t (four ISO weeks) to be measured, short enough
#: to leave most of a 90-day window for follow-up. Never shorter than the event
#: threshold, so every currently active student has baseline attempts.
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
)
#: Statuses of the fit rows (see include/sql/survival/churn_observations.sql).
FIT_STATUSES: tuple[str, ...] = ("at_risk", "churned_in_baseline", "short_follow_up")

RISK_COLUMNS = ["run_date", "user_id", "time_days", "event", "risk_score", "p_event"]
ACTIVE_RISK_COLUMNS = [
    "run_date",
    "user_id",
    "last_active_day",
    "covariates",
    "risk_score",
    "p_event",
]
KPI_COLUMNS = ["user_id", "week_start", "s", "s_run_date"]

DOC_MD = f"""
### Survival: 14-day churn risk

How likely is each student to stop studying, i.e. to start a gap of at least
`SURVIVAL_EVENT_THRESHOLD_DAYS` days without any attempt? Fits a Cox proportional-hazards
model (`/survival/fit` on **r-forecast-plumber**, Efron ties) on every student of the window,
then scores the students still active with `/survival/predict`.

**Window**: the `SURVIVAL_LOOKBACK_DAYS` days before the logical date (daily at 05:00 UTC).
**Time 0** is the last day of a {BASELINE_DAYS}-day baseline starting on the student's first
active day in the window; **covariates** (`{"`, `".join(COVARIATES)}`) are measured over the
baseline only; **churn** starts on the first day of the first gap of at least
`SURVIVAL_EVENT_THRESHOLD_DAYS` days; students are censored when a gap could no longer be
that long inside the window. Students who churned inside their baseline, or started too
late for any follow-up, are counted but not fitted. Full definitions: `docs/survival.md`.

**Writes**, keyed by the logical date (`run_date`):

* **`survival_fit_meta`**: one row: coefficients with hazard ratios, SEs and p-values,
  concordance, proportional-hazards test (`cox.zph`), sizes, warnings, settings, or
  `status = 'skipped'` with the reason when fewer than {MIN_EVENTS} churn events were seen;
* **`survival_risk`**: the fitted students: time, event, risk score and `p_event`;
* **`survival_active_risk`**: students active at the window end (an attempt in its last
  `SURVIVAL_EVENT_THRESHOLD_DAYS` days): risk score and `p_event` = probability that a churn
  gap starts within `SURVIVAL_HORIZON_DAYS` days from the logical date, with the covariates used;
* **`weekly_kpi.s`** (and `s_run_date`) when `SURVIVAL_UPDATE_KPI` is true: that `p_event`
  in the row of the week containing the day before the logical date (only rows that
  exist: `build_weekly_kpi` creates a week's rows on the Monday after it).

**Needs** `weekly_kpi` of the last complete week (`i_t_trend`): the run fails, and is
retried, until `build_weekly_kpi` has built it.
**Idempotent**: a rerun of the same date replaces all of the above in one transaction
(`weekly_kpi.s` values of the earlier run of that date are cleared first).
**On failure**: nothing is written. A 400 from the service names the bad covariate in the
`fit` log (e.g. a constant covariate on a tiny population).
SQL: `include/sql/survival/`.
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
    }


def kpi_week(run_date: date) -> date:
    """The ``weekly_kpi`` week that receives a run's S: the week of the day before ``run_date``."""
    return week_start(run_date - timedelta(days=1))


def fit_rows(observations: pd.DataFrame) -> pd.DataFrame:
    """The students fitted: role ``fit`` and at risk at time 0."""
    rows = observations[(observations["role"] == "fit") & (observations["status"] == "at_risk")]
    return rows.reset_index(drop=True)


def score_rows(observations: pd.DataFrame) -> pd.DataFrame:
    """The students scored now: active at the window end."""
    return observations[observations["role"] == "score"].reset_index(drop=True)


def observation_sizes(observations: pd.DataFrame) -> dict[str, int]:
    """Students per fit status, events among the fitted, and students to score."""
    fit_role = observations[observations["role"] == "fit"]
    counts = fit_role["status"].value_counts()
    fitted = fit_rows(observations)
    return {
        "n_students": len(fit_role),
        **{f"n_{status}": int(counts.get(status, 0)) for status in FIT_STATUSES},
        "n_events": int(fitted["event"].sum()) if not fitted.empty else 0,
        "n_active": int((observations["role"] == "score").sum()),
    }


def skip_reason(sizes: dict[str, int], window: RunWindow) -> str | None:
    """Why a run cannot be fitted, or ``None``."""
    if sizes["n_events"] < MIN_EVENTS:
        return (
            f"too few churn events to fit: {sizes['n_events']} among {sizes['n_at_risk']} students at risk "
            f"in {window.start} .. {window.end} (exclusive); at least {MIN_EVENTS} are needed"
        )
    return None


def fit_payload(fitted: pd.DataFrame, horizon_days: int) -> dict[str, Any]:
    """The ``/survival/fit`` request: one row per fitted student, column-oriented."""
    data = fitted[["user_id", "time_days", "event", *COVARIATES]].rename(columns={"time_days": "time"})
    data = data.astype({"user_id": "int64", "event": "int64"})
    return {
        "data": column_table(data),
        "covariates": list(COVARIATES),
        "horizon_days": horizon_days,
    }


def predict_payload(model_id: str, scored: pd.DataFrame, horizon_days: int) -> dict[str, Any]:
    """The ``/survival/predict`` request for the students active now."""
    data = scored[["user_id", *COVARIATES]].astype({"user_id": "int64"})
    return {
        "model_id": model_id,
        "data": column_table(data),
        "horizon_days": horizon_days,
    }


def risk_rows(result: dict[str, Any], run_date: date) -> pd.DataFrame:
    """``survival_risk``: each fitted student's time, event and fitted risk."""
    observed = frame_from_columns(result["fit_rows"])
    risk = frame_from_columns(result["fit"]["risk"])
    rows = observed.merge(risk, on="user_id", how="left", validate="one_to_one")
    missing = rows["risk_score"].isna().sum()
    if missing:
        raise ValueError(f"the fit's risk table lacks {missing} of the {len(rows)} fitted students")
    rows["run_date"] = run_date
    return rows.reindex(columns=RISK_COLUMNS)


def active_risk_rows(result: dict[str, Any], run_date: date) -> pd.DataFrame:
    """``survival_active_risk``: each active student's risk now, with the covariates used."""
    if not result.get("prediction"):
        return pd.DataFrame(columns=ACTIVE_RISK_COLUMNS)
    scored = frame_from_columns(result["score_rows"])
    # The answer also carries a list of warnings, not a column.
    prediction = frame_from_columns({name: result["prediction"][name] for name in ("user_id", "risk_score", "p_event")})
    rows = scored.merge(prediction, on="user_id", how="inner", validate="one_to_one")
    if len(rows) != len(scored):
        raise ValueError(f"the prediction covers {len(rows)} of the {len(scored)} active students")
    rows["covariates"] = rows[list(COVARIATES)].to_dict(orient="records")
    rows["last_active_day"] = [date.fromisoformat(str(day)) for day in rows["last_active_day"]]
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
        "baseline_days": baseline_days(run.settings),
        "min_events": MIN_EVENTS,
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
            "n": sizes["n_at_risk"],
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
        "ph_test": to_json(fit.get("ph_test")),
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
                "one_row_per_student": ("one row per student", one_row_per("user_id")),
                "students_within_meta": (
                    "no more rows than the `n` students of the fit's meta row",
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
        fitted, scored = fit_rows(shard), score_rows(shard)
        log.info(
            "Cox fit %s: n %s, events %s, concordance %.3f; hazard ratios %s",
            fit["model_id"],
            fit["n"],
            fit["n_events"],
            fit["concordance"],
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
        log.info("scored %s active students", len(scored))
        return {
            "fit_rows": column_table(fitted[["user_id", "time_days", "event"]].astype({"event": "int64"})),
            "score_rows": column_table(scored[["user_id", "last_active_day", *COVARIATES]]),
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
            "survival_risk": tx.replace_partition("survival_risk", risks, key, ["run_date", "user_id"]),
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
