"""Prophet quality on data with a future: anomaly flags vs the synthetic truth, forecasts vs realized weeks.

Runs against the local stack (``source .local/stack.env``; r-forecast-plumber up) the
code the DAG runs: the prophet pipeline's extract, ``fit_request`` and the service's
``/prophet/fit`` per chunk. Per seed it loads ``--students`` synthetic students whose
simulation ends ``--future-weeks`` weeks after the run date T (so the weeks after T
are realized outcomes the run never saw) and rebuilds ``weekly_kpi``; then:

* anomalies: flagged student-weeks (either series) vs ``synthetic_truth_anomaly`` in
  the window, for the students sent to the service; precision, recall, recall of spikes
  and dips at ``PROPHET_ANOMALY_THRESHOLD`` and over a range of thresholds;
* the count baseline (issue 12): weekly attempts vs the student's own other weeks
  (robust z = (n - median) / (1.4826 MAD) of the other weeks), with as many flags as
  the model; and the flat-median negative control of issue 18 (robust z of I_t
  around the student's median above 2.5);
* the ceiling: injected weeks that no rule reading weekly counts can tell from
  ordinary weeks (a dip to zero attempts of a student with zero weeks of their own);
  and the oracle: the model's own activity test (the same tail probability of the
  week's sessions, scored on the same weeks) given each student's TRUE session rate
  and attempts per session from the truth tables, i.e. without the noise of
  estimating them from 11 other weeks: what that test can reach at each threshold,
  alone and with the model's learning_index flags;
* calibration: the share of ordinary (not injected) scored weeks each series flags,
  against the nominal two-sided share 2 Phi(-threshold) of a calibrated score;
* forecasts of fitted students vs realized I_t in the ``PROPHET_FORECAST_WEEKS`` weeks
  after T: MAE, MASE against the naive forecast (mean of the last 4 weeks of the
  window), coverage of the interval.

    python bench/prophet_quality.py --seeds 42 1 3 --output docs/bench-prophet-quality.md

``--dump-dir DIR`` also writes, per seed, the series the DAG sends (``series_<seed>.csv``, and
the whole request ``request_<seed>.json``), the injected weeks (``truth_<seed>.csv``) and the
true habits (``habits_<seed>.csv``); the request and the truth are the input of
``bench/prophet_anomaly_tails.R`` (other tail probabilities of the activity test, offline).

Then the DAG itself runs for T (``airflow dags test forecast_prophet``) and the
scoreboard's own prophet scoring (``learning_analytics.evaluation.evaluate_prophet``,
as ``evaluate_models`` runs it at T + future weeks) scores what it wrote: the lead's
definitions (truth over every student in ``prophet_fit_meta``, including skipped ones;
the count rule of ``evaluation.count_rule_flags``), next to this script's own.

It replaces the source tables of the warehouse it points at (the local dev warehouse).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from learning_analytics import synthetic  # noqa: E402
from learning_analytics.evaluation import EvaluationWindow, evaluate_prophet  # noqa: E402
from learning_analytics.kpi import build_weekly_kpi  # noqa: E402
from learning_analytics.pipeline import RunContext  # noqa: E402
from learning_analytics.pipelines.prophet import ProphetPipeline, fit_payload  # noqa: E402
from learning_analytics.settings import EvaluationSettings, KpiSettings, ProphetSettings  # noqa: E402
from learning_analytics.warehouse import Warehouse  # noqa: E402
from learning_analytics.windows import weekly_window  # noqa: E402

RUN_DATE = date(2026, 11, 23)
CURVE_THRESHOLDS = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)
# Flags are requested at the lowest threshold of the curve; scores do not depend on it.
REQUEST_THRESHOLD = min(CURVE_THRESHOLDS)


@dataclass
class SeedData:
    seed: int
    kpi: pd.DataFrame  # weekly_kpi of the whole simulation (window and future)
    truth: pd.DataFrame  # injected weeks in the window of the students sent
    habits: pd.DataFrame  # true sessions per week, attempts per session and churn day per student
    sent: set[int]
    window_start: date
    window_end: date


def prepare(seed: int, students: int, history_weeks: int, future_weeks: int) -> SeedData:
    """Load one synthetic population with a future and rebuild weekly_kpi for all of it."""
    end_date = RUN_DATE + timedelta(weeks=future_weeks)
    weeks = history_weeks + future_weeks
    data = synthetic.generate(n_students=students, n_weeks=weeks, seed=seed, end_date=end_date)
    synthetic.load(os.environ["ANALYTICS_DB_URI"], data)
    warehouse = Warehouse()
    build_weekly_kpi(warehouse, weekly_window(end_date, weeks), KpiSettings.from_env())
    kpi = _kpi_frame(warehouse)
    window = weekly_window(RUN_DATE, ProphetSettings.from_env().lookback_weeks)
    truth = data.truth_anomaly.copy()
    truth["week_start"] = pd.to_datetime(truth["week_start"]).dt.date
    truth = truth[(truth["week_start"] >= window.start) & (truth["week_start"] < window.end)]
    habits = data.truth_student[["user_id", "sessions_per_week", "attempts_per_session", "churned_on"]]
    return SeedData(seed, kpi, truth, habits, set(), window.start, window.end)


def _kpi_frame(warehouse: Warehouse) -> pd.DataFrame:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT user_id, week_start, n_attempts, i_t FROM weekly_kpi ORDER BY user_id, week_start")
        return pd.DataFrame(cur.fetchall(), columns=["user_id", "week_start", "n_attempts", "i_t"])


def dump(data: SeedData, directory: Path) -> None:
    """The DAG's series of the window (CSV, and the whole ``/prophet/fit`` request as JSON),
    the injected weeks and the true habits (CSV)."""
    settings = ProphetSettings.from_env()
    series = Warehouse().query_frame(
        "prophet/weekly_series.sql",
        {
            "window_start": data.window_start,
            "window_end": data.window_end,
            "min_active_weeks": settings.min_active_weeks,
        },
    )
    directory.mkdir(parents=True, exist_ok=True)
    series.to_csv(directory / f"series_{data.seed}.csv", index=False)
    (directory / f"request_{data.seed}.json").write_text(json.dumps(fit_payload(series, settings), allow_nan=False))
    data.truth.to_csv(directory / f"truth_{data.seed}.csv", index=False)
    data.habits.to_csv(directory / f"habits_{data.seed}.csv", index=False)


def fit(settings: ProphetSettings) -> tuple[list[dict[str, Any]], float]:
    """The pipeline's extract and one /prophet/fit per chunk, as the DAG does."""
    pipeline = ProphetPipeline()
    run = RunContext(window=pipeline.window(RUN_DATE, settings), settings=settings, dag_id="bench", run_id="bench")
    extracted = pipeline.extract(Warehouse(), run)
    started = time.monotonic()
    results = [
        pipeline.fit_shard(pipeline.service(), shard, index, run) for index, shard in enumerate(extracted.shards)
    ]
    return results, time.monotonic() - started


