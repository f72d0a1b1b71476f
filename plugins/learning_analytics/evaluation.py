"""The model scoreboard: predictions of earlier runs scored on what happened next.

``evaluate_models`` (weekly) looks at every model run dated in the
``EVAL_LOOKBACK_WEEKS`` before its logical date whose outcome window has closed by
then, reads what actually happened from the warehouse (the ``attempt`` view and the
KPI built from it, so it works unchanged on real data) and scores each run beside a
simple baseline computed on the same students:

========  ==========================================  =================================
model     metrics                                     baselines
========  ==========================================  =================================
growth    Brier, log loss, AUC, calibration by decile  climatological rate; simple P
          of P(goal) vs "observed accuracy in the
          target week >= goal"
prophet   MAE, MASE, interval coverage of the I_t      naive: mean of the last 4 weeks
          forecasts, by horizon
survival  AUC, Brier, calibration-in-the-large of S   average risk (Kaplan-Meier);
          vs realized 14-day inactivity                days-idle-only risk
cluster   ARI between consecutive runs, share of       activity-level segmentation
          students whose segment changed
========  ==========================================  =================================

Where the warehouse holds a synthetic data set (``synthetic_run`` has a row) and
only there, the truth is scored too: anomaly precision/recall by kind (baseline: a
count-based rule with as many flags), segment ARI vs the true segments, growth
slope correlation vs the true slopes (baseline: per-student least squares).

Outcome windows are read strictly before ``outcome_end`` (the Monday that starts
the evaluation run's week): the scoreboard never peeks at the current week.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from learning_analytics import scoring
from learning_analytics.scoring import Score
from learning_analytics.settings import EvaluationSettings
from learning_analytics.warehouse import Warehouse, WarehouseTransaction, to_json
from learning_analytics.windows import week_start

log = logging.getLogger(__name__)

MODELS = ("growth", "prophet", "survival", "cluster")
#: Weeks of history behind the naive forecast (the issue's "mean of the last 4 weeks").
NAIVE_WEEKS = 4
#: Past landmarks (one per week) behind the days-idle-only churn baseline.
IDLE_BASELINE_LANDMARKS = 4
#: Days-idle values seen fewer times than this at the landmarks borrow the pooled rate.
IDLE_BASELINE_MIN_N = 10


#: Which way each metric is better: -1 lower, +1 higher, 0 closer to zero; metrics
#: not listed (e.g. interval coverage, judged against its nominal level) have no
#: verdict.
METRIC_DIRECTION: dict[str, int] = {
    "brier": -1, "brier_vs_simple": -1, "brier_vs_idle": -1, "log_loss": -1, "log_loss_vs_simple": -1,
    "auc": 1, "calibration_max_error": -1, "calibration_in_the_large": 0,
    "mae": -1, "mase": -1,
    "anomaly_precision": 1, "anomaly_recall": 1, "anomaly_recall_spike": 1, "anomaly_recall_dip": 1,
    "stability_ari": 1, "share_changed": -1, "ari_truth": 1, "slope_corr_truth": 1,
}  # fmt: skip


def verdict(metric: str, value: float | None, baseline_value: float | None) -> str:
    """``better`` / ``WORSE`` / ``same`` than the baseline, or ``-`` when not comparable."""
    direction = METRIC_DIRECTION.get(metric)
    if direction is None or value is None or baseline_value is None:
        return "-"
    if direction == 0:
        value, baseline_value = -abs(value), -abs(baseline_value)
    elif direction < 0:
        value, baseline_value = -value, -baseline_value
    if abs(value - baseline_value) < 1e-9:
        return "same"
    return "better" if value > baseline_value else "WORSE"


@dataclass(frozen=True)
class EvaluationWindow:
    """Which runs an evaluation scores and up to when it may read outcomes."""

    evaluated_for: date
    #: Runs dated in ``[since, until)`` are candidates.
    since: date
    until: date
    #: Outcomes are read strictly before this day.
    outcome_end: date

    @classmethod
    def for_run(cls, run_date: date, settings: EvaluationSettings) -> EvaluationWindow:
        outcome_end = week_start(run_date)
        return cls(
            evaluated_for=run_date,
            since=outcome_end - timedelta(weeks=settings.lookback_weeks),
            until=outcome_end,
            outcome_end=outcome_end,
        )


def metric_row(
    model: str,
    run_date: date,
    horizon: str,
    metric: str,
    score: Score,
    baseline: str | None = None,
    baseline_score: Score | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """One ``model_evaluation`` row (without ``evaluated_for``)."""
    notes = [text for text in (note, score.reason) if text]
    if baseline_score is not None and baseline_score.reason:
        notes.append(f"baseline: {baseline_score.reason}")
    detail = dict(score.detail)
    if baseline_score is not None and baseline_score.detail:
        detail["baseline"] = baseline_score.detail
    return {
        "model": model,
        "run_date": run_date,
        "horizon": horizon,
        "metric": metric,
        "value": score.value,
        "baseline": baseline,
        "baseline_value": None if baseline_score is None else baseline_score.value,
        "n": score.n,
        "note": "; ".join(notes) or None,
        "detail": to_json(detail) if detail else None,
    }


# --- growth ------------------------------------------------------------------------


def growth_outcomes(predictions: pd.DataFrame) -> pd.DataFrame:
    """Rows with an observation in the target week, with ``reached`` = accuracy >= goal."""
    observed = predictions[predictions["n_attempts"] > 0].copy()
    observed["reached"] = (observed["n_correct"] / observed["n_attempts"] >= observed["goal"] - 1e-9).astype(int)
    return observed


def score_growth(
    predictions: pd.DataFrame,
    settings: EvaluationSettings,
    slope_truth: pd.DataFrame | None = None,
    ls_slopes: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Rows of one growth run from ``growth_predictions.sql`` output (one run_date)."""
    run_date = predictions["run_date"].iloc[0]
    rows: list[dict[str, Any]] = []
    observed = growth_outcomes(predictions)
    n_unobserved = len(predictions) - len(observed)
    note = f"{n_unobserved} students without attempts in their target week left out" if n_unobserved else None
    p, y = observed["p_goal"].to_numpy(float), observed["reached"].to_numpy(int)
    # Climatology: the share of this run's history weeks in which these students
    # reached their goal, known at the run date.
    weeks, hits = observed["history_weeks"].sum(), observed["history_hits"].sum()
    climatology = np.full(len(observed), hits / weeks if weeks else np.nan)
    has_climatology = bool(weeks)
    simple = observed["simple_p"].to_numpy(float)
    with_simple = ~np.isnan(simple)

    def climatological(metric: Callable[..., Score]) -> Score:
        if not has_climatology:
            return Score(None, 0, "no history weeks with attempts")
        return metric(climatology, y)

    for name, metric in (("brier", scoring.brier), ("log_loss", scoring.log_loss)):
        rows.append(
            metric_row(
                "growth", run_date, "target_week", name, metric(p, y), "climatology", climatological(metric), note
            )
        )
        if with_simple.any():
            rows.append(
                metric_row(
                    "growth",
                    run_date,
                    "target_week",
                    f"{name}_vs_simple",
                    metric(p[with_simple], y[with_simple]),
                    "simple_p",
                    metric(simple[with_simple], y[with_simple]),
                    "students with a simple P for the run's last week",
                )
            )
    rows.append(
        metric_row(
            "growth",
            run_date,
            "target_week",
            "auc",
            scoring.auc(p, y),
            "simple_p",
            scoring.auc(simple[with_simple], y[with_simple]) if with_simple.any() else Score(None, 0, "no simple P"),
            note,
        )
    )
    rows.append(
        metric_row(
            "growth",
            run_date,
            "target_week",
            "calibration_max_error",
            scoring.calibration_bins(p, y, settings.calibration_bins, settings.min_bin_students),
            "climatology",
            scoring.calibration_bins(climatology, y, settings.calibration_bins, settings.min_bin_students)
            if has_climatology
            else Score(None, 0, "no history weeks with attempts"),
            note,
        )
    )
    rows.append(
        metric_row(
            "growth",
            run_date,
            "target_week",
            "event_rate",
            Score(float(y.mean()) if len(y) else None, len(y), None if len(y) else "no cases to score"),
            note="share of students whose observed accuracy reached the goal",
        )
    )
    if slope_truth is not None and ls_slopes is not None:
        rows.append(growth_slope_row(predictions, slope_truth, ls_slopes))
    return rows


