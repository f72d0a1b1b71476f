"""Growth model at scale: one brms fit of N students vs shards fitted in parallel.

Runs against the local stack (``source .local/stack.env``; r-brms-plumber on :8101)
exactly the code the DAG runs: the growth pipeline's SQL extract, ``fit_shard`` per
shard (fit + predict on the service) and the precision-weighted combination of the
population effects. Shards are sent ``--parallel`` at a time, as that many Airflow
workers would. Prints one row per configuration and the time ratio, and writes the
results to ``docs/bench-growth-shards.md``.

    python bench/growth_shards.py --students 400 --shard-size 100 --parallel 2 --single
    python bench/growth_shards.py --students 10000 --shard-size 200 --parallel 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from learning_analytics import synthetic  # noqa: E402
from learning_analytics.pipeline import RunContext  # noqa: E402
from learning_analytics.pipelines.growth import GrowthPipeline, combine_fixed_effects  # noqa: E402
from learning_analytics.settings import GrowthSettings  # noqa: E402
from learning_analytics.warehouse import Warehouse  # noqa: E402

END_DATE = date(2026, 11, 23)


def run_configuration(students: int, shard_size: int, parallel: int, weeks: int) -> dict:
    pipeline = GrowthPipeline()
    settings = GrowthSettings.from_params({"LOOKBACK_WEEKS": weeks, "BRMS_SHARD_SIZE": shard_size})
    run = RunContext(window=pipeline.window(END_DATE, settings), settings=settings, dag_id="bench", run_id="bench")
    extracted = pipeline.extract(Warehouse(), run)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        results = list(
            pool.map(
                lambda item: pipeline.fit_shard(pipeline.service(), item[1], item[0], run), enumerate(extracted.shards)
            )
        )
    elapsed = time.monotonic() - started
    diagnostics = [result["fit"]["diagnostics"] for result in results]
    (slope,) = [
        effect
        for effect in combine_fixed_effects([r["fit"]["fixed_effects"] for r in results])
        if effect["term"] == "week"
    ]
    return {
        "students": extracted.summary["n_users"],
        "shards": len(results),
        "shard_size": shard_size,
        "parallel": parallel,
        "wall_s": elapsed,
        "rhat_max": max(d["rhat_max"] for d in diagnostics),
        "divergences": sum(d["divergences"] for d in diagnostics),
        "shards_passed": sum(r["passed"] for r in results),
        "slope": f"{slope['estimate']:.4f} [{slope['lower']:.4f}, {slope['upper']:.4f}]",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=400)
    parser.add_argument("--weeks", type=int, default=12)
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--single", action="store_true", help="also fit all students in one request")
    parser.add_argument("--output", default=str(ROOT / "docs" / "bench-growth-shards.md"))
    args = parser.parse_args()

    data = synthetic.generate(n_students=args.students, n_weeks=args.weeks + 4, seed=11, end_date=END_DATE)
    synthetic.load(os.environ["ANALYTICS_DB_URI"], data)

    rows = [run_configuration(args.students, args.shard_size, args.parallel, args.weeks)]
    if args.single:
        rows.append(run_configuration(args.students, args.students, 1, args.weeks))
    header = (
        "| students | shards (at most size) | parallel | wall s | max Rhat | divergences | shards passed "
        "| weekly slope [95%] |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['students']} | {row['shards']} (<= {row['shard_size']}) | {row['parallel']} "
            f"| {row['wall_s']:.0f} | "
            f"{row['rhat_max']:.3f} | {row['divergences']} | {row['shards_passed']}/{row['shards']} | {row['slope']} |"
        )
    if args.single:
        lines.append(f"\nOne fit / shards wall-time ratio: **{rows[1]['wall_s'] / rows[0]['wall_s']:.2f}x**")
    command = "python bench/growth_shards.py " + " ".join(sys.argv[1:])
    report = "\n".join(
        [
            "# Growth model: shards vs one fit",
            "",
            f"Command (local stack, 2 cores, r-brms-plumber with R_WORKERS=2): `{command}`",
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.weeks} weeks, "
            "iter 1000, 2 chains, adapt_delta 0.95.",
            "",
            *lines,
            "",
        ]
    )
    print(report)
    Path(args.output).write_text(report)


if __name__ == "__main__":
    main()
