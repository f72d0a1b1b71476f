"""Loading synthetic learners into a real PostgreSQL warehouse.

Needs ``ANALYTICS_DB_URI`` (a libpq URI of the warehouse; the ``warehouse_uri``
fixture applies the migrations). Loading REPLACES the warehouse's source and truth
tables (and, by CASCADE, tables built from them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date

import pandas as pd
import psycopg
import pytest

from learning_analytics.synthetic import LOADED_TABLES, SyntheticData, generate, load

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
    "synthetic_truth_weekly": (
        "SELECT md5(string_agg(t::text, '|' ORDER BY user_id, week_start)) FROM synthetic_truth_weekly AS t"
    ),
}


@pytest.fixture(scope="module")
def conn(warehouse_uri: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the migrated warehouse."""
    with psycopg.connect(warehouse_uri, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    """6 weeks of history and 2 future weeks on the default clock (Asia/Seoul)."""
    return generate(n_students=120, n_weeks=6, seed=5, end_date=date(2026, 11, 23), future_weeks=2)


def row_counts(conn: psycopg.Connection) -> dict[str, int]:
    return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in LOADED_TABLES}


def checksums(conn: psycopg.Connection) -> dict[str, str]:
    return {table: conn.execute(query).fetchone()[0] for table, query in CHECKSUM_QUERIES.items()}


def test_loading_twice_gives_identical_tables(
    conn: psycopg.Connection, data: SyntheticData, warehouse_uri: str
) -> None:
    first = load(conn, data)
    counts_first, sums_first = row_counts(conn), checksums(conn)
    second = load(warehouse_uri, data)  # the URI form opens its own connection
    assert row_counts(conn) == counts_first
    assert checksums(conn) == sums_first
    assert first.rows == second.rows
    assert counts_first["attempt_log"] == data.n_attempts
    assert counts_first["students"] == len(data.students)
    assert counts_first["synthetic_truth_anomaly"] == len(data.truth_anomaly) > 0
    assert counts_first["synthetic_truth_weekly"] == 120 * (6 + 2)
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
    timezone = data.run.timezone
    n_rows, n_days, first_day, last_day = conn.execute(
        "SELECT count(*), count(DISTINCT (attempted_at AT TIME ZONE %(tz)s)::date),"
        " min((attempted_at AT TIME ZONE %(tz)s)::date), max((attempted_at AT TIME ZONE %(tz)s)::date)"
        " FROM attempt",
        {"tz": timezone},
    ).fetchone()
    assert n_rows == data.n_attempts
    # Local days: history and future weeks, nothing outside them.
    assert data.run.start_date <= first_day <= last_day < data.run.data_end
    assert n_days > 7 * data.run.n_simulated_weeks // 2
    n_future = conn.execute(
        "SELECT count(*) FROM attempt WHERE attempted_at >= (%s::date)::timestamp AT TIME ZONE %s",
        (data.run.history_end, timezone),
    ).fetchone()[0]
    assert n_future == data.n_attempts - len(data.history()) > 0


def test_truth_tables_are_filled(conn: psycopg.Connection, data: SyntheticData) -> None:
    load(conn, data)
    run = conn.execute(
        "SELECT seed, n_students, n_weeks, start_date, end_date, n_attempts, churn_coefficients,"
        " future_weeks, history_end, timezone FROM synthetic_run"
    ).fetchone()
    assert run == (
        data.run.seed,
        data.run.n_students,
        data.run.n_weeks,
        data.run.start_date,
        data.run.end_date,
        data.n_attempts,
        data.run.churn_coefficients,
        2,
        data.run.end_date,
        "Asia/Seoul",
    )
    n_students, n_segments, n_churned, n_missing = conn.execute(
        "SELECT count(*), count(DISTINCT segment), count(churned_on),"
        " count(*) FILTER (WHERE weekly_slope IS NULL OR churn_log_hazard IS NULL OR topic_breadth IS NULL"
        "  OR exam_week IS NULL)"
        " FROM synthetic_truth_student"
    ).fetchone()
    assert (n_students, n_segments, n_missing) == (len(data.students), 4, 0)
    assert n_churned == int(data.truth_student["churned_on"].notna().sum())
    # No attempt on or after a student's (local) churn day.
    late = conn.execute(
        "SELECT count(*) FROM attempt AS a JOIN synthetic_truth_student AS t USING (user_id)"
        " WHERE (a.attempted_at AT TIME ZONE %s)::date >= t.churned_on",
        (data.run.timezone,),
    ).fetchone()[0]
    assert late == 0
    # The exam week is the Monday of the exam, and anomaly kinds match their factors.
    assert conn.execute(
        "SELECT count(*) FROM synthetic_truth_student AS t JOIN students AS s USING (user_id)"
        " WHERE t.exam_week <> date_trunc('week', s.exam_date)::date"
    ).fetchone() == (0,)
    kinds = dict(
        conn.execute(
            "SELECT kind, count(*) FILTER (WHERE (kind = 'spike') = (activity_factor > 1))"
            " FROM synthetic_truth_anomaly GROUP BY kind"
        ).fetchall()
    )
    assert kinds == dict(data.truth_anomaly["kind"].value_counts())
    # Every simulated week of every student; "active" is "not churned by the week's Monday".
    n_weeks, n_rows, first_week, last_week, n_inconsistent = conn.execute(
        "SELECT count(DISTINCT week_start), count(*), min(week_start), max(week_start),"
        " count(*) FILTER (WHERE active <> (t.churned_on IS NULL OR t.churned_on > w.week_start))"
        " FROM synthetic_truth_weekly AS w JOIN synthetic_truth_student AS t USING (user_id)"
    ).fetchone()
    assert (n_weeks, n_rows, n_inconsistent) == (8, 8 * len(data.students), 0)
    assert (first_week, last_week) == (data.run.start_date, date(2026, 11, 30))


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
