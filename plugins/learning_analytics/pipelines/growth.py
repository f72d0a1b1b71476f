"""Bayesian growth: brms hierarchical model of weekly accuracy, fitted in shards.

Model (r-brms-plumber): ``accuracy ~ 1 + week + (1 + week | user_id)`` with
weakly-informative priors (gaussian on accuracy, or binomial on counts).

Why shards: brms cost grows faster than the data and, with default settings, a
1,000-student fit did not converge. Students are split into shards of at most
``BRMS_SHARD_SIZE``; each shard is an independent fit (a mapped task), so more
Airflow workers and service replicas fit more shards at once. Per-student effects
come from the student's own shard. The population effects of the shards are
independent estimates of the same quantities and are combined by precision
weighting (inverse squared posterior SD); each shard's diagnostics are kept.

A shard passes diagnostics when max Rhat <= ``BRMS_MAX_RHAT`` and it had no
divergent transitions. A run with any failing shard is recorded with status
``poor_diagnostics`` and that shard's probabilities are not written to
``weekly_kpi.P``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import pandas as pd

from learning_analytics.pipeline import (
    Extracted,
    ModelPipeline,
    RunContext,
    chunk_by_key,
    column_table,
    frame_from_columns,
)
from learning_analytics.quality import TableGate, not_null, one_row_per, probability
from learning_analytics.r_service import RServiceHook
from learning_analytics.settings import GrowthSettings
from learning_analytics.warehouse import Warehouse, WarehouseTransaction, to_json
from learning_analytics.windows import RunWindow, weekly_window

log = logging.getLogger(__name__)

#: Weeks with fewer attempts are not used as observations (too noisy).
MIN_WEEKLY_ATTEMPTS = 5
#: Normal quantile of the 95% interval of combined population effects.
Z_95 = 1.959964

DOC_MD = """
### Bayesian growth (brms)

Will each student reach their accuracy goal? Fits the hierarchical growth model
`accuracy ~ 1 + week + (1 + week | user_id)` on **r-brms-plumber** and writes:

* **`growth_brms_meta`**: one row per run: settings, status (`ok`,
  `poor_diagnostics`, `skipped`), population intercept and weekly slope combined
  across shards, max Rhat / min bulk ESS / divergences, per-shard diagnostics, timing;
* **`growth_brms_user`**: per student: intercept, slope, goal, target week and
  `p_goal` = posterior probability that the expected accuracy at the target week is
  at least the goal (target week = the exam week, at most `GOAL_HORIZON_WEEKS`
  after the window, never before its last week);
* **`weekly_kpi.P`** of the window's last week (`p_source = 'brms'`) when
  `METRICS_USE_BAYESIAN` is true, only for students of shards whose diagnostics
  passed (max Rhat <= `BRMS_MAX_RHAT`, no divergences).

**Window**: the `LOOKBACK_WEEKS` complete weeks before the logical date (8 by
default, 12 in production). Weeks with fewer than 5 attempts are not observations.
**Shards**: at most `BRMS_SHARD_SIZE` students per mapped `fit` task.
**Too little data** (fewer than `BRMS_MIN_STUDENTS` students or `BRMS_MIN_WEEKS`
weeks): the fit is skipped with a log line and a `skipped` meta row.
**Idempotent**: a rerun of the same logical date replaces the run's rows.
**On failure**: nothing is written (one transaction); fix the cause and clear the
failed task. A 400 from the service names the bad field in the task log.
"""


def combine_fixed_effects(shard_effects: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Precision-weighted combination of each term's estimate across shards.

    Each shard's population estimate is an independent estimate of the same
    parameter, so the combined estimate is ``sum(w * est) / sum(w)`` with
    ``w = 1 / est_error**2`` and SD ``sqrt(1 / sum(w))``; the interval is normal.
    """
    by_term: dict[str, list[dict[str, Any]]] = {}
    for effects in shard_effects:
        for effect in effects:
            by_term.setdefault(effect["term"], []).append(effect)
    combined = []
    for term, effects in by_term.items():
        weights = [1.0 / max(effect["est_error"], 1e-12) ** 2 for effect in effects]
        total = sum(weights)
        estimate = sum(w * effect["estimate"] for w, effect in zip(weights, effects, strict=True)) / total
        est_error = math.sqrt(1.0 / total)
        combined.append(
            {
                "term": term,
                "estimate": estimate,
                "est_error": est_error,
                "lower": estimate - Z_95 * est_error,
                "upper": estimate + Z_95 * est_error,
                "n_shards": len(effects),
            }
        )
    return combined


