"""The scoreboard over several synthetic worlds -> docs/model-quality.md.

For each seed: load ``--students`` synthetic students with ``--weeks`` of history
before the run date T and ``--future-weeks`` after it, run every DAG for T exactly as
the demo does (``airflow dags test``: the DAGs' own code; cluster_segments also two
weeks earlier, for stability), build the weekly KPI of the future weeks, run
``evaluate_models`` for E = T + future weeks and collect its ``model_evaluation``
rows. The report gives every metric with the model's and the baseline's mean and
range over seeds, and which is better.

Run on the local stack (``bash scripts/stack.sh up && source .local/stack.env``)::

    python bench/model_quality.py --seeds 42 1 7 --students 400 --weeks 16 --future-weeks 8

Extra DAG settings for one model go in ``--conf dag_id='{"NAME": value}'``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from learning_analytics import catalog, synthetic  # noqa: E402
from learning_analytics.evaluation import METRIC_DIRECTION, verdict  # noqa: E402

RUN_DATE = date(2026, 11, 23)


def run_dag(dag_id: str, logical_date: date, conf: dict) -> None:
    started = time.monotonic()
    completed = subprocess.run(
        ["airflow", "dags", "test", dag_id, logical_date.isoformat(), "-c", json.dumps(conf)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout[-3000:] + completed.stderr[-3000:])
        raise SystemExit(f"{dag_id} {logical_date} failed")
    print(f"  {dag_id} {logical_date}: {time.monotonic() - started:.0f} s", flush=True)


def one_world(dsn: str, seed: int, args: argparse.Namespace, extra_conf: dict[str, dict]) -> list[tuple]:
    evaluation_date = RUN_DATE + timedelta(weeks=args.future_weeks)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(catalog.model_output_tables())}")
    data = synthetic.generate(args.students, args.weeks, seed, end_date=RUN_DATE, future_weeks=args.future_weeks)
    synthetic.load(dsn, data)
    runs = [
        ("build_features_topic_daily", RUN_DATE, {"FEATURES_LOOKBACK_DAYS": 7 * args.weeks}),
        ("build_weekly_kpi", RUN_DATE, {"KPI_LOOKBACK_WEEKS": args.weeks}),
        ("fit_bayesian_growth", RUN_DATE, {}),
        ("forecast_prophet", RUN_DATE, {}),
        ("fit_survival_churn", RUN_DATE, {}),
        ("cluster_segments", RUN_DATE - timedelta(weeks=2), {}),
        ("cluster_segments", RUN_DATE, {}),
        ("build_weekly_kpi", evaluation_date, {"KPI_LOOKBACK_WEEKS": args.future_weeks}),
        ("evaluate_models", evaluation_date, {}),
    ]
    for dag_id, logical_date, conf in runs:
        run_dag(dag_id, logical_date, {**conf, **extra_conf.get(dag_id, {})})
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT model, horizon, metric, value, baseline, baseline_value, n FROM model_evaluation"
            " WHERE evaluated_for = %s",
            (evaluation_date,),
        ).fetchall()


def summary(values: list[float | None]) -> str:
    present = [value for value in values if value is not None]
    if not present:
        return "NULL"
    mean = sum(present) / len(present)
    text = f"{mean:.3f} [{min(present):.3f}, {max(present):.3f}]"
    return text if len(present) == len(values) else f"{text} ({len(values) - len(present)} NULL)"


def report(results: dict[int, list[tuple]], args: argparse.Namespace, elapsed_s: float) -> str:
    table: dict[tuple[str, str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for rows in results.values():
        for model, horizon, metric, value, baseline, baseline_value, n in rows:
            cell = table[(model, horizon, metric)]
            cell["value"].append(value)
            cell["baseline_value"].append(baseline_value)
            cell["baseline"].append(baseline)
            cell["n"].append(n)
    order = {"growth": 0, "prophet": 1, "survival": 2, "cluster": 3}
    command = " ".join(["python bench/model_quality.py", *sys.argv[1:]])
    lines = [
        "# Model quality: the scoreboard over synthetic worlds",
        "",
        f"Produced by `{command}` on the local stack (2 shared cores; {elapsed_s / 60:.0f} min).",
        f"Seeds {', '.join(map(str, args.seeds))}; {args.students} students, {args.weeks} weeks of history "
        f"before the run date {RUN_DATE} and {args.future_weeks} realized weeks after it; every model DAG ran "
        f"for {RUN_DATE} with its default settings and `evaluate_models` scored it "
        f"{args.future_weeks} weeks later. Values: mean [min, max] over seeds. Verdict: model vs baseline "
        "on the means (`WORSE` = the model does not beat its baseline). Definitions: "
        "`plugins/learning_analytics/evaluation.py` and the DAG docs of `evaluate_models`.",
        "",
        "| model | horizon | metric | model | baseline | baseline value | verdict | n (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (model, horizon, metric), cell in sorted(table.items(), key=lambda item: (order[item[0][0]], item[0][1:])):
        values, baselines = cell["value"], cell["baseline_value"]
        mean = _mean(values)
        base_mean = _mean(baselines)
        baseline_name = next((name for name in cell["baseline"] if name), "-")
        lines.append(
            f"| {model} | {horizon} | {metric} | {summary(values)} | {baseline_name} | "
            f"{summary(baselines) if baseline_name != '-' else '-'} | "
            f"{verdict(metric, mean, base_mean) if metric in METRIC_DIRECTION else '-'} | "
            f"{sum(cell['n']) / len(cell['n']):.0f} |"
        )
    return "\n".join(lines) + "\n"


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 7])
    parser.add_argument("--students", type=int, default=400)
    parser.add_argument("--weeks", type=int, default=16)
    parser.add_argument("--future-weeks", type=int, default=8)
    parser.add_argument("--conf", action="append", default=[], help="dag_id=JSON settings for that DAG")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "model-quality.md")
    args = parser.parse_args()
    dsn = os.environ.get("ANALYTICS_DB_URI")
    if not dsn:
        raise SystemExit("ANALYTICS_DB_URI is not set: source .local/stack.env first")
    extra_conf = {}
    for item in args.conf:
        dag_id, _, conf = item.partition("=")
        extra_conf[dag_id] = json.loads(conf)
    started = time.monotonic()
    results = {}
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        results[seed] = one_world(dsn, seed, args, extra_conf)
    text = report(results, args, time.monotonic() - started)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
