"""Print what the DAG runs of one logical date wrote (used by the demo command)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date

import psycopg

from learning_analytics.paths import read_sql
from learning_analytics.warehouse import add_dsn_argument, dsn_from_args


def summary_lines(dsn: str, run_date: date) -> list[str]:
    """One line per output table: row count and a few example values."""
    with psycopg.connect(dsn) as conn, psycopg.ClientCursor(conn) as cur:
        cur.execute(read_sql("report/summary.sql"), {"run_date": run_date})
        rows = cur.fetchall()
    width = max(len(name) for name, _, _ in rows)
    return [f"  {name:<{width}}  {count:>8} rows  {example}" for name, count, example in rows]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_dsn_argument(parser)
    parser.add_argument("--run-date", type=date.fromisoformat, required=True)
    args = parser.parse_args(argv)
    dsn = dsn_from_args(parser, args)
    print(f"What the DAG runs for {args.run_date} wrote:")
    print("\n".join(summary_lines(dsn, args.run_date)))


if __name__ == "__main__":
    main()
