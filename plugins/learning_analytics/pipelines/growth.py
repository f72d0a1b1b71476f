"""Bayesian growth: brms hierarchical model of weekly accuracy -> goal probabilities.

Model (r-brms-plumber): ``accuracy ~ 1 + week + (1 + week | user_id)`` with
weakly-informative priors (gaussian on accuracy, or binomial on counts).

Two ways to fit it (``BRMS_FIT_MODE``):

``two_stage`` (default, platform scale with full pooling)
    brms cost grows faster than the data and large fits stop converging, but the
    population parameters are pinned down by a few hundred students. Stage 1 (the
    ``prepare`` task) fits brms on a stratified sample of ``BRMS_STAGE1_STUDENTS``
    students and keeps the posterior draws of the population parameters. Stage 2 (the
    mapped ``fit`` tasks, ``BRMS_CHUNK_SIZE`` students each) draws every student's
    intercept and slope from their conditional posterior given each population draw,
    in numpy (learning_analytics.growth_stage2): closed form for gaussian, Laplace
    with importance correction for binomial. Stage 2 runs in the Airflow worker, not
    on the service: it is a few vectorised array operations per chunk, so shipping
    chunks and draws over HTTP to a single-threaded plumber process would only add
    serialisation and queueing; the service stays busy with what needs MCMC.
``full``
    a brms fit of every student, in shards of at most ``BRMS_SHARD_SIZE`` (one shard =
    full pooling); for small populations and to validate the two-stage fit.

Diagnostics are judged once, by the service (max Rhat <= ``BRMS_MAX_RHAT`` over the
population parameters, their bulk ESS >= ``BRMS_MIN_ESS``, no divergences): on the
stage-1 fit, or on every shard of a full fit. That answer is the run's
``converged``; a run that fails it writes no P and records why.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from learning_analytics.growth_stage2 import Population, conditional_posteriors
from learning_analytics.kpi import update_weekly_kpi_p
from learning_analytics.pipeline import (
    Extracted,
    ModelPipeline,
    RunContext,
    chunk_by_key,
    column_table,
    frame_from_columns,
)
from learning_analytics.quality import TableGate, not_null, one_row_per, probability
from learning_analytics.r_service import RServiceHook, idempotency_key
from learning_analytics.settings import GrowthSettings, KpiSettings
from learning_analytics.warehouse import Warehouse, WarehouseTransaction, to_json
from learning_analytics.windows import RunWindow, weekly_window

log = logging.getLogger(__name__)

#: Weeks with fewer attempts are not used as observations (too noisy).
MIN_WEEKLY_ATTEMPTS = 5
#: Normal quantile of the 95% interval of combined population effects.
Z_95 = 1.959964
#: No P for a student without an attempt in this many days before the week's end.
INACTIVE_DAYS = 14
#: Per-student columns of the extract that persist needs besides the fit.
TARGET_COLUMNS = ["goal", "target_week", "usual_attempts", "last_week_attempts", "last_attempt_date"]

DOC_MD = """
### Bayesian growth (brms)

Will each student reach their accuracy goal? Fits the hierarchical growth model
`accuracy ~ 1 + week + (1 + week | user_id)` and writes:

* **`growth_brms_meta`**: one row per run: settings, fit mode, status (`ok`,
  `poor_diagnostics`, `skipped`) and why, population intercept and weekly slope,
  max Rhat / min bulk ESS / divergences, the stage-1 fit and the chunks/shards, timing;
* **`growth_brms_user`**: per student: intercept, slope (with 95% interval), goal,
  target week, usual weekly attempts and `p_goal`: the posterior predictive probability
  that the student's **observed** accuracy in the target week, at their usual weekly
  number of attempts, is at least the goal (target week = the exam week, at most
  `GOAL_HORIZON_WEEKS` after the window, never before its last week). NULL with
  `p_null_reason` for a student with no attempt in the last 14 days or none in the
  window's last week, and for everyone when diagnostics failed;