def growth_slope_row(predictions: pd.DataFrame, truth: pd.DataFrame, ls_slopes: pd.DataFrame) -> dict[str, Any]:
    """Correlation of the fitted per-student slopes with the true ones (synthetic data)."""
    run_date = predictions["run_date"].iloc[0]
    merged = (
        predictions[["user_id", "slope"]].dropna().merge(truth, on="user_id").merge(ls_slopes, on="user_id", how="left")
    )
    baseline = merged.dropna(subset=["ls_slope"])
    return metric_row(
        "growth",
        run_date,
        "window",
        "slope_corr_truth",
        scoring.pearson(merged["slope"], merged["weekly_slope"]),
        "least_squares",
        scoring.pearson(baseline["ls_slope"], baseline["weekly_slope"]),
        "synthetic truth: Pearson r of per-student slopes with the true weekly slopes",
    )


def least_squares_slopes(weekly: pd.DataFrame) -> pd.DataFrame:
    """Per-student ordinary least-squares slope of accuracy on week (>= 3 weeks)."""

    def slope(group: pd.DataFrame) -> float:
        if len(group) < 3 or group["week"].nunique() < 2:
            return float("nan")
        return float(np.polyfit(group["week"].astype(float), group["accuracy"].astype(float), 1)[0])

    if weekly.empty:
        return pd.DataFrame(columns=["user_id", "ls_slope"])
    slopes = weekly.groupby("user_id")[["week", "accuracy"]].apply(slope)
    return slopes.rename("ls_slope").reset_index()


