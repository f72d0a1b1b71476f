"""Growth at platform scale: the two-stage fit end to end, and the 200-student shards.

Runs against the local stack (``source .local/stack.env``) the code of the DAG's tasks,
in this process, in task order: ``extract`` (SQL + staging the chunks as Parquet),
``prepare`` (stage 1: brms on a stratified sample, on r-brms-plumber), the mapped
``fit`` tasks one after the other (stage 2 per chunk, as one Airflow worker would run
them) and ``persist`` (one transaction). Each size loads its own synthetic population
first (not timed). Peak memory is this process's maximum RSS (extract, stage 2 and
persist run here; stage 1 runs in the R service).

    python bench/growth_scale.py --sizes 10000 --compare 2000 --output docs/bench-growth-scale.md

``--compare N`` also runs, on N students, the 200-student-shard approach (``full`` mode,
``BRMS_SHARD_SIZE=200``, two shards at a time as two workers would) next to the
two-stage fit. ``--stage2-only N`` measures stage 2 + persist on N students whose
weekly rows are generated directly (no attempt log), for sizes whose attempt log
(~60 attempts per student-week) is too large to generate here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from learning_analytics import synthetic  # noqa: E402
from learning_analytics.pipeline import PREPARED_NAME, Extracted, RunContext, chunk_by_key  # noqa: E402
from learning_analytics.pipelines.growth import GrowthPipeline, stage1_sample  # noqa: E402
from learning_analytics.settings import GrowthSettings  # noqa: E402
from learning_analytics.staging import RunStaging, read_frame  # noqa: E402
from learning_analytics.warehouse import Warehouse  # noqa: E402

END_DATE = date(2026, 11, 23)


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_pipeline(
    params: dict[str, Any],
    run_id: str,
    parallel: int = 1,
    extracted: Extracted | None = None,
    stage1_sample_path: str | None = None,
) -> dict:
    """The DAG's tasks in order; returns timings, status and sizes. ``stage1_sample_path``:
    also write the students of the stage-1 fit there (CSV, for bench/brms_parameterisation.R)."""
    pipeline = GrowthPipeline()
    settings = GrowthSettings.from_params(params)
    run = RunContext(
        window=pipeline.window(END_DATE, settings), settings=settings, dag_id="bench_growth", run_id=run_id
    )
    staging = RunStaging(run.dag_id, run.run_id)
    timings: dict[str, float] = {}

    started = time.monotonic()
    if extracted is None:
        extracted = pipeline.extract(Warehouse(), run)
    uris = [staging.write_frame(f"shard-{i:04d}", shard) for i, shard in enumerate(extracted.shards)]
    timings["extract"] = time.monotonic() - started
    if stage1_sample_path:
        sample = stage1_sample(pd.concat(extracted.shards), settings.stage1_students, settings.seed)
        sample[["user_id", "week", "accuracy", "n_attempts", "n_correct"]].to_csv(stage1_sample_path, index=False)

    started = time.monotonic()
    (staging.root / PREPARED_NAME).unlink(missing_ok=True)
    document = pipeline.prepare(pipeline.service(), [read_frame(uri) for uri in uris], run)
    if document is not None:
        staging.write_json(PREPARED_NAME.removesuffix(".json"), document)
    timings["prepare"] = time.monotonic() - started

    started = time.monotonic()

    def fit(item: tuple[int, str]) -> dict:
        index, uri = item
        return pipeline.fit_shard(pipeline.service(), read_frame(uri), index, run)

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        results = list(pool.map(fit, enumerate(uris)))
    timings["fit"] = time.monotonic() - started

    started = time.monotonic()
    with Warehouse().transaction() as tx:
        written = pipeline.persist(tx, results, {"skip_reason": None, "summary": extracted.summary}, run)
    timings["persist"] = time.monotonic() - started
    stage1 = document or {}
    diagnostics = stage1.get("diagnostics") or {}
    return {
        "students": extracted.summary["n_users"],
        "mode": settings.fit_mode,
        "tasks": len(results),
        "stage1_students": stage1.get("n_users"),
        "timings": timings,
        "total_s": sum(timings.values()),
        "status": written["status"],
        "converged": written["converged"],
        "rhat_max": diagnostics.get("rhat_max"),
        "ess_bulk_min": diagnostics.get("ess_bulk_min"),
        "peak_rss_mb": peak_rss_mb(),
    }


def weekly_rows(n_students: int, weeks: int, seed: int) -> pd.DataFrame:
    """Extract-shaped rows drawn like the generator (for --stage2-only)."""
    rng = np.random.default_rng(seed)
    base = np.clip(rng.normal(0.55, 0.1, n_students), 0.15, 0.92)
    slope = rng.normal(0.02, 0.01, n_students)
    week = np.tile(np.arange(weeks), n_students)
    user = np.repeat(np.arange(1, n_students + 1), weeks)
    attempts = rng.poisson(60, n_students * weeks) + 5
    correct = rng.binomial(attempts, np.clip(base[user - 1] + slope[user - 1] * week, 0.05, 0.97))
    return pd.DataFrame(
        {
            "user_id": user,
            "week": week,
            "n_attempts": attempts,
            "n_correct": correct,
            "accuracy": correct / attempts,
            "goal": 0.75,
            "target_week": weeks - 1 + 4,
            "usual_attempts": 65,
            "last_week_attempts": 60,
            "last_attempt_date": END_DATE - timedelta(days=1),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10000])
    parser.add_argument("--weeks", type=int, default=12)
    parser.add_argument("--compare", type=int, default=0, help="students for the shard comparison (0: none)")
    parser.add_argument("--stage2-only", type=int, nargs="*", default=[])
    parser.add_argument("--params", type=json.loads, default={}, help="extra DAG params (JSON)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "bench-growth-scale.md"))
    parser.add_argument(
        "--save-stage1-sample", default=None, help="CSV path: the stage-1 students of the first --sizes run"
    )
    args = parser.parse_args()
    base = {"LOOKBACK_WEEKS": args.weeks, "METRICS_USE_BAYESIAN": True, **args.params}
    rows = []
    for size in args.sizes:
        data = synthetic.generate(n_students=size, n_weeks=args.weeks + 4, seed=11, end_date=END_DATE)
        synthetic.load(os.environ["ANALYTICS_DB_URI"], data)
        sample_path = args.save_stage1_sample if size == args.sizes[0] else None
        rows.append(run_pipeline(base, f"two_stage-{size}", stage1_sample_path=sample_path))
        print(json.dumps(rows[-1]), flush=True)
    if args.compare:
        data = synthetic.generate(n_students=args.compare, n_weeks=args.weeks + 4, seed=12, end_date=END_DATE)
        synthetic.load(os.environ["ANALYTICS_DB_URI"], data)
        rows.append(run_pipeline(base, f"two_stage-{args.compare}"))
        print(json.dumps(rows[-1]), flush=True)
        shards = {**base, "BRMS_FIT_MODE": "full", "BRMS_SHARD_SIZE": 200}
        rows.append(run_pipeline(shards, f"shards-{args.compare}", parallel=2))
        print(json.dumps(rows[-1]), flush=True)
    for size in args.stage2_only:
        frame = weekly_rows(size, args.weeks, seed=13)
        settings = GrowthSettings.from_params(base)
        extracted = Extracted(
            shards=chunk_by_key(frame, "user_id", settings.chunk_size),
            summary={"n_users": size, "n_obs": len(frame), "n_weeks": args.weeks},
        )
        rows.append(run_pipeline(base, f"stage2-{size}", extracted=extracted))
        rows[-1]["mode"] += " (weekly rows generated, no SQL extract)"
        print(json.dumps(rows[-1]), flush=True)

    lines = [
        "| students | mode | mapped tasks | stage-1 students | extract s | prepare (stage 1) s | fit s "
        "| persist s | total s | converged (Rhat, ESS) | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        t = row["timings"]
        lines.append(
            f"| {row['students']} | {row['mode']} | {row['tasks']} | {row['stage1_students'] or '-'} "
            f"| {t['extract']:.1f} | {t['prepare']:.1f} | {t['fit']:.1f} | {t['persist']:.1f} | {row['total_s']:.1f} "
            f"| {row['converged']} ({fmt(row['rhat_max'], 3)}, {fmt(row['ess_bulk_min'], 0)}) "
            f"| {row['peak_rss_mb']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    Path(args.output).with_suffix(".table.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
