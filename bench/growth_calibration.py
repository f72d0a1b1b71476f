"""Prospective calibration of the goal probability P (both paths, both families).

Needs "data with a future" in the warehouse of the current stack (COMMON.md): e.g.

    python -m learning_analytics.synthetic --students 400 --weeks 24 --end-date 2027-01-18 --seed 42
    airflow dags test build_weekly_kpi 2026-11-23 -c '{"KPI_LOOKBACK_WEEKS": 16}'
    python bench/growth_calibration.py --run-date 2026-11-23 --families gaussian binomial

For each family it runs ``fit_bayesian_growth`` for the run date (``airflow dags test``,
the DAG's own code) and scores, for the window's last week, the Bayesian P
(``growth_brms_user.p_goal``) and the simple P (``weekly_kpi.p``, p_source 'simple')
against the realized event: the student's observed accuracy in the target week is at
least their goal. Students without attempts in the target week are excluded; every
week after the run date is in the future for the DAG (it reads only data before its
window's end). Baseline: climatology = the realized event rate (a constant forecast).
Prints a Markdown report (Brier, skill vs climatology, log loss, calibration by decile
of P with >= 30 students).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import date, timedelta

import numpy as np
import pandas as pd
import psycopg

REALIZED_SQL = """
WITH scored AS (
    SELECT g.user_id, g.goal, g.target_week_start, g.p_goal AS p_bayes, k.p AS p_simple,
           k.p_target_week AS simple_target_week
    FROM growth_brms_user AS g
    JOIN weekly_kpi AS k ON k.user_id = g.user_id AND k.week_start = %(last_week)s
    WHERE g.run_date = %(run_date)s
)
SELECT s.*, r.n_attempts, r.accuracy
FROM scored AS s
JOIN LATERAL (
    SELECT count(*) AS n_attempts, avg(a.is_correct::integer)::double precision AS accuracy
    FROM attempt AS a
    WHERE a.user_id = s.user_id
      AND a.attempt_date >= s.target_week_start AND a.attempt_date < s.target_week_start + 7
) AS r ON true
"""


def brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration(p: np.ndarray, y: np.ndarray, min_students: int = 30) -> list[dict]:
    """Deciles of P (equal counts); bins with fewer than ``min_students`` are merged upward."""
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, 10)
    merged: list[np.ndarray] = []
    for part in bins:
        if merged and len(merged[-1]) < min_students:
            merged[-1] = np.concatenate([merged[-1], part])
        else:
            merged.append(part)
    if len(merged) > 1 and len(merged[-1]) < min_students:
        merged[-2] = np.concatenate([merged[-2], merged.pop()])
    return [{"n": len(idx), "mean_p": float(p[idx].mean()), "observed": float(y[idx].mean())} for idx in merged]


def score(name: str, p: np.ndarray, y: np.ndarray) -> dict:
    climatology = brier(np.full(len(y), y.mean()), y)
    bins = calibration(p, y)
    return {
        "P": name,
        "n": len(y),
        "brier": brier(p, y),
        "climatology": climatology,
        "skill": 1 - brier(p, y) / climatology,
        "log_loss": log_loss(p, y),
        "max_calibration_gap": max(abs(b["mean_p"] - b["observed"]) for b in bins),
        "bins": bins,
    }


def run_growth(run_date: date, family: str, conf: dict) -> None:
    command = ["airflow", "dags", "test", "fit_bayesian_growth", run_date.isoformat(), "-c",
               json.dumps({**conf, "BRMS_FAMILY": family, "METRICS_USE_BAYESIAN": False})]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"growth DAG failed for {family}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-date", type=date.fromisoformat, default=date(2026, 11, 23))
    parser.add_argument("--families", nargs="+", default=["gaussian", "binomial"])
    parser.add_argument("--lookback-weeks", type=int, default=12)
    parser.add_argument("--conf", type=json.loads, default={}, help="extra DAG params (JSON)")
    args = parser.parse_args()
    last_week = args.run_date - timedelta(days=args.run_date.weekday()) - timedelta(days=7)
    lines = [f"Run date {args.run_date}, scored week {last_week}, LOOKBACK_WEEKS={args.lookback_weeks}.", ""]
    lines += ["| family | P | students | Brier | climatology | skill | log loss | max calibration gap |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    details = []
    for family in args.families:
        run_growth(args.run_date, family, {"LOOKBACK_WEEKS": args.lookback_weeks, **args.conf})
        with psycopg.connect(os.environ["ANALYTICS_DB_URI"]) as conn:
            frame = pd.read_sql(REALIZED_SQL, conn, params={"run_date": args.run_date, "last_week": last_week})
        with psycopg.connect(os.environ["ANALYTICS_DB_URI"]) as conn:
            (status, converged, message) = conn.execute(
                "SELECT status, converged, message FROM growth_brms_meta WHERE run_date = %s", (args.run_date,)
            ).fetchone()
        scored = frame[(frame["n_attempts"] > 0) & frame["p_bayes"].notna() & frame["p_simple"].notna()]
        realized = (scored["accuracy"] >= scored["goal"] - 1e-9).to_numpy(float)
        for name, column in (("bayesian", "p_bayes"), ("simple", "p_simple")):
            result = score(name, scored[column].to_numpy(float), realized)
            lines.append(
                f"| {family} | {name} | {result['n']} | {result['brier']:.4f} | {result['climatology']:.4f} "
                f"| {result['skill']:+.1%} | {result['log_loss']:.3f} | {result['max_calibration_gap']:.3f} |"
            )
            details.append((family, name, result["bins"]))
        details.append((family, f"run status {status}, converged {converged}", message))
    lines += ["", "Calibration bins (mean P -> observed rate, n):", ""]
    for family, name, bins in details:
        if isinstance(bins, list):
            text = ", ".join(f"{b['mean_p']:.2f}->{b['observed']:.2f} ({b['n']})" for b in bins)
            lines.append(f"* {family} / {name}: {text}")
        else:
            lines.append(f"* {family}: {name} {bins or ''}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