def shard_passes(diagnostics: dict[str, Any], max_rhat: float) -> bool:
    """Whether a shard's posterior can be trusted: Rhat small and no divergences."""
    rhat = diagnostics.get("rhat_max")
    divergences = diagnostics.get("divergences")
    return rhat is not None and rhat <= max_rhat and divergences == 0


class GrowthPipeline(ModelPipeline[GrowthSettings]):
    """extract weekly accuracy -> fit + predict per shard -> meta, users, weekly_kpi.P."""

    settings_cls = GrowthSettings
    service_conn_id = "r_brms"
    fit_endpoint = "growth/fit"
    tags = ("learning-analytics", "model", "brms")
    fit_timeout_s = 1800.0

    doc_md = DOC_MD
    quality_checks = (
        TableGate(
            "growth_brms_meta",
            checks={
                "one_meta_row": ("exactly one meta row for the run", "count(*) = 1"),
                "diagnostics_passed": (
                    "status is not `poor_diagnostics` (Rhat/divergences); the rows stay recorded, unused by weekly_kpi",
                    "status <> 'poor_diagnostics'",
                ),
                "users_within_meta": (
                    "no more per-student rows than `n_users` fitted",
                    "n_users >= (SELECT count(*) FROM growth_brms_user AS u WHERE u.run_date = {run_date})",
                ),
            },
        ),
        TableGate(
            "growth_brms_user",
            columns={"user_id": not_null(), "p_goal": probability()},
            checks={"one_row_per_student": ("one row per student", one_row_per("user_id"))},
        ),
    )

    def window(self, run_date: date, settings: GrowthSettings) -> RunWindow:
        return weekly_window(run_date, settings.lookback_weeks)

    def extract(self, warehouse: Warehouse, run: RunContext[GrowthSettings]) -> Extracted:
        settings = run.settings
        observations = warehouse.query_frame(
            "growth/weekly_accuracy.sql",
            {
                **run.window.as_sql_params(),
                "n_weeks": settings.lookback_weeks,
                "goal_horizon_weeks": settings.goal_horizon_weeks,
                "min_weekly_attempts": MIN_WEEKLY_ATTEMPTS,
            },
        )
        n_users = observations["user_id"].nunique() if not observations.empty else 0
        n_weeks = observations["week"].nunique() if not observations.empty else 0
        summary = {"n_users": int(n_users), "n_obs": len(observations), "n_weeks": int(n_weeks)}
        if n_users < settings.min_students or n_weeks < settings.min_weeks:
            reason = (
                f"too little data to fit: {n_users} students (minimum BRMS_MIN_STUDENTS={settings.min_students}) "
                f"with data in {n_weeks} weeks (minimum BRMS_MIN_WEEKS={settings.min_weeks})"
            )
            return Extracted(skip_reason=reason, summary=summary)
        shards = chunk_by_key(observations, "user_id", settings.shard_size)
        summary["n_shards"] = len(shards)
        return Extracted(shards=shards, summary=summary)

    def fit_request(self, shard: pd.DataFrame, shard_index: int, run: RunContext[GrowthSettings]) -> dict[str, Any]:
        settings = run.settings
        return {
            "data": column_table(shard[["user_id", "week", "accuracy", "n_attempts", "n_correct"]]),
            "family": settings.family,
            "iter": settings.iterations,
            "chains": settings.chains,
            "seed": settings.seed + shard_index,
            "adapt_delta": settings.adapt_delta,
        }

    def fit_result(
        self,
        service: RServiceHook,
        fit: dict[str, Any],
        shard: pd.DataFrame,
        shard_index: int,
        run: RunContext[GrowthSettings],
    ) -> dict[str, Any]:
        settings = run.settings
        passed = shard_passes(fit["diagnostics"], settings.max_rhat)
        log.log(
            logging.INFO if passed else logging.WARNING,
            "shard %s: %s users, rhat_max %s, ess_bulk_min %s, divergences %s -> %s",
            shard_index,
            fit["n_users"],
            fit["diagnostics"].get("rhat_max"),
            fit["diagnostics"].get("ess_bulk_min"),
            fit["diagnostics"].get("divergences"),
            "diagnostics passed" if passed else "DIAGNOSTICS FAILED: P will not be written",
        )
        targets = shard.groupby("user_id", as_index=False).agg(goal=("goal", "first"), week=("target_week", "first"))
        prediction = service.call(
            "growth/predict",
            {"model_id": fit["model_id"], "data": column_table(targets[["user_id", "week", "goal"]])},
        )
        return {
            "shard": shard_index,
            "passed": passed,
            "fit": fit,
            "targets": column_table(targets.rename(columns={"week": "target_week"})),
            "prediction": prediction,
        }

    def persist(
        self,
        tx: WarehouseTransaction,
        results: Sequence[dict[str, Any]],
        extracted: dict[str, Any],
        run: RunContext[GrowthSettings],
    ) -> dict[str, Any]:
        window, settings = run.window, run.settings
        key = {"run_date": window.run_date}
        meta = self._meta_row(results, extracted, run)
        written = {
            "growth_brms_meta": tx.replace_partition("growth_brms_meta", pd.DataFrame([meta]), key, ["run_date"])
        }
        users = self._user_rows(results, window.run_date)
        written["growth_brms_user"] = tx.replace_partition("growth_brms_user", users, key, ["run_date", "user_id"])
        if settings.metrics_use_bayesian and not users.empty:
            trusted = users[users["shard_converged"] & users["p_goal"].notna()]
            kpi = pd.DataFrame(
                {
                    "user_id": trusted["user_id"],
                    "week_start": window.end - timedelta(days=7),
                    "p": trusted["p_goal"],
                    "p_source": "brms",
                }
            )
            written["weekly_kpi.p"] = tx.update_columns("weekly_kpi", kpi, ["user_id", "week_start"])
        log.info("growth run %s: status %s, %s", window.run_date, meta["status"], written)
        return {"status": meta["status"], **written}

    def _meta_row(
        self, results: Sequence[dict[str, Any]], extracted: dict[str, Any], run: RunContext[GrowthSettings]
    ) -> dict[str, Any]:
        window, settings = run.window, run.settings
        summary = extracted.get("summary") or {}
        shards = [
            {
                "shard": result["shard"],
                "model_id": result["fit"]["model_id"],
                "n_users": result["fit"]["n_users"],
                "n_obs": result["fit"]["n_obs"],
                "elapsed_s": result["fit"]["elapsed_s"],
                "passed": result["passed"],
                **result["fit"]["diagnostics"],
                "fixed_effects": result["fit"]["fixed_effects"],
            }
            for result in sorted(results, key=lambda result: result["shard"])
        ]
        combined = combine_fixed_effects([shard["fixed_effects"] for shard in shards])
        slope = next((effect for effect in combined if effect["term"] == "week"), None)
        if extracted.get("skip_reason"):
            status, message = "skipped", extracted["skip_reason"]
        elif all(shard["passed"] for shard in shards):
            status, message = "ok", None
        else:
            failed = [shard["shard"] for shard in shards if not shard["passed"]]
            status = "poor_diagnostics"
            message = f"shards {failed} failed diagnostics (max Rhat > {settings.max_rhat} or divergences)"
        return {
            "run_date": window.run_date,
            "window_start": window.start,
            "window_end": window.end,
            "status": status,
            "message": message,
            "settings": to_json(settings.as_dict()),
            "family": settings.family,
            "n_users": sum(shard["n_users"] for shard in shards) if shards else summary.get("n_users", 0),
            "n_obs": sum(shard["n_obs"] for shard in shards) if shards else summary.get("n_obs", 0),
            "n_shards": len(shards),
            "fixed_effects": to_json(combined) if combined else None,
            "slope": slope["estimate"] if slope else None,
            "slope_lower": slope["lower"] if slope else None,
            "slope_upper": slope["upper"] if slope else None,
            "rhat_max": max((shard["rhat_max"] for shard in shards), default=None),
            "ess_bulk_min": min((shard["ess_bulk_min"] for shard in shards), default=None),
            "divergences": sum(shard["divergences"] for shard in shards) if shards else None,
            "converged": bool(shards) and status == "ok",
            "shards": to_json(shards),
            "elapsed_s": sum(shard["elapsed_s"] for shard in shards) if shards else None,
        }

    @staticmethod
    def _user_rows(results: Sequence[dict[str, Any]], run_date: date) -> pd.DataFrame:
        frames = []
        for result in results:
            users = (
                frame_from_columns(result["targets"])
                .merge(frame_from_columns(result["fit"]["users"]), on="user_id", how="left")
                .merge(frame_from_columns(result["prediction"]), on="user_id", how="left")
            )
            users["shard"] = result["shard"]
            users["shard_converged"] = result["passed"]
            frames.append(users)
        columns = [
            "run_date", "user_id", "shard", "shard_converged", "intercept", "slope",
            "goal", "target_week", "p_goal", "mean", "lower", "upper",
        ]  # fmt: skip
        if not frames:
            return pd.DataFrame(columns=columns)
        users = pd.concat(frames, ignore_index=True)
        users["run_date"] = run_date
        return users.reindex(columns=columns)
