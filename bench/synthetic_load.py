"""Benchmark: generate and load about one million synthetic attempts.

Measures, on the warehouse at ``$ANALYTICS_DB_URI`` (or a password-less ``--dsn``):

1. ``generate`` time and the full ``load`` (one transaction, binary COPY);
2. on a sample of ``--sample-rows`` attempts, binary COPY against a naive
   ``executemany`` INSERT into identical temporary tables (rolled back);
3. COPY of all attempts straight into ``attempt_log`` with its foreign keys and
   indexes in place (what ``load`` avoids), rolled back.

WARNING: step 1 replaces the warehouse's source and truth tables.

Run from the repository root::

    PYTHONPATH=plugins .venv/bin/python bench/synthetic_load.py   # warehouse from $ANALYTICS_DB_URI
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from collections.abc import Callable
from datetime import date

import psycopg

from learning_analytics.synthetic import DEFAULT_END_DATE, copy_attempts, generate, load
from learning_analytics.warehouse import add_dsn_argument, dsn_from_args

ATTEMPT_COLUMNS = "attempt_id, user_id, question_id, topic_id, is_correct, time_spent_s, attempted_at"


def timed(action: Callable[[], object]) -> float:
    """Wall time of ``action()`` in seconds."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=920, help="students (default 920: ~1M attempts)")
    parser.add_argument("--weeks", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--end-date", type=date.fromisoformat, default=DEFAULT_END_DATE)
    parser.add_argument("--sample-rows", type=int, default=50_000)
    add_dsn_argument(parser)
    args = parser.parse_args()
    dsn = dsn_from_args(parser, args)
    logging.basicConfig(level=logging.WARNING)

    started = time.perf_counter()
    data = generate(args.students, args.weeks, args.seed, args.end_date)
    generate_s = time.perf_counter() - started
    with psycopg.connect(dsn) as conn:
        version = conn.info.server_version
        server_version = f"{version // 10000}.{version % 10000}"
        summary = load(conn, data)

        sample = data.attempts.head(args.sample_rows)
        records = list(sample.itertuples(index=False, name=None))
        with conn.transaction(force_rollback=True), conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE bench_copy (LIKE attempt_log INCLUDING ALL)")
            cur.execute("CREATE TEMP TABLE bench_insert (LIKE attempt_log INCLUDING ALL)")
            copy_s = timed(lambda: copy_attempts(cur, sample, "bench_copy"))
            insert_s = timed(
                lambda: cur.executemany(
                    f"INSERT INTO bench_insert ({ATTEMPT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)", records
                )
            )
        with conn.transaction(force_rollback=True), conn.cursor() as cur:
            cur.execute("TRUNCATE attempt_log")
            constrained_copy_s = timed(lambda: copy_attempts(cur, data.attempts))

    n = data.n_attempts
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL {server_version}")
    print(f"data: {args.students} students x {args.weeks} weeks, seed {args.seed}: {n:,} attempts")
    print(f"generate: {generate_s:.2f} s ({n / generate_s:,.0f} attempts/s)")
    print(f"load (one transaction, all tables): {summary.elapsed_s:.2f} s ({summary.attempts_per_s:,.0f} attempts/s)")
    print(f"generate + load: {generate_s + summary.elapsed_s:.2f} s")
    print(
        f"sample of {len(sample):,} attempts: binary COPY {copy_s:.3f} s, executemany INSERT {insert_s:.3f} s, "
        f"COPY is {insert_s / copy_s:.1f}x faster"
    )
    print(
        f"COPY of all {n:,} attempts with foreign keys and indexes in place: {constrained_copy_s:.2f} s "
        f"(load's drop-and-restore is {constrained_copy_s / summary.elapsed_s:.1f}x faster end to end)"
    )


if __name__ == "__main__":
    main()
