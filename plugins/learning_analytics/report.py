"""Print what the DAG runs of one logical date wrote, and the scoreboard (demo command)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from datetime import date

import psycopg

from learning_analytics.evaluation import verdict
from learning_analytics.paths import read_sql


def summary_lines(dsn: str, run_date: date) -> list[str]:
    """One line per output table: row count and a few example values."""
    with psycopg.connect(dsn) as conn, psycopg.ClientCursor(conn) as cur:
        cur.execute(read_sql("report/summary.sql"), {"run_date": run_date})
        rows = cur.fetchall()
    width = max(len(name) for name, _, _ in rows)
    return [f"  {name:<{width}}  {count:>8} rows  {example}" for name, count, example in rows]


def scoreboard_lines(dsn: str, evaluated_for: date) -> list[str]:
    """One line per scoreboard metric: model vs baseline, and which is better."""
    with psycopg.connect(dsn) as conn, psycopg.ClientCursor(conn) as cur:
        cur.execute(read_sql("report/scoreboard.sql"), {"evaluated_for": evaluated_for})
        rows = cur.fetchall()

    def number(value: float | None) -> str:
        return "NULL" if value is None else f"{value:.3f}"

    lines = []
    for model, run_date, horizon, metric, value, baseline, baseline_value, n, note in rows:
        against = f"vs {baseline} {number(baseline_value)}" if baseline else ""
        line = f"  {model:<8} {run_date} {horizon:<12} {metric:<26} {number(value):>7}  {against:<28} n={n:<6}"
        line += f" {verdict(metric, value, baseline_value)}"
        if value is None and note:
            line += f"  ({note})"
        lines.append(line)
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dsn",
        default=os.environ.get("ANALYTICS_DB_URI"),
        help="libpq URI of the warehouse (default: $ANALYTICS_DB_URI)",
    )
    parser.add_argument("--run-date", type=date.fromisoformat, required=True)
    parser.add_argument(
        "--scoreboard-date",
        type=date.fromisoformat,
        help="also print the scoreboard evaluate_models wrote for this date",
    )
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("--dsn is required when ANALYTICS_DB_URI is not set")
    print(f"What the DAG runs for {args.run_date} wrote:")
    print("\n".join(summary_lines(args.dsn, args.run_date)))
    if args.scoreboard_date:
        lines = scoreboard_lines(args.dsn, args.scoreboard_date)
        print(f"Scoreboard (evaluate_models {args.scoreboard_date}; model vs baseline, verdict):")
        print("\n".join(lines) if lines else "  nothing scored: no model run had a closed outcome window")


if __name__ == "__main__":
    main()