def evaluate_growth(
    warehouse: Warehouse, window: EvaluationWindow, settings: EvaluationSettings
) -> list[dict[str, Any]]:
    runs = warehouse.query_frame("evaluation/growth_runs.sql", {"since": window.since, "until": window.until})
    if runs.empty:
        log.info("growth: no fitted runs dated %s .. %s", window.since, window.until)
        return []
    predictions = warehouse.query_frame(
        "evaluation/growth_predictions.sql",
        {"run_dates": list(runs["run_date"]), "outcome_end": window.outcome_end},
    )
    truth = _truth_students(warehouse)
    rows: list[dict[str, Any]] = []
    for run in runs.itertuples():
        run_predictions = predictions[predictions["run_date"] == run.run_date]
        if run_predictions.empty:
            log.info("growth run %s: no target week closed before %s yet", run.run_date, window.outcome_end)
            continue
        ls_slopes = None
        if truth is not None:
            weekly = warehouse.query_frame(
                "evaluation/growth_weekly_accuracy.sql",
                {
                    "user_ids": list(run_predictions["user_id"]),
                    "window_start": run.window_start,
                    "window_end": run.window_end,
                },
            )
            ls_slopes = least_squares_slopes(weekly)
        run_rows = score_growth(
            run_predictions, settings, None if truth is None else truth[["user_id", "weekly_slope"]], ls_slopes
        )
        log.info("growth run %s (%s): %s students scored", run.run_date, run.status, len(run_predictions))
        rows += run_rows
    return rows


# --- prophet -----------------------------------------------------------------------