def flags_frame(results: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [pd.DataFrame(result["fit"]["anomalies"]) for result in results]
    flags = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    flags = flags.rename(columns={"series_id": "user_id", "ds": "week_start"})
    flags["user_id"] = flags["user_id"].astype("int64")
    flags["week_start"] = pd.to_datetime(flags["week_start"]).dt.date
    return flags


def statuses(results: list[dict[str, Any]]) -> dict[int, str]:
    out: dict[int, str] = {}
    for result in results:
        response = result["fit"]
        for fit_ in response["fits"]:
            out[int(fit_["series_id"])] = fit_["status"]
        failures = response.get("failures") or {}
        for series_id, status in zip(failures.get("series_id") or [], failures.get("status") or [], strict=True):
            out[int(series_id)] = status
    return out


def detection(flagged: set[tuple[int, date]], truth: pd.DataFrame) -> dict[str, float]:
    """Precision, recall and recall by kind of a set of flagged (user, week)."""
    kinds = {
        (u, w): ("spike" if f > 1 else "dip")
        for u, w, f in truth[["user_id", "week_start", "activity_factor"]].itertuples(index=False)
    }
    hits = flagged & kinds.keys()
    n_spikes = sum(kind == "spike" for kind in kinds.values())
    return {
        "flags": len(flagged),
        "truth": len(kinds),
        "precision": len(hits) / len(flagged) if flagged else float("nan"),
        "recall": len(hits) / len(kinds) if kinds else float("nan"),
        "spike_recall": sum(kinds[h] == "spike" for h in hits) / n_spikes if n_spikes else float("nan"),
        "dip_recall": sum(kinds[h] == "dip" for h in hits) / (len(kinds) - n_spikes)
        if len(kinds) > n_spikes
        else float("nan"),
    }


def robust_z_others(values: np.ndarray) -> np.ndarray:
    """Each value against the median and 1.4826 MAD of the other values (MAD floored at 1 count)."""
    z = np.zeros(len(values))
    for i in range(len(values)):
        others = np.delete(values, i)
        median = np.median(others)
        mad = max(1.4826 * np.median(np.abs(others - median)), 1.0)
        z[i] = (values[i] - median) / mad
    return z


def window_history(data: SeedData) -> pd.DataFrame:
    kpi = data.kpi
    history = kpi[(kpi["week_start"] >= data.window_start) & (kpi["week_start"] < data.window_end)]
    return history[history["user_id"].isin(data.sent)]


def until_last_active(weeks: pd.DataFrame) -> pd.DataFrame:
    """A student's weeks up to the last with attempts (after it, no week can be an injected anomaly)."""
    active = weeks["n_attempts"].to_numpy() > 0
    return weeks.iloc[: int(np.flatnonzero(active).max()) + 1] if active.any() else weeks.iloc[:0]


def count_baseline(data: SeedData, n_flags: int) -> set[tuple[int, date]]:
    """The count rule with the model's number of flags: top |robust z| of weekly attempts.

    Given the same knowledge as the model that weeks after the last active week are
    the end of activity, not anomalies (without it the baseline flags churn).
    """
    scored = []
    for user_id, weeks in window_history(data).groupby("user_id"):
        weeks = until_last_active(weeks)
        if len(weeks) < 4:
            continue
        z = robust_z_others(weeks["n_attempts"].to_numpy(dtype=float))
        scored += [(abs(score), user_id, week) for score, week in zip(z, weeks["week_start"], strict=True)]
    scored.sort(reverse=True)
    return {(user_id, week) for _, user_id, week in scored[:n_flags]}


def flat_median_control(data: SeedData, threshold: float = 2.5) -> set[tuple[int, date]]:
    """Issue 18's negative control: I_t against the student's own median, robust z > threshold."""
    flagged = set()
    for user_id, weeks in window_history(data).groupby("user_id"):
        values = weeks["i_t"].to_numpy(dtype=float)
        median = np.median(values)
        mad = max(1.4826 * np.median(np.abs(values - median)), 1e-6)
        flagged |= {
            (user_id, w) for w, v in zip(weeks["week_start"], values, strict=True) if abs(v - median) / mad > threshold
        }
    return flagged


def ceiling(data: SeedData) -> dict[str, float]:
    """Injected weeks that weekly counts cannot tell apart from the student's ordinary weeks.

    A dip that left zero attempts, in a student who has other weeks without attempts that
    were not injected: any rule on counts must flag the ordinary zero weeks too.
    """
    history = window_history(data).set_index(["user_id", "week_start"])["n_attempts"]
    truth_keys = set(zip(data.truth["user_id"], data.truth["week_start"], strict=True))
    hopeless = 0
    for user_id, week, factor in data.truth[["user_id", "week_start", "activity_factor"]].itertuples(index=False):
        if factor >= 1 or user_id not in data.sent or history.get((user_id, week), -1) != 0:
            continue
        own = history.loc[user_id]
        ordinary_zeros = sum(
            1 for w, n in own.items() if n == 0 and (user_id, w) not in truth_keys and w < own[own > 0].index.max()
        )
        hopeless += ordinary_zeros > 0
    n_truth = int(data.truth["user_id"].isin(data.sent).sum())
    return {
        "hopeless": hopeless,
        "truth": n_truth,
        "recall_ceiling": 1 - hopeless / n_truth if n_truth else float("nan"),
    }


def oracle_activity_scores(data: SeedData) -> pd.Series:
    """The model's activity test with each student's true rates: score per (user_id, week_start).

    The week's sessions are its attempts over the true attempts per session; the score
    is the z of the one-sided mid-p tail of Poisson(true sessions per week, cut by the
    churn day in the week the student left) at that continuous count, the limit of the
    service's negative-binomial tail (``activity_scores()``) when the rate is known
    exactly. Same weeks as the model: up to the last active week, without a dip in the
    last active week of a student inactive in the window's last 2 weeks.
    """
    habits = data.habits.set_index("user_id")
    scores = {}
    for user_id, weeks in window_history(data).groupby("user_id"):
        counts = weeks["n_attempts"].to_numpy(dtype=float)
        inactive = counts[-2:].sum() == 0
        weeks = until_last_active(weeks)
        if weeks.empty:
            continue
        student = habits.loc[user_id]
        alive = np.ones(len(weeks))
        if student["churned_on"] is not None:
            days_left = np.array([(student["churned_on"] - week).days for week in weeks["week_start"]])
            alive = np.clip(days_left / 7, 0, 1)
        rate = student["sessions_per_week"] * alive
        sessions = weeks["n_attempts"].to_numpy(dtype=float) / student["attempts_per_session"]
        spike = sessions > rate
        # Mid-p tails of N ~ Poisson(rate), continuous in x (regularized gamma), as the
        # service's: (P(N >= x) + P(N >= x + 1)) / 2 and (P(N <= x) + P(N <= x - 1)) / 2.
        at_least = special.gammainc(np.maximum(sessions, 1e-9), rate)
        at_most = special.gammaincc(sessions + 1, rate)
        tail = np.where(
            spike,
            0.5 * (at_least + special.gammainc(sessions + 1, rate)),
            0.5 * (at_most + special.gammaincc(np.maximum(sessions, 1e-9), rate)),
        )
        score = np.maximum(0.0, stats.norm.isf(tail))
        if inactive and not spike[-1]:
            score[-1] = 0.0
        scores.update(zip(((user_id, week) for week in weeks["week_start"]), score, strict=True))
    return pd.Series(scores, dtype=float)


def calibration(data: SeedData, flags: pd.DataFrame, threshold: float) -> dict[str, float]:
    """Share of ordinary scored weeks flagged per series, vs 2 Phi(-threshold) for a calibrated score.

    Scored weeks: activity, every week up to the student's last active week; learning_index,
    every week with attempts. Ordinary: not an injected week.
    """
    history = window_history(data)
    truth_keys = set(zip(data.truth["user_id"], data.truth["week_start"], strict=True))
    scored = pd.concat([until_last_active(weeks) for _, weeks in history.groupby("user_id")])
    weeks = {
        "activity": set(zip(scored["user_id"], scored["week_start"], strict=True)),
        "learning_index": set(zip(history["user_id"], history["week_start"], strict=True))
        - set(zip(*history.loc[history["n_attempts"] == 0, ["user_id", "week_start"]].T.to_numpy(), strict=True)),
    }
    out = {"nominal": 2 * stats.norm.sf(threshold)}
    for series, keys in weeks.items():
        flagged = flags[(flags["series"] == series) & (flags["score"] > threshold)]
        flagged_keys = set(zip(flagged["user_id"], flagged["week_start"], strict=True)) - truth_keys
        ordinary = keys - truth_keys
        out[series] = len(flagged_keys & ordinary) / len(ordinary) if ordinary else float("nan")
    return out


def forecast_accuracy(data: SeedData, results: list[dict[str, Any]], status: dict[int, str]) -> dict[str, float]:
    forecast = pd.concat([pd.DataFrame(result["fit"]["forecast"]) for result in results], ignore_index=True)
    forecast = forecast.rename(columns={"series_id": "user_id", "ds": "week_start"})
    forecast["user_id"] = forecast["user_id"].astype("int64")
    forecast["week_start"] = pd.to_datetime(forecast["week_start"]).dt.date
    realized = forecast.merge(data.kpi, on=["user_id", "week_start"], how="inner")
    last4 = data.kpi[
        (data.kpi["week_start"] >= data.window_end - timedelta(weeks=4)) & (data.kpi["week_start"] < data.window_end)
    ]
    naive = last4.groupby("user_id")["i_t"].mean().rename("naive")
    realized = realized.merge(naive, left_on="user_id", right_index=True)
    error = (realized["yhat"] - realized["i_t"]).abs()
    naive_error = (realized["naive"] - realized["i_t"]).abs()
    covered = (realized["yhat_lower"] <= realized["i_t"]) & (realized["i_t"] <= realized["yhat_upper"])
    horizon = ((pd.to_datetime(realized["week_start"]) - pd.Timestamp(data.window_end)).dt.days // 7) + 1
    width = realized["yhat_upper"] - realized["yhat_lower"]
    return {
        "n_forecasts": len(realized),
        "mae": error.mean(),
        "naive_mae": naive_error.mean(),
        "mase": error.mean() / naive_error.mean(),
        "coverage": covered.mean(),
        "coverage_by_horizon": [round(float(covered[horizon == h].mean()), 3) for h in sorted(horizon.unique())],
        "width_by_horizon": [round(float(width[horizon == h].mean()), 2) for h in sorted(horizon.unique())],
        "below_zero": int((forecast["yhat_lower"] < 0).sum()),
        "n_inactive": sum(s == "inactive" for s in status.values()),
    }


def evaluate(data: SeedData, results: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    status = statuses(results)
    data.sent = set(status)
    data.truth = data.truth[data.truth["user_id"].isin(data.sent)]
    flags = flags_frame(results)
    week_score = flags.groupby(["user_id", "week_start"])["score"].max()
    curve = []
    for t in CURVE_THRESHOLDS:
        flagged = set(week_score[week_score > t].index)
        curve.append({"threshold": t, **detection(flagged, data.truth)})
    at_default = set(week_score[week_score > threshold].index)
    by_series = {
        series: detection(
            set(group.loc[group["score"] > threshold].set_index(["user_id", "week_start"]).index), data.truth
        )
        for series, group in flags.groupby("series")
    }
    oracle = oracle_activity_scores(data)
    learning_index = flags[(flags["series"] == "learning_index") & (flags["score"] > threshold)]
    learning_index_flags = set(zip(learning_index["user_id"], learning_index["week_start"], strict=True))
    oracle_curve = [
        {
            "threshold": t,
            "activity": detection(set(oracle[oracle > t].index), data.truth),
            "with_learning_index": detection(set(oracle[oracle > t].index) | learning_index_flags, data.truth),
        }
        for t in CURVE_THRESHOLDS
    ]
    return {
        "seed": data.seed,
        "model": detection(at_default, data.truth),
        "oracle_curve": oracle_curve,
        "calibration": calibration(data, flags, threshold),
        "by_series": by_series,
        "baseline": detection(count_baseline(data, len(at_default)), data.truth),
        "flat_median": detection(flat_median_control(data), data.truth),
        "ceiling": ceiling(data),
        "curve": curve,
        "forecast": forecast_accuracy(data, results, status),
        "statuses": pd.Series(status).value_counts().to_dict(),
    }


def scoreboard(future_weeks: int) -> dict[str, tuple[float | None, float | None]]:
    """Run the DAG for T as the demo does, then the scoreboard's prophet scoring at T + future weeks.

    Returns {metric (horizon): (model value, baseline value)}.
    """
    subprocess.run(
        ["airflow", "dags", "test", "forecast_prophet", RUN_DATE.isoformat(), "-c", json.dumps({})],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    window = EvaluationWindow.for_run(RUN_DATE + timedelta(weeks=future_weeks), EvaluationSettings.from_env())
    rows = evaluate_prophet(Warehouse(), window, EvaluationSettings.from_env())
    return {f"{row['metric']} ({row['horizon']})": (row["value"], row["baseline_value"]) for row in rows}


def fmt(value: float) -> str:
    return f"{value:.2f}"


def report(runs: list[dict[str, Any]], args: argparse.Namespace, threshold: float, seconds: list[float]) -> str:
    command = "python bench/prophet_quality.py " + " ".join(
        ["--seeds", *map(str, args.seeds), "--students", str(args.students), "--output", args.output]
        + (["--dump-dir", str(args.dump_dir)] if args.dump_dir else [])
    )
    lines = [
        "# Prophet quality: anomaly flags and forecasts against the synthetic truth",
        "",
        "Command (local stack up, `source .local/stack.env`):",
        "",
        f"```sh\n{command}\n```",
        "",
        f"{args.students} synthetic students per seed, {args.history_weeks} weeks of history before the run date "
        f"{RUN_DATE} and {args.future_weeks} realized weeks after it; the DAG's 12-week window; "
        f"`PROPHET_ANOMALY_THRESHOLD` = {threshold}. A student-week counts as flagged when either series "
        "(learning_index or activity) flags it. Baseline: the count rule (robust z of weekly attempts against the "
        "student's other weeks) with as many flags as the model. Flat median: issue 18's negative control "
        "(robust z of I_t around the student's median > 2.5).",
        "",
        "## Anomalies at the default threshold",
        "",
        "| seed | flags | injected | precision | recall | spike recall | dip recall | baseline precision"
        " | baseline recall | baseline spike recall | flat-median precision | flat-median recall | recall ceiling |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        m, b, f, c = run["model"], run["baseline"], run["flat_median"], run["ceiling"]
        lines.append(
            f"| {run['seed']} | {m['flags']} | {m['truth']} | {fmt(m['precision'])} | {fmt(m['recall'])} | "
            f"{fmt(m['spike_recall'])} | {fmt(m['dip_recall'])} | {fmt(b['precision'])} | {fmt(b['recall'])} | "
            f"{fmt(b['spike_recall'])} | {fmt(f['precision'])} | {fmt(f['recall'])} | {fmt(c['recall_ceiling'])} |"
        )
    total = {
        key: sum(
            run["model"][key] * (run["model"]["flags"] if key == "precision" else run["model"]["truth"]) for run in runs
        )
        for key in ("precision", "recall")
    }
    n_flags = sum(run["model"]["flags"] for run in runs)
    n_truth = sum(run["model"]["truth"] for run in runs)
    lines += [
        "",
        f"Pooled over seeds: precision {total['precision'] / n_flags:.3f}, recall {total['recall'] / n_truth:.3f}.",
        "",
        "By series (flags of one series alone):",
        "",
        "| seed | series | flags | precision | recall | spike recall | dip recall |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        for series, d in run["by_series"].items():
            lines.append(
                f"| {run['seed']} | {series} | {d['flags']} | {fmt(d['precision'])} | {fmt(d['recall'])} | "
                f"{fmt(d['spike_recall'])} | {fmt(d['dip_recall'])} |"
            )
    lines += [
        "",
        "## Precision-recall over thresholds",
        "",
        "| threshold | " + " | ".join(f"seed {run['seed']} precision / recall" for run in runs) + " |",
        "|---:|" + "---:|" * len(runs),
    ]
    for i, t in enumerate(CURVE_THRESHOLDS):
        cells = [f"{fmt(run['curve'][i]['precision'])} / {fmt(run['curve'][i]['recall'])}" for run in runs]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Calibration: ordinary weeks flagged",
        "",
        f"Share of the scored weeks that were not injected which each series flags at {threshold}, against the "
        "share a calibrated two-sided score flags, 2 Phi(-threshold). activity: the mid-p tail of a count is close "
        "to nominal (the whole-count tail was below it where counts are small). learning_index: below nominal, "
        "since each week's yardstick is at least its own sampling error (the dispersion is floored at 1).",
        "",
        "| seed | nominal | activity | learning_index |",
        "|---:|---:|---:|---:|",
    ]
    for run in runs:
        c = run["calibration"]
        lines.append(f"| {run['seed']} | {c['nominal']:.4f} | {c['activity']:.4f} | {c['learning_index']:.4f} |")
    lines += [
        "",
        "## Ceiling: the activity test with the true rates (oracle)",
        "",
        "The model's activity test given each student's true sessions per week and attempts per session (truth",
        "tables), so without the noise of estimating them from the other weeks; same scored weeks. Precision / recall",
        "(spike recall, dip recall) of its flags alone, and together with the model's learning_index flags at the",
        f"default threshold ({threshold}).",
        "",
        "| threshold | "
        + " | ".join(f"seed {run['seed']} oracle activity" for run in runs)
        + " | "
        + " | ".join(f"seed {run['seed']} oracle + learning_index" for run in runs)
        + " |",
        "|---:|" + "---:|" * (2 * len(runs)),
    ]
    for i, t in enumerate(CURVE_THRESHOLDS):
        cells = []
        for key in ("activity", "with_learning_index"):
            for run in runs:
                d = run["oracle_curve"][i][key]
                cells.append(
                    f"{fmt(d['precision'])} / {fmt(d['recall'])} ({fmt(d['spike_recall'])}, {fmt(d['dip_recall'])})"
                )
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Forecasts of fitted students vs realized weeks",
        "",
        "| seed | statuses | forecasts | MAE | naive MAE | MASE | 80% coverage | coverage by horizon"
        " | mean width by horizon | lower bound < 0 |",
        "|---:|---|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for run in runs:
        f = run["forecast"]
        lines.append(
            f"| {run['seed']} | {run['statuses']} | {f['n_forecasts']} | {fmt(f['mae'])} | {fmt(f['naive_mae'])} | "
            f"{f['mase']:.3f} | {f['coverage']:.3f} | {f['coverage_by_horizon']} | {f['width_by_horizon']} | "
            f"{f['below_zero']} |"
        )
    lines += ["", f"Fit time (all chunks, seconds): {', '.join(f'{s:.1f}' for s in seconds)}.", ""]
    lines += [
        "## The scoreboard's scoring of the DAG's run (`evaluation.evaluate_prophet`)",
        "",
        "The DAG run for T, scored by the lead's evaluation code (truth over every student in `prophet_fit_meta`,",
        "skipped ones included; baseline `count_rule` / `naive_4w`). Model value / baseline value per seed.",
        "",
        "| metric | " + " | ".join(f"seed {run['seed']}" for run in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    for metric in runs[0]["scoreboard"]:
        cells = []
        for run in runs:
            value, baseline = run["scoreboard"].get(metric, (None, None))
            cells.append(" / ".join("-" if number is None else f"{number:.3f}" for number in (value, baseline)))
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 3])
    parser.add_argument("--students", type=int, default=400)
    parser.add_argument("--history-weeks", type=int, default=16)
    parser.add_argument("--future-weeks", type=int, default=8)
    parser.add_argument("--output", default="docs/bench-prophet-quality.md")
    parser.add_argument("--dump-dir", type=Path, help="also write each seed's series, truth and habits here (CSV)")
    args = parser.parse_args(argv)
    settings = ProphetSettings.from_params({"PROPHET_ANOMALY_THRESHOLD": REQUEST_THRESHOLD})
    threshold = ProphetSettings.from_env().anomaly_threshold
    runs, seconds = [], []
    for seed in args.seeds:
        data = prepare(seed, args.students, args.history_weeks, args.future_weeks)
        if args.dump_dir:
            dump(data, args.dump_dir)
        results, elapsed = fit(settings)
        seconds.append(elapsed)
        run = evaluate(data, results, threshold)
        run["scoreboard"] = scoreboard(args.future_weeks)
        runs.append(run)
        print(seed, run["model"], run["baseline"], run["forecast"], run["ceiling"], flush=True)
    text = report(runs, args, threshold, seconds)
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
