"""Prospective accuracy of the churn risk S against what happened after the run date.

For each seed: synthetic students whose data run 8 weeks past the run date T (so the
weeks after T are the realized outcomes; every query of the pipeline reads only data
before T), weekly KPI built up to T, then exactly the DAG's code: the survival
pipeline's extract, ``fit_shard`` (fit + predict on r-forecast-plumber) and its
active-risk rows. The realized outcome of a student is the scoreboard's: a gap of
``SURVIVAL_EVENT_THRESHOLD_DAYS`` days without attempts is under way or completes
within ``SURVIVAL_HORIZON_DAYS`` days of T (for a student last active on day a before
T: no attempt on a + 1 .. a + T).

Compared with two baselines fitted on the same landmark rows: the Kaplan-Meier
average risk (one number for everybody who is not churned) and a Cox model on days
idle only. Metrics: AUC, Brier score, calibration-in-the-large (mean S - observed
rate), over every student of the window (the churned ones have S = 1 and are churned
by definition) and over those not churned at T (what the model actually predicts).
Writes ``docs/bench-survival-quality.md``.

    source .local/stack.env
    python bench/survival_quality.py --students 400 --seeds 42 1 3
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from learning_analytics import synthetic  # noqa: E402
from learning_analytics.kpi import build_weekly_kpi  # noqa: E402
from learning_analytics.pipeline import RunContext  # noqa: E402
from learning_analytics.pipelines.survival import (  # noqa: E402
    SurvivalPipeline,
    active_risk_rows,
    fit_rows,
    score_rows,
)
from learning_analytics.settings import KpiSettings, SurvivalSettings  # noqa: E402
from learning_analytics.warehouse import Warehouse  # noqa: E402
from learning_analytics.windows import weekly_window  # noqa: E402

RUN_DATE = date(2026, 11, 23)
WEEKS_AFTER = 8
WEEKS = 24


def auc(score: np.ndarray, outcome: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count one half)."""
    positive, negative = score[outcome == 1], score[outcome == 0]
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    greater = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positive) * len(negative)))


def metrics(score: np.ndarray, outcome: np.ndarray) -> dict[str, float]:
    return {
        "n": len(score),
        "rate": float(outcome.mean()),
        "auc": auc(score, outcome),
        "brier": float(np.mean((score - outcome) ** 2)),
        "citl": float(score.mean() - outcome.mean()),
    }


def kaplan_meier_risk(time_days: np.ndarray, event: np.ndarray, horizon: int) -> float:
    """1 - KM survival at the horizon over the landmark rows."""
    survival = 1.0
    for t in np.unique(time_days[(event == 1) & (time_days <= horizon)]):
        at_risk = (time_days >= t).sum()
        survival *= 1 - ((time_days == t) & (event == 1)).sum() / at_risk
    return 1 - survival


def realized(users: pd.Series, attempts_days: pd.DataFrame, run_date: date, threshold: int) -> np.ndarray:
    """1 when the student's gap from their last active day before T reaches T idle days."""
    last_before = attempts_days[attempts_days["day"] < run_date].groupby("user_id")["day"].max()
    after = attempts_days[attempts_days["day"] >= run_date]
    outcome = []
    for user in users:
        last = last_before[user]
        returned = after[(after["user_id"] == user) & (after["day"] <= last + timedelta(days=threshold))]
        outcome.append(int(returned.empty))
    return np.array(outcome)