def count_rule_flags(activity: pd.DataFrame, n_flags: int) -> set[tuple[int, date]]:
    """The count-based anomaly baseline: the ``n_flags`` most unusual student-weeks.

    Each week's attempts are compared with the median of the student's other weeks
    of the window, scaled by their MAD (leave-one-out, so a week never hides itself);
    the largest absolute robust z-scores are flagged. Raw counts, not logs: on a log
    scale every ordinary skipped week (0 attempts) would look extreme. Weeks after a
    student's last active week are left out, and so are students with fewer than
    three active weeks.
    """
    if n_flags <= 0 or activity.empty:
        return set()
    scored = []
    for user_id, weeks in activity.groupby("user_id"):
        values = weeks["n_attempts"].to_numpy(float)
        # Weeks after the last active one are a student who left, not anomalies.
        active = np.flatnonzero(values > 0)
        if len(active) < 3:
            continue
        values = values[: active[-1] + 1]
        weeks = weeks.iloc[: active[-1] + 1]
        for index, week in enumerate(weeks["week_start"]):
            others = np.delete(values, index)
            median = np.median(others)
            mad = 1.4826 * np.median(np.abs(others - median))
            z = (values[index] - median) / max(mad, 1.0)
            scored.append((abs(z), int(user_id), week))
    scored.sort(key=lambda item: item[0], reverse=True)
    return {(user_id, week) for _, user_id, week in scored[:n_flags]}


def score_prophet_forecasts(run_date: date, forecasts: pd.DataFrame) -> list[dict[str, Any]]:
    """MAE, MASE and interval coverage, over all horizons and per horizon."""
    rows: list[dict[str, Any]] = []
    groups = [("all", forecasts)] + [(f"{int(h)}w", group) for h, group in forecasts.groupby("horizon_weeks")]
    for horizon, group in groups:
        actual, yhat, naive = group["actual"], group["yhat"], group["naive"]
        rows.append(
            metric_row(
                "prophet",
                run_date,
                horizon,
                "mae",
                scoring.mean_absolute_error(yhat, actual),
                "naive_4w",
                scoring.mean_absolute_error(naive, actual),
                "I_t forecasts vs weekly_kpi.I_t",
            )
        )
        rows.append(
            metric_row(
                "prophet",
                run_date,
                horizon,
                "mase",
                scoring.mase(yhat, naive, actual),
                "naive_4w",
                Score(1.0 if len(group) else None, len(group)),
                "MAE(model) / MAE(naive: mean I_t of the last 4 weeks); below 1 beats naive",
            )
        )
        with_interval = group.dropna(subset=["yhat_lower", "yhat_upper"])
        rows.append(
            metric_row(
                "prophet",
                run_date,
                horizon,
                "interval_coverage",
                scoring.interval_coverage(
                    with_interval["yhat_lower"], with_interval["yhat_upper"], with_interval["actual"]
                ),
                note="share of realized I_t inside [yhat_lower, yhat_upper]",
            )
        )
    return rows


def score_prophet_anomalies(
    run_date: date, flags: pd.DataFrame, truth: pd.DataFrame, activity: pd.DataFrame
) -> list[dict[str, Any]]:
    """Precision/recall of the flags vs the injected anomalies, overall and by kind."""
    flagged = {(int(r.user_id), r.week_start) for r in flags.itertuples()}
    baseline = count_rule_flags(activity, len(flagged))
    rows = []
    note = "synthetic truth; baseline: count-based robust-z rule with as many flags"
    for kind in ("all", "spike", "dip"):
        kind_truth = truth if kind == "all" else truth[truth["kind"] == kind]
        true_set = {(int(r.user_id), r.week_start) for r in kind_truth.itertuples()}
        precision, recall = scoring.precision_recall(flagged, true_set)
        base_precision, base_recall = scoring.precision_recall(baseline, true_set)
        if kind == "all":
            rows.append(
                metric_row(
                    "prophet", run_date, "window", "anomaly_precision", precision, "count_rule", base_precision, note
                )
            )
            rows.append(
                metric_row("prophet", run_date, "window", "anomaly_recall", recall, "count_rule", base_recall, note)
            )
        else:
            rows.append(
                metric_row(
                    "prophet", run_date, "window", f"anomaly_recall_{kind}", recall, "count_rule", base_recall, note
                )
            )
    return rows


