"""Loading synthetic learners into a real PostgreSQL warehouse.

Needs ``ANALYTICS_DB_URI`` (a libpq URI of the warehouse); the test applies the
source and truth migrations itself when they are missing. Loading REPLACES the
warehouse's source and truth tables (and, by CASCADE, tables built from them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace

import pandas as pd
import psycopg
import pytest

from learning_analytics.paths import MIGRATIONS_DIR
from learning_analytics.synthetic import LOADED_TABLES, SyntheticData, generate, load

DB_URI = os.environ.get("ANALYTICS_DB_URI")
pytestmark = pytest.mark.skipif(not DB_URI, reason="ANALYTICS_DB_URI is not set: no warehouse to load into")

MIGRATIONS = ("001_source_tables.sql", "002_synthetic_truth.sql")

# Order-independent content fingerprints: md5 of every row's text, ordered by key.
CHECKSUM_QUERIES = {
    "students": "SELECT md5(string_agg(s::text, '|' ORDER BY user_id)) FROM students AS s",
    "questions": "SELECT md5(string_agg(q::text, '|' ORDER BY question_id)) FROM questions AS q",
    "attempt_log": "SELECT md5(string_agg(a::text, '|' ORDER BY attempt_id)) FROM attempt_log AS a",
    "synthetic_truth_student": (
        "SELECT md5(string_agg(t::text, '|' ORDER BY user_id)) FROM synthetic_truth_student AS t"
    ),
    "synthetic_truth_anomaly": (
        "SELECT md5(string_agg(t::text, '|' ORDER BY user_id, week_start)) FROM synthetic_truth_anomaly AS t"
    ),
}


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection]:
    """An autocommit connection to a warehouse that has the source and truth tables."""
    assert DB_URI is not None
    with psycopg.connect(DB_URI, autocommit=True) as connection:
        present = connection.execute(
            "SELECT to_regclass('attempt_log') IS NOT NULL AND EXISTS ("
            " SELECT 1 FROM information_schema.columns"
            " WHERE table_name = 'synthetic_truth_student' AND column_name = 'weekend_weight')"
        ).fetchone()
        if not (present and present[0]):
            for name in MIGRATIONS:
                connection.execute((MIGRATIONS_DIR / name).read_text(encoding="utf-8"))
        yield connection


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return generate(n_students=120, n_weeks=6, seed=5)


def row_counts(conn: psycopg.Connection) -> dict[str, int]:
    return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in LOADED_TABLES}


def checksums(conn: psycopg.Connection) -> dict[str, str]:
    return {table: conn.execute(query).fetchone()[0] for table, query in CHECKSUM_QUERIES.items()}


def test_loading_twice_gives_identical_tables(conn: psycopg.Connection, data: SyntheticData) -> None:
    first = load(conn, data)
    counts_first, sums_first = row_counts(conn), checksums(conn)
    second = load(DB_URI, data)  # the URI form opens its own connection
    assert row_counts(conn) == counts_first
    assert checksums(conn) == sums_first
    assert first.rows == second.rows
    assert counts_first["attempt_log"] == data.n_attempts
    assert counts_first["students"] == len(data.students)
    assert counts_first["synthetic_truth_anomaly"] == len(data.truth_anomaly) > 0
    assert first.elapsed_s > 0


def test_rows_equal_the_generated_frames(conn: psycopg.Connection, data: SyntheticData) -> None:
    load(conn, data)
    attempts = data.attempts
    loaded = conn.execute(
        "SELECT count(*), sum(attempt_id), sum(user_id), sum(question_id), sum(topic_id),"
        " count(*) FILTER (WHERE is_correct), sum(time_spent_s),"
        " sum(extract(epoch FROM attempted_at))::bigint FROM attempt_log"
    ).fetchone()
    expected = (
        len(attempts),
        int(attempts["attempt_id"].sum()),
        int(attempts["user_id"].sum()),
        int(attempts["question_id"].sum()),
        int(attempts["topic_id"].sum()),
        int(attempts["is_correct"].sum()),
        int(attempts["time_spent_s"].sum()),
        int(((attempts["attempted_at"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).sum()),
    )
    assert loaded == expected
    first = conn.execute(
        "SELECT attempt_id, user_id, question_id, topic_id, is_correct, time_spent_s, attempted_at"
        " FROM attempt_log ORDER BY attempt_id LIMIT 1"
    ).fetchone()
    row = attempts.iloc[0]
    assert first == (
        row["attempt_id"],
        row["user_id"],
        row["question_id"],
        row["topic_id"],
        row["is_correct"],
        row["time_spent_s"],
        row["attempted_at"].to_pydatetime(),
    )


def test_attempt_view_returns_every_row(conn: psycopg.Connection, data: SyntheticData) -> None:
    load(conn, data)
    n_rows, n_days, first_day, last_day = conn.execute(
        "SELECT count(*), count(DISTINCT attempt_date), min(attempt_date), max(attempt_date) FROM attempt"
    ).fetchone()
    assert n_rows == data.n_attempts
    assert data.run.start_date <= first_day <= last_day < data.run.end_date
    assert n_days > 7 * data.run.n_weeks // 2


def test_truth_tables_are_filled(conn: psycopg.Connection, data: SyntheticData) -> None:
    load(conn, data)
    run = conn.execute(
        "SELECT seed, n_students, n_weeks, start_date, end_date, n_attempts, churn_coefficients FROM synthetic_run"
    ).fetchone()
    assert run == (
        data.run.seed,
        data.run.n_students,
        data.run.n_weeks,
        data.run.start_date,
        data.run.end_date,
        data.n_attempts,
        data.run.churn_coefficients,
    )
    n_students, n_segments, n_churned, n_missing = conn.execute(
        "SELECT count(*), count(DISTINCT segment), count(churned_on),"
        " count(*) FILTER (WHERE weekly_slope IS NULL OR churn_log_hazard IS NULL OR topic_breadth IS NULL)"
        " FROM synthetic_truth_student"
    ).fetchone()
    assert (n_students, n_segments, n_missing) == (len(data.students), 4, 0)
    assert n_churned == int(data.truth_student["churned_on"].notna().sum())
    # No attempt on or after a student's churn day.
    late = conn.execute(
        "SELECT count(*) FROM attempt AS a JOIN synthetic_truth_student AS t USING (user_id)"
        " WHERE a.attempt_date >= t.churned_on"
    ).fetchone()[0]
    assert late == 0


def test_failed_load_leaves_previous_data(conn: psycopg.Connection, data: SyntheticData) -> None:
    load(conn, data)
    before = checksums(conn)
    broken_attempts = data.attempts.copy()
    broken_attempts.loc[broken_attempts.index[-1], "user_id"] = -1  # no such student
    broken = replace(data, attempts=broken_attempts)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        load(conn, broken)
    assert checksums(conn) == before
    assert conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'attempt_log'").fetchone()[0] == 3
