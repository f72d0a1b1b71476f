"""Command line: generate one synthetic data set and load it into the warehouse.

Run with ``plugins/`` on ``PYTHONPATH``::

    python -m learning_analytics.synthetic --students 400 --weeks 16 --future-weeks 8

The warehouse comes from ``ANALYTICS_DB_URI`` (or a password-less ``--dsn`` with
the libpq environment / passfile): a password never goes on a command line.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from datetime import date

from learning_analytics.synthetic.loader import load
from learning_analytics.synthetic.simulate import DEFAULT_END_DATE, DEFAULT_TIMEZONE, generate
from learning_analytics.warehouse import add_dsn_argument, dsn_from_args


def main(argv: Sequence[str] | None = None) -> int:
    """Generate and load one synthetic data set, print a one-line summary."""
    parser = argparse.ArgumentParser(
        prog="python -m learning_analytics.synthetic",
        description="Generate synthetic learners and load them into the warehouse.",
    )
    parser.add_argument("--students", type=int, default=500, help="number of students (default 500)")
    parser.add_argument("--weeks", type=int, default=16, help="weeks of history before --end-date (default 16)")
    parser.add_argument(
        "--future-weeks",
        type=int,
        default=0,
        help="weeks simulated after --end-date: the outcomes predictions are scored against (default 0)",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--end-date",
        type=date.fromisoformat,
        default=DEFAULT_END_DATE,
        help=f"history end = the models' run date, a Monday (default {DEFAULT_END_DATE.isoformat()})",
    )
    parser.add_argument(
        "--timezone",
        default=DEFAULT_TIMEZONE,
        help=f"local clock of the platform: days, weeks, study hours (default {DEFAULT_TIMEZONE})",
    )
    add_dsn_argument(parser)
    args = parser.parse_args(argv)
    dsn = dsn_from_args(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        generate_started = time.monotonic()
        data = generate(args.students, args.weeks, args.seed, args.end_date, args.future_weeks, args.timezone)
        generate_s = time.monotonic() - generate_started
    except ValueError as err:
        parser.error(str(err))
    summary = load(dsn, data)
    run = data.run
    churned = int(data.truth_student["churned_on"].notna().sum())
    print(
        f"synthetic data: {args.students} students x {run.n_weeks} weeks of history to {run.history_end}"
        f" + {run.future_weeks} future weeks ({run.start_date} to {run.data_end}, {run.timezone}, seed {args.seed}):"
        f" {summary.rows['attempt_log']} attempts, {churned} churned,"
        f" {summary.rows['synthetic_truth_anomaly']} anomaly weeks;"
        f" generated in {generate_s:.2f} s, loaded in {summary.elapsed_s:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