def evaluate_prophet(
    warehouse: Warehouse, window: EvaluationWindow, settings: EvaluationSettings
) -> list[dict[str, Any]]:
    runs = warehouse.query_frame("evaluation/prophet_runs.sql", {"since": window.since, "until": window.until})
    truth_available = _truth_available(warehouse)
    rows: list[dict[str, Any]] = []
    for run in runs.itertuples():
        window_end = week_start(run.run_date)
        forecasts = warehouse.query_frame(
            "evaluation/prophet_forecasts.sql",
            {"run_date": run.run_date, "window_end": window_end, "outcome_end": window.outcome_end},
        )
        if forecasts.empty:
            log.info("prophet run %s: no forecast week closed before %s yet", run.run_date, window.outcome_end)
        else:
            rows += score_prophet_forecasts(run.run_date, forecasts)
            log.info("prophet run %s: %s forecasts scored", run.run_date, len(forecasts))
        if truth_available and run.lookback_weeks:
            params = {
                "run_date": run.run_date,
                "window_start": window_end - timedelta(weeks=int(run.lookback_weeks)),
                "window_end": window_end,
            }
            rows += score_prophet_anomalies(
                run.run_date,
                warehouse.query_frame("evaluation/prophet_flags.sql", params),
                warehouse.query_frame("evaluation/truth_anomalies.sql", params),
                warehouse.query_frame("evaluation/weekly_activity.sql", params),
            )
    return rows


# --- survival ----------------------------------------------------------------------


def gap_completed(active_days: Sequence[date], origin: date, horizon_days: int, threshold_days: int) -> bool:
    """Whether a run of ``threshold_days`` days without attempts is completed on a day
    before ``origin + horizon_days``.

    :param active_days: the student's days with attempts from their last one before
        ``origin`` on (days after the horizon are ignored).
    """
    end = origin + timedelta(days=horizon_days)
    days = sorted(day for day in active_days if day < end)
    if not days:
        raise ValueError("active_days must hold the student's last active day before the origin")
    for current, following in zip(days, [*days[1:], end], strict=True):
        # The gap after ``current`` reaches the threshold on day current + threshold:
        # that day must still be idle (before ``following``) and inside the horizon.
        completed_on = current + timedelta(days=threshold_days)
        if completed_on < following and completed_on < end:
            return True
    return False


def realized_churn(
    activity: pd.DataFrame, user_ids: Sequence[int], origin: date, horizon_days: int, threshold_days: int
) -> pd.DataFrame:
    """Per student active at ``origin``: days idle then, and whether a gap was completed.

    A student is active at ``origin`` when they have an attempt in the
    ``threshold_days`` days before it; others are left out (already churned).
    """
    by_user = activity.groupby("user_id")["day"].apply(list).to_dict() if not activity.empty else {}
    records = []
    for user_id in user_ids:
        days = by_user.get(user_id, [])
        before = [day for day in days if origin - timedelta(days=threshold_days) <= day < origin]
        if not before:
            continue
        last = max(before)
        later = [day for day in days if day >= last]
        records.append(
            {
                "user_id": user_id,
                "days_idle": (origin - last).days - 1,
                "event": int(gap_completed(later, origin, horizon_days, threshold_days)),
            }
        )
    return pd.DataFrame(records, columns=["user_id", "days_idle", "event"])


def idle_rate_table(landmarks: Sequence[pd.DataFrame]) -> tuple[dict[int, float], float]:
    """Event rate by days idle at past landmarks, and the pooled rate."""
    pooled = pd.concat(landmarks, ignore_index=True) if landmarks else pd.DataFrame(columns=["days_idle", "event"])
    if pooled.empty:
        return {}, float("nan")
    overall = float(pooled["event"].mean())
    by_idle = pooled.groupby("days_idle")["event"].agg(["mean", "size"])
    rates = {int(idle): float(row["mean"]) for idle, row in by_idle.iterrows() if row["size"] >= IDLE_BASELINE_MIN_N}
    return rates, overall