def run_seed(seed: int, students: int) -> list[dict]:
    data = synthetic.generate(
        n_students=students, n_weeks=WEEKS, seed=seed, end_date=RUN_DATE + timedelta(weeks=WEEKS_AFTER)
    )
    warehouse = Warehouse()
    synthetic.load(warehouse.connect(), data)
    build_weekly_kpi(warehouse, weekly_window(RUN_DATE, 20), KpiSettings.from_env())

    pipeline = SurvivalPipeline()
    settings = SurvivalSettings.from_env()
    run = RunContext(window=pipeline.window(RUN_DATE, settings), settings=settings, dag_id="bench", run_id="bench")
    extracted = pipeline.extract(warehouse, run)
    assert not extracted.skip_reason, extracted.skip_reason
    observations = extracted.shards[0]
    service = pipeline.service()
    result = pipeline.fit_shard(service, observations, 0, run)
    risk = active_risk_rows(result, RUN_DATE)

    fitted = fit_rows(observations)
    idle_fit = service.call(
        "survival/fit",
        {
            "data": {
                "user_id": fitted["user_id"].tolist(),
                "time": fitted["time_days"].tolist(),
                "event": fitted["event"].astype(int).tolist(),
                "days_idle": fitted["days_idle"].tolist(),
            },
            "covariates": ["days_idle"],
            "monotone": ["days_idle"],
            "horizon_days": settings.horizon_days,
        },
    )
    scored = score_rows(observations)
    idle_prediction = service.call(
        "survival/predict",
        {
            "model_id": idle_fit["model_id"],
            "data": {"user_id": scored["user_id"].tolist(), "days_idle": scored["days_idle"].tolist()},
            "horizon_days": settings.horizon_days,
        },
    )
    km_risk = kaplan_meier_risk(
        fitted["time_days"].to_numpy(), fitted["event"].to_numpy(dtype=int), settings.horizon_days
    )

    attempts = data.attempts
    local_day = attempts["attempted_at"].dt.tz_convert(run.window.timezone).dt.date
    attempt_days = pd.DataFrame({"user_id": attempts["user_id"], "day": local_day}).drop_duplicates()
    risk["outcome"] = realized(risk["user_id"], attempt_days, RUN_DATE, settings.event_threshold_days)
    idle_p = dict(zip(idle_prediction["user_id"], idle_prediction["p_event"], strict=True))
    churned = risk["status"] == "churned"
    risk["idle_only"] = [1.0 if c else idle_p[u] for u, c in zip(risk["user_id"], churned, strict=True)]
    risk["kaplan_meier"] = np.where(churned, 1.0, km_risk)

    rows = []
    for population, subset in (("all in window", risk), ("not churned at T", risk[~churned])):
        outcome = subset["outcome"].to_numpy()
        for model, column in (("landmark Cox (S)", "p_event"), ("days idle only", "idle_only"),
                              ("Kaplan-Meier", "kaplan_meier")):  # fmt: skip
            rows.append(
                {
                    "seed": seed,
                    "population": population,
                    "model": model,
                    **metrics(subset[column].to_numpy(dtype=float), outcome),
                }  # fmt: skip
            )
    fit = result["fit"]
    rows.append(
        {
            "seed": seed,
            "population": "fit",
            "model": "held-out concordance",
            "n": fit["n"],
            "rate": fit["n_events"] / fit["n"],
            "auc": fit["concordance"],
            "brier": float("nan"),
            "citl": float("nan"),
        }  # fmt: skip
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 3])
    args = parser.parse_args()
    table = pd.DataFrame([row for seed in args.seeds for row in run_seed(seed, args.students)])
    pd.set_option("display.width", 200)
    print(table.round(3).to_string(index=False))
    summary = table.groupby(["population", "model"], sort=False)[["n", "rate", "auc", "brier", "citl"]].agg(
        ["mean", "min", "max"]
    )
    print(summary.round(3).to_string())
    command = f"python bench/survival_quality.py --students {args.students} --seeds {' '.join(map(str, args.seeds))}"
    out = ROOT / "docs" / "bench-survival-quality.md"
    out.write_text(
        "# Survival: prospective accuracy of S\n\n"
        f"Made with `{command}` (local stack; {args.students} synthetic students, {WEEKS} weeks ending "
        f"{WEEKS_AFTER} weeks after the run date {RUN_DATE}; see the script's docstring for the definitions).\n\n"
        "Per seed:\n\n" + table.round(3).to_markdown(index=False) + "\n\n"
        "Over the seeds (mean, min, max):\n\n" + summary.round(3).to_markdown() + "\n",
        encoding="utf-8",
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