* **`weekly_kpi.P`** (+ `p_target_week`) of the window's last week, recomputed by P's one
  definition (`include/sql/kpi/weekly_kpi_p.sql`, the KPI builder's): this run's P
  (`p_source = 'brms'`) when `METRICS_USE_BAYESIAN` is true and the run converged, else
  the simple estimate.

**Fit mode** `BRMS_FIT_MODE`: `two_stage` (default): `prepare` fits brms on a stratified
sample of `BRMS_STAGE1_STUDENTS` students (everyone if fewer; logged), then each mapped
`fit` task computes the posterior of `BRMS_CHUNK_SIZE` students given the stage-1
population draws (`BRMS_STAGE2_DRAWS` of them), in the worker. `full`: one brms fit per
shard of `BRMS_SHARD_SIZE` students (`prepare` does nothing).
**Converged** means, for the stage-1 fit (or every shard of a full fit): max Rhat over the
population parameters <= `BRMS_MAX_RHAT` (1.01), bulk ESS >= `BRMS_MIN_ESS` (400), no
divergent transitions. Otherwise the run is `poor_diagnostics`, its message says which
check failed, and no P is written.
**Window**: the `LOOKBACK_WEEKS` complete weeks before the logical date (8 by
default, 12 in production). Weeks with fewer than 5 attempts are not observations.
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


def stage1_sample(observations: pd.DataFrame, n_students: int, seed: int) -> pd.DataFrame:
    """The students of the stage-1 fit: a stratified sample of ``n_students``.

    Students are ordered by weeks observed, then mean accuracy (random ties), and taken
    systematically every ``N / n`` from a random start: a proportional sample across
    data richness and level (implicit stratification), so the population sds are
    estimated from the same mix of students the population has. All students when
    ``n_students`` is at least the population.
    """
    per_student = observations.groupby("user_id").agg(weeks=("week", "size"), accuracy=("accuracy", "mean"))
    if n_students >= len(per_student):
        return observations
    rng = np.random.default_rng(seed)
    per_student["tie"] = rng.random(len(per_student))
    ordered = per_student.sort_values(["weeks", "accuracy", "tie"]).index.to_numpy()
    step = len(ordered) / n_students
    picks = np.floor(rng.uniform(0, step) + step * np.arange(n_students)).astype(int)
    return observations[observations["user_id"].isin(ordered[picks])].reset_index(drop=True)


def p_null_reasons(users: pd.DataFrame, window_end: date, converged: bool) -> pd.Series:
    """Why a student gets no P (None = P is written), in order of precedence."""
    last_attempt = pd.to_datetime(users["last_attempt_date"]).dt.date
    inactive = last_attempt < window_end - timedelta(days=INACTIVE_DAYS)
    reasons = pd.Series([None] * len(users), index=users.index, dtype=object)
    reasons[users["last_week_attempts"] == 0] = "no_attempts_in_week"
    reasons[inactive] = "inactive_14_days"
    if not converged:
        reasons[:] = "diagnostics_failed"
    return reasons


def student_targets(shard: pd.DataFrame) -> pd.DataFrame:
    """One row per student: user_id and :data:`TARGET_COLUMNS` (dates as ISO text)."""
    targets = shard.groupby("user_id", as_index=False)[TARGET_COLUMNS].first()
    targets["last_attempt_date"] = pd.to_datetime(targets["last_attempt_date"]).dt.strftime("%Y-%m-%d")
    return targets


def fit_payload(shard: pd.DataFrame, shard_index: int, settings: GrowthSettings) -> dict[str, Any]:
    """The ``/growth/fit`` body of one shard (or of the stage-1 sample: shard 0)."""
    return {
        "data": column_table(shard[["user_id", "week", "accuracy", "n_attempts", "n_correct"]]),
        "family": settings.family,
        "iter": settings.iterations,
        "max_iter": max(settings.max_iterations, settings.iterations),
        "chains": settings.chains,
        "seed": settings.seed + shard_index,
        "adapt_delta": settings.adapt_delta,
        "max_rhat": settings.max_rhat,
        "min_ess_bulk": settings.min_ess,
    }


def p_settings(settings: GrowthSettings) -> KpiSettings:
    """The KPI builder's P settings (``KPI_P_HISTORY_WEEKS`` for the simple estimate of
    students without a growth P), with this run's goal horizon and P source."""
    return dataclasses.replace(
        KpiSettings.from_env(),
        goal_horizon_weeks=settings.goal_horizon_weeks,
        metrics_use_bayesian=settings.metrics_use_bayesian,
    )


def run_settings(run: RunContext[GrowthSettings]) -> dict[str, Any]:
    """What a run used, for ``growth_brms_meta.settings``."""
    return {**run.settings.as_dict(), "LA_TIMEZONE": run.window.timezone, "min_weekly_attempts": MIN_WEEKLY_ATTEMPTS}


def meta_row(
    results: Sequence[dict[str, Any]],
    extracted: dict[str, Any],
    stage1: dict[str, Any] | None,
    run: RunContext[GrowthSettings],
) -> dict[str, Any]:
    """The run's ``growth_brms_meta`` row: status, the one ``converged`` (the service's
    answer on stage 1, or on every shard of a full fit) and why not."""
    window, settings = run.window, run.settings
    summary = extracted.get("summary") or {}
    parts = sorted(results, key=lambda result: result["shard"])
    shards = [
        {
            "shard": part["shard"],
            "n_users": part["n_users"],
            "n_obs": part["n_obs"],
            "elapsed_s": part["elapsed_s"],
            "passed": part["passed"],
            **(
                {
                    "model_id": part["fit"]["model_id"],
                    **part["fit"]["diagnostics"],
                    "fixed_effects": part["fit"]["fixed_effects"],
                }
                if "fit" in part
                else {}
            ),
        }
        for part in parts
    ]
    # The fits whose diagnostics decide: stage 1, or every shard of a full fit.
    judged = [stage1] if stage1 is not None else [part["fit"] for part in parts if "fit" in part]
    diagnostics = [fit["diagnostics"] for fit in judged]
    combined = combine_fixed_effects([fit["fixed_effects"] for fit in judged])
    slope = next((effect for effect in combined if effect["term"] == "week"), None)
    if extracted.get("skip_reason"):
        status, message = "skipped", extracted["skip_reason"]
    elif diagnostics and all(d["converged"] for d in diagnostics):
        status, message = "ok", None
    else:
        status = "poor_diagnostics"
        failed = [
            f"{'stage 1' if stage1 is not None else f'shard {index}'}: {d.get('reason')}"
            for index, d in enumerate(diagnostics)
            if not d["converged"]
        ]
        message = "not converged, no P written: " + "; ".join(failed)
    stage1_record = {name: value for name, value in stage1.items() if name != "population_draws"} if stage1 else None
    return {
        "run_date": window.run_date,
        "window_start": window.start,
        "window_end": window.end,
        "status": status,
        "message": message,
        "settings": to_json(run_settings(run)),
        "family": settings.family,
        "fit_mode": settings.fit_mode,
        "stage1": to_json(stage1_record) if stage1_record else None,
        "n_users": sum(shard["n_users"] for shard in shards) if shards else summary.get("n_users", 0),
        "n_obs": sum(shard["n_obs"] for shard in shards) if shards else summary.get("n_obs", 0),
        "n_shards": len(shards),
        "fixed_effects": to_json(combined) if combined else None,
        "slope": slope["estimate"] if slope else None,
        "slope_lower": slope["lower"] if slope else None,
        "slope_upper": slope["upper"] if slope else None,
        "rhat_max": max((d["rhat_max"] for d in diagnostics), default=None),
        "ess_bulk_min": min((d["ess_bulk_min"] for d in diagnostics), default=None),
        "divergences": sum(d["divergences"] for d in diagnostics) if diagnostics else None,
        "converged": status == "ok",
        "shards": to_json(shards),
        "elapsed_s": (stage1["elapsed_s"] if stage1 else 0) + sum(shard["elapsed_s"] for shard in shards)
        if shards
        else None,
    }


def user_rows(results: Sequence[dict[str, Any]], window: RunWindow, converged: bool) -> pd.DataFrame:
    """``growth_brms_user`` rows; P is NULL with its reason where it must not be written."""
    columns = [
        "run_date", "user_id", "shard", "shard_converged", "intercept", "slope", "slope_lower",
        "slope_upper", "goal", "target_week", "target_week_start", "usual_attempts", "p_goal",
        "p_null_reason", "mean", "lower", "upper",
    ]  # fmt: skip
    frames = []
    for result in results:
        users = frame_from_columns(result["users"])
        users["shard"] = result["shard"]
        users["shard_converged"] = result["passed"]
        frames.append(users)
    if not frames:
        return pd.DataFrame(columns=columns)
    users = pd.concat(frames, ignore_index=True)
    users["run_date"] = window.run_date
    users["target_week_start"] = [window.start + timedelta(weeks=int(week)) for week in users["target_week"]]
    users["p_null_reason"] = p_null_reasons(users, window.end, converged)
    users.loc[users["p_null_reason"].notna(), "p_goal"] = None
    return users.reindex(columns=columns)


class GrowthPipeline(ModelPipeline[GrowthSettings]):
    """extract weekly accuracy -> [stage 1] -> fit chunks/shards -> meta, users, weekly_kpi.P."""

    settings_cls = GrowthSettings
    service_conn_id = "r_brms"
    fit_endpoint = "growth/fit"
    tags = ("learning-analytics", "model", "brms")
    fit_timeout_s = 1800.0
    has_prepare_step = True

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
        per_part = settings.chunk_size if settings.fit_mode == "two_stage" else settings.shard_size
        shards = chunk_by_key(observations, "user_id", per_part)
        summary["n_shards"] = len(shards)
        return Extracted(shards=shards, summary=summary)

    def fit_request(self, shard: pd.DataFrame, shard_index: int, run: RunContext[GrowthSettings]) -> dict[str, Any]:
        return fit_payload(shard, shard_index, run.settings)

    # -- two-stage ---------------------------------------------------------------------

    def prepare(
        self, service: RServiceHook, shards: Sequence[pd.DataFrame], run: RunContext[GrowthSettings]
    ) -> dict[str, Any] | None:
        """Stage 1: brms on a stratified sample; returns the population draws and diagnostics."""
        settings = run.settings
        if settings.fit_mode != "two_stage":
            return None
        observations = pd.concat(shards, ignore_index=True)
        n_population = int(observations["user_id"].nunique())
        if settings.stage1_students >= n_population:
            log.info(
                "stage 1: BRMS_STAGE1_STUDENTS=%s >= %s students: fitting the whole population",
                settings.stage1_students,
                n_population,
            )
        sample = stage1_sample(observations, settings.stage1_students, settings.seed)
        log.info(
            "stage 1: brms on %s of %s students (%s weeks)", sample["user_id"].nunique(), n_population, len(sample)
        )
        request = self.fit_request(sample, 0, run)
        # A fit job like the mapped fits; the key re-attaches a retry of the task to it.
        key = idempotency_key(run.dag_id, run.run_id, "prepare", -1, request)
        fit = service.fit(self.fit_endpoint, request, idempotency_key=key, timeout_s=self.fit_timeout_s)
        diagnostics = fit["diagnostics"]
        log.log(
            logging.INFO if diagnostics["converged"] else logging.WARNING,
            "stage 1: rhat_max %s, ess_bulk_min %s, divergences %s -> %s",
            diagnostics["rhat_max"],
            diagnostics["ess_bulk_min"],
            diagnostics["divergences"],
            "converged" if diagnostics["converged"] else f"NOT CONVERGED ({diagnostics.get('reason')}): no P",
        )
        draws = Population.from_fit(settings.family, fit["population_draws"], fit.get("binomial_variance_mean"))
        thinned = draws.thinned(settings.stage2_draws)
        return {
            "model_id": fit["model_id"],
            "n_users": fit["n_users"],
            "n_population": n_population,
            "n_obs": fit["n_obs"],
            "elapsed_s": fit["elapsed_s"],
            "diagnostics": diagnostics,
            "fixed_effects": fit["fixed_effects"],
            "binomial_variance_mean": fit.get("binomial_variance_mean"),
            "population_draws": {
                name: getattr(thinned, name).tolist()
                for name in ("intercept", "slope", "sd_intercept", "sd_slope", "cor", "sigma")
            },
        }

    def fit_shard(
        self, service: RServiceHook, shard: pd.DataFrame, shard_index: int, run: RunContext[GrowthSettings]
    ) -> dict[str, Any]:
        """full: a brms fit of the shard; two_stage: stage 2 for the chunk, in this worker."""
        settings = run.settings
        if settings.fit_mode != "two_stage":
            return super().fit_shard(service, shard, shard_index, run)
        stage1 = self.prepared(run)
        if stage1 is None:
            raise RuntimeError("two_stage: the prepare task staged no stage-1 result for this run")
        started = time.monotonic()
        population = Population.from_fit(settings.family, stage1["population_draws"], stage1["binomial_variance_mean"])
        users = conditional_posteriors(
            shard, population, (0, settings.lookback_weeks - 1), seed=settings.seed + 1 + shard_index
        )
        users = student_targets(shard).merge(users.drop(columns="ess"), on="user_id")
        elapsed = time.monotonic() - started
        log.info("stage 2, chunk %s: %s students in %.1f s", shard_index, len(users), elapsed)
        return {
            "shard": shard_index,
            "passed": bool(stage1["diagnostics"]["converged"]),
            "n_users": len(users),
            "n_obs": len(shard),
            "elapsed_s": round(elapsed, 3),
            "users": column_table(users),
        }

    def poll_fit(
        self,
        service: RServiceHook,
        shard: pd.DataFrame,
        shard_index: int,
        run: RunContext[GrowthSettings],
        key_parts: tuple[str, str, str, int],
    ) -> dict[str, Any] | None:
        """two_stage: stage 2 is computed in the task itself (no service job to poll)."""
        if run.settings.fit_mode == "two_stage":
            return self.fit_shard(service, shard, shard_index, run)
        return super().poll_fit(service, shard, shard_index, run, key_parts)

    # -- full fit ----------------------------------------------------------------------

    def fit_result(
        self,
        service: RServiceHook,
        fit: dict[str, Any],
        shard: pd.DataFrame,
        shard_index: int,
        run: RunContext[GrowthSettings],
    ) -> dict[str, Any]:
        diagnostics = fit["diagnostics"]
        log.log(
            logging.INFO if diagnostics["converged"] else logging.WARNING,
            "shard %s: %s users, rhat_max %s, ess_bulk_min %s, divergences %s -> %s",
            shard_index,
            fit["n_users"],
            diagnostics.get("rhat_max"),
            diagnostics.get("ess_bulk_min"),
            diagnostics.get("divergences"),
            "converged" if diagnostics["converged"] else f"NOT CONVERGED ({diagnostics.get('reason')}): no P",
        )
        targets = student_targets(shard)
        prediction = service.call(
            "growth/predict",
            {
                "model_id": fit["model_id"],
                "data": column_table(
                    targets[["user_id", "target_week", "goal", "usual_attempts"]].rename(
                        columns={"target_week": "week", "usual_attempts": "n_attempts"}
                    )
                ),
            },
        )
        users = targets.merge(frame_from_columns(fit["users"]), on="user_id", how="left").merge(
            frame_from_columns(prediction).drop(columns=["n_attempts", "known_user"]), on="user_id", how="left"
        )
        fit = {key: value for key, value in fit.items() if key not in ("users", "population_draws")}
        return {
            "shard": shard_index,
            "passed": bool(diagnostics["converged"]),
            "n_users": fit["n_users"],
            "n_obs": fit["n_obs"],
            "elapsed_s": fit["elapsed_s"],
            "fit": fit,
            "users": column_table(users),
        }

    # -- persist -----------------------------------------------------------------------

    def persist(
        self,
        tx: WarehouseTransaction,
        results: Sequence[dict[str, Any]],
        extracted: dict[str, Any],
        run: RunContext[GrowthSettings],
    ) -> dict[str, Any]:
        window, settings = run.window, run.settings
        key = {"run_date": window.run_date}
        stage1 = self.prepared(run) if settings.fit_mode == "two_stage" and results else None
        meta = meta_row(results, extracted, stage1, run)
        written = {
            "growth_brms_meta": tx.replace_partition("growth_brms_meta", pd.DataFrame([meta]), key, ["run_date"])
        }
        users = user_rows(results, window, meta["converged"])
        written["growth_brms_user"] = tx.replace_partition("growth_brms_user", users, key, ["run_date", "user_id"])
        # P of the week this run is about, by its one definition (the KPI builder's SQL),
        # which now sees this run: its P where it converged and METRICS_USE_BAYESIAN is on.
        # The week is the window's last: the one complete week before the run date.
        last_week = weekly_window(window.run_date, 1, window.timezone)
        written["weekly_kpi.p"] = update_weekly_kpi_p(tx, last_week, p_settings(settings))
        log.info(
            "growth run %s: status %s, converged %s, %s", window.run_date, meta["status"], meta["converged"], written
        )
        return {"status": meta["status"], "converged": meta["converged"], **written}