def score_survival_run(
    run_date: date, risks: pd.DataFrame, activity: pd.DataFrame, horizon_days: int, threshold_days: int
) -> list[dict[str, Any]]:
    """AUC, Brier and calibration-in-the-large of ``p_event`` for one run."""
    user_ids = [int(user) for user in risks["user_id"]]
    realized = realized_churn(activity, user_ids, run_date, horizon_days, threshold_days)
    scored = risks.merge(realized, on="user_id")
    landmarks = [
        realized_churn(
            activity, user_ids, run_date - timedelta(days=horizon_days + 7 * k), horizon_days, threshold_days
        )
        for k in range(IDLE_BASELINE_LANDMARKS)
    ]
    idle_rates, average_risk = idle_rate_table(landmarks)
    p, y = scored["p_event"].to_numpy(float), scored["event"].to_numpy(int)
    km = np.full(len(scored), average_risk)
    idle_only = np.array([idle_rates.get(int(idle), average_risk) for idle in scored["days_idle"]])
    horizon = f"{horizon_days}d"
    note = (
        f"S vs a completed {threshold_days}-day gap within {horizon_days} days; baselines from "
        f"{IDLE_BASELINE_LANDMARKS} past landmarks (outcomes known at the run date)"
    )
    if np.isnan(average_risk):
        no_history = Score(None, 0, "no students active at the past landmarks")
        km_brier = km_cal = idle_auc = no_history
    else:
        km_brier, km_cal = scoring.brier(km, y), scoring.calibration_in_the_large(km, y)
        idle_auc = scoring.auc(idle_only, y)
    return [
        metric_row("survival", run_date, horizon, "auc", scoring.auc(p, y), "days_idle_only", idle_auc, note),
        metric_row("survival", run_date, horizon, "brier", scoring.brier(p, y), "km_average", km_brier, note),
        metric_row(
            "survival",
            run_date,
            horizon,
            "brier_vs_idle",
            scoring.brier(p, y),
            "days_idle_only",
            scoring.brier(idle_only, y) if not np.isnan(average_risk) else km_brier,
            note,
        ),
        metric_row(
            "survival",
            run_date,
            horizon,
            "calibration_in_the_large",
            scoring.calibration_in_the_large(p, y),
            "km_average",
            km_cal,
            note,
        ),
    ]


def evaluate_survival(
    warehouse: Warehouse, window: EvaluationWindow, settings: EvaluationSettings
) -> list[dict[str, Any]]:
    risks = warehouse.query_frame(
        "evaluation/survival_risk.sql",
        {"since": window.since, "until": window.until, "outcome_end": window.outcome_end},
    )
    rows: list[dict[str, Any]] = []
    for run_date, run_risks in risks.groupby("run_date"):
        horizon_days = int(run_risks["horizon_days"].iloc[0])
        threshold_days = int(run_risks["threshold_days"].iloc[0])
        first_day = run_date - timedelta(days=horizon_days + 7 * IDLE_BASELINE_LANDMARKS + 2 * threshold_days)
        activity = warehouse.query_frame(
            "evaluation/activity_days.sql",
            {"user_ids": list(run_risks["user_id"]), "first_day": first_day, "outcome_end": window.outcome_end},
        )
        rows += score_survival_run(run_date, run_risks, activity, horizon_days, threshold_days)
        log.info("survival run %s: %s students scored", run_date, len(run_risks))
    return rows


# --- cluster -----------------------------------------------------------------------


def activity_segments(assignments: pd.DataFrame, k: int) -> pd.Series:
    """The baseline segmentation: ``k`` equal-count groups of attempts in the window."""
    ranks = assignments["n_attempts"].rank(method="first")
    return pd.Series(np.ceil(ranks.to_numpy() * k / len(ranks)).astype(int), index=assignments["user_id"].to_numpy())


def score_cluster_pair(
    run_date: date, current: pd.DataFrame, previous: pd.DataFrame, k_current: int, k_previous: int
) -> list[dict[str, Any]]:
    """Stability of a run's segments against the previous run's, on students in both."""
    both = current.merge(previous, on="user_id", suffixes=("", "_previous"))
    base_current = activity_segments(current, k_current)
    base_previous = activity_segments(previous, k_previous)
    base = pd.DataFrame({"now": base_current, "before": base_previous}).dropna()
    note = "students segmented in both this run and the previous one; baseline: activity-level segments"
    changed = Score(float((both["segment"] != both["segment_previous"]).mean()) if len(both) else None, len(both))
    base_changed = Score(float((base["now"] != base["before"]).mean()) if len(base) else None, len(base))
    return [
        metric_row(
            "cluster",
            run_date,
            "previous_run",
            "stability_ari",
            scoring.adjusted_rand_index(both["segment"], both["segment_previous"]),
            "activity_quantiles",
            scoring.adjusted_rand_index(base["now"], base["before"]),
            note,
        ),
        metric_row(
            "cluster", run_date, "previous_run", "share_changed", changed, "activity_quantiles", base_changed, note
        ),
    ]


def evaluate_cluster(
    warehouse: Warehouse, window: EvaluationWindow, settings: EvaluationSettings
) -> list[dict[str, Any]]:
    runs = warehouse.query_frame("evaluation/cluster_runs.sql", {"since": window.since, "until": window.until})
    truth = _truth_students(warehouse)
    rows: list[dict[str, Any]] = []
    previous: tuple[Any, pd.DataFrame] | None = None
    for run in runs.itertuples():
        assignments = warehouse.query_frame(
            "evaluation/cluster_assignments.sql",
            {"run_date": run.run_date, "window_start": run.window_start, "window_end": run.window_end},
        )
        if run.run_date >= window.since:
            if previous is not None:
                rows += score_cluster_pair(run.run_date, assignments, previous[1], int(run.k), int(previous[0].k))
            if truth is not None:
                with_truth = assignments.merge(truth, on="user_id", suffixes=("", "_truth"))
                baseline = activity_segments(with_truth, int(run.k))
                rows.append(
                    metric_row(
                        "cluster",
                        run.run_date,
                        "window",
                        "ari_truth",
                        scoring.adjusted_rand_index(with_truth["segment"], with_truth["segment_truth"]),
                        "activity_quantiles",
                        scoring.adjusted_rand_index(baseline.to_numpy(), with_truth["segment_truth"]),
                        "synthetic truth: ARI of the segments with the true segments",
                    )
                )
        previous = (run, assignments)
    return rows


# --- shared ------------------------------------------------------------------------


def _truth_available(warehouse: Warehouse) -> bool:
    return bool(warehouse.query_frame("evaluation/truth_available.sql", {})["available"].iloc[0])


def _truth_students(warehouse: Warehouse) -> pd.DataFrame | None:
    if not _truth_available(warehouse):
        return None
    return warehouse.query_frame("evaluation/truth_students.sql", {})


EVALUATORS: dict[str, Callable[[Warehouse, EvaluationWindow, EvaluationSettings], list[dict[str, Any]]]] = {
    "growth": evaluate_growth,
    "prophet": evaluate_prophet,
    "survival": evaluate_survival,
    "cluster": evaluate_cluster,
}


def persist_evaluation(tx: WarehouseTransaction, evaluated_for: date, model: str, rows: list[dict[str, Any]]) -> int:
    """Replace the ``model_evaluation`` rows of (``evaluated_for``, ``model``)."""
    frame = pd.DataFrame(rows, columns=[
        "model", "run_date", "horizon", "metric", "value", "baseline", "baseline_value", "n", "note", "detail",
    ])  # fmt: skip
    frame.insert(0, "evaluated_for", evaluated_for)
    return tx.replace_partition(
        "model_evaluation",
        frame,
        {"evaluated_for": evaluated_for, "model": model},
        ["evaluated_for", "model", "run_date", "horizon", "metric"],
    )
