"""PostgreSQL warehouse access: transactional writes, queries, the platform clock.

The schema (ordered migrations and the ``migrate`` command) is :mod:`learning_analytics.migrations`.

Writes follow one pattern so that a failed task leaves the warehouse as it was and a
rerun of the same logical date replaces instead of duplicating:

1. open one transaction for everything a task writes;
2. delete the run's own partition (``run_date = ...``) where a table is keyed by run;
3. COPY the new rows into a temporary table and ``INSERT ... ON CONFLICT DO UPDATE``
   (or ``UPDATE ... FROM`` for column updates such as ``weekly_kpi.P``);
4. commit, or roll back on any error.

COPY + upsert was measured 2.4x faster than ``insert_rows(replace=True)`` on 50k rows,
and, unlike ``insert_rows``, stores pandas NaN/NaT as NULL.

Every connection waits at most ``LA_DB_LOCK_TIMEOUT_S`` for a lock and runs a
statement at most ``LA_DB_STATEMENT_TIMEOUT_S``: a persist blocked by another
transaction fails fast with :class:`WarehouseTimeoutError` (naming the statement;
retryable, nothing written) instead of waiting out the task timeout while holding
its own locks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import date, datetime
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from learning_analytics.paths import read_sql
from learning_analytics.settings import TIMEZONE_ENV
from learning_analytics.values import none_if_missing

log = logging.getLogger(__name__)

#: Airflow connection id of the analytics warehouse.
ANALYTICS_CONN_ID = "analytics_db"


def _seconds_setting(name: str, default: float) -> float:
    text = os.environ.get(name, "")
    try:
        value = float(text) if text else default
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {text!r}") from None
    if not 0 < value <= 86_400:
        raise ValueError(f"{name} must be within (0, 86400] seconds, got {value}")
    return value


def lock_timeout_s() -> float:
    """``LA_DB_LOCK_TIMEOUT_S`` (default 30): longest wait for a lock (PostgreSQL ``lock_timeout``)."""
    return _seconds_setting("LA_DB_LOCK_TIMEOUT_S", 30.0)


def statement_timeout_s() -> float:
    """``LA_DB_STATEMENT_TIMEOUT_S`` (default 900): longest statement (``statement_timeout``)."""
    return _seconds_setting("LA_DB_STATEMENT_TIMEOUT_S", 900.0)


def apply_session_limits(conn: psycopg.Connection) -> None:
    """Set ``lock_timeout`` and ``statement_timeout`` for every later transaction of ``conn``."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
            (f"{round(lock_timeout_s() * 1000)}ms", f"{round(statement_timeout_s() * 1000)}ms"),
        )
    conn.commit()


class WarehouseTimeoutError(RuntimeError):
    """A statement hit ``lock_timeout`` or ``statement_timeout``; the transaction was rolled
    back. Retryable: the lock holder or the load may be gone on the next try."""


@contextmanager
def _limits_named(what: str) -> Iterator[None]:
    """Turn a lock or statement timeout into a :class:`WarehouseTimeoutError` naming ``what``."""
    try:
        yield
    except psycopg.errors.LockNotAvailable as err:
        raise WarehouseTimeoutError(
            f"{what}: gave up waiting for a lock after {lock_timeout_s():g} s (LA_DB_LOCK_TIMEOUT_S); "
            f"another transaction holds it. Nothing was written; retry later ({err.diag.message_primary})"
        ) from err
    except psycopg.errors.QueryCanceled as err:
        raise WarehouseTimeoutError(
            f"{what}: cancelled after {statement_timeout_s():g} s (LA_DB_STATEMENT_TIMEOUT_S). "
            f"Nothing was written; retry later or raise the limit ({err.diag.message_primary})"
        ) from err


def _first_write(text: str) -> str:
    """``UPDATE weekly_kpi`` for a SQL text whose first write updates weekly_kpi."""
    match = re.search(r"\b(UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+([\w.]+)", text, re.IGNORECASE)
    return f"{' '.join(match.group(1).upper().split())} {match.group(2)}" if match else "read"


def _describe(conn: psycopg.Connection, statement: str | sql.Composable) -> str:
    text = statement.as_string(conn) if isinstance(statement, sql.Composable) else statement
    return " ".join(text.split())[:120]


def _cell(value: Any) -> Any:
    """One frame cell as a value psycopg can COPY: missing -> NULL (:func:`none_if_missing`), dict -> JSON."""
    value = none_if_missing(value)
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def frame_records(frame: pd.DataFrame) -> Iterator[tuple[Any, ...]]:
    """Rows of ``frame`` as tuples of plain Python values with missing values as ``None``."""
    columns = [frame[name].astype(object).tolist() for name in frame.columns]
    for row in zip(*columns, strict=True):
        yield tuple(_cell(value) for value in row)


def log_statement(relative_path: str, statement: str, params: Mapping[str, Any] | None) -> None:
    """Log the SQL a task is about to run with its parameters (the task log shows what ran)."""
    shown = {name: value.isoformat() if isinstance(value, date) else value for name, value in (params or {}).items()}
    log.info("running include/sql/%s with parameters %s\n%s", relative_path, shown, statement.strip())


class WarehouseTransaction:
    """Writes inside one open transaction; obtained from :meth:`Warehouse.transaction`."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self._temp_tables = 0

    def execute(
        self, statement: str | sql.Composable, params: Mapping[str, Any] | None = None, *, what: str | None = None
    ) -> int:
        """Run ``statement`` (one or more SQL statements); return the last one's row count.

        A client-side binding cursor lets a SQL file hold several statements with
        named parameters (``%(name)s``; a literal percent sign is ``%%``). ``what`` names
        the statement in a timeout error (default: its text).
        """
        with _limits_named(what or _describe(self.conn, statement)), psycopg.ClientCursor(self.conn) as cur:
            cur.execute(statement, params)
            rowcount = cur.rowcount
            while cur.nextset():  # the cursor starts at the first statement's result
                rowcount = cur.rowcount
            return rowcount

    def execute_file(self, relative_path: str, params: Mapping[str, Any] | None = None) -> int:
        """Run the SQL in ``include/sql/<relative_path>`` with named ``params``."""
        started = time.monotonic()
        statement = read_sql(relative_path)
        log_statement(relative_path, statement, params)
        rowcount = self.execute(statement, params, what=f"{relative_path} ({_first_write(statement)})")
        log.info("%s: %s rows in %.2f s", relative_path, rowcount, time.monotonic() - started)
        return rowcount

    def delete_partition(self, table: str, key: Mapping[str, Any]) -> int:
        """Delete the rows of ``table`` matching every ``column = value`` in ``key``."""
        condition = sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column)) for column in key
        )
        deleted = self.execute(
            sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(table), condition),
            key,
            what=f"DELETE FROM {table}",
        )
        log.info("%s: deleted %s rows of %s", table, deleted, dict(key))
        return deleted

    def _copy_to_temp(self, table: str, frame: pd.DataFrame) -> sql.Identifier:
        """COPY ``frame`` into a new temporary table shaped like ``table``'s columns."""
        self._temp_tables += 1
        temp = sql.Identifier(f"staging_{table}_{self._temp_tables}")
        columns = sql.SQL(", ").join(map(sql.Identifier, frame.columns))
        with _limits_named(f"COPY into a staging copy of {table}"), self.conn.cursor() as cur:
            # CREATE ... AS SELECT copies column types but no constraints, so partial
            # column sets (e.g. key + P) can be staged.
            cur.execute(
                sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                    temp, columns, sql.Identifier(table)
                )
            )
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(temp, columns)) as copy:
                for record in frame_records(frame):
                    copy.write_row(record)
        return temp

    def upsert(self, table: str, frame: pd.DataFrame, key_columns: Sequence[str]) -> int:
        """Insert ``frame`` into ``table``; rows whose key exists are updated."""
        if frame.empty:
            log.info("%s: nothing to upsert", table)
            return 0
        missing = [column for column in key_columns if column not in frame.columns]
        if missing:
            raise ValueError(f"{table}: upsert frame lacks key columns {missing}")
        temp = self._copy_to_temp(table, frame)
        columns = sql.SQL(", ").join(map(sql.Identifier, frame.columns))
        updates = [column for column in frame.columns if column not in key_columns]
        conflict_action = (
            sql.SQL("DO UPDATE SET ")
            + sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(column)) for column in updates)
            if updates
            else sql.SQL("DO NOTHING")
        )
        statement = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
            sql.Identifier(table),
            columns,
            columns,
            temp,
            sql.SQL(", ").join(map(sql.Identifier, key_columns)),
            conflict_action,
        )
        written = self.execute(statement, what=f"INSERT INTO {table} ... ON CONFLICT")
        log.info("%s: upserted %s rows", table, written)
        return written

    def replace_partition(
        self, table: str, frame: pd.DataFrame, key: Mapping[str, Any], key_columns: Sequence[str]
    ) -> int:
        """Replace the partition ``key`` of ``table`` by ``frame`` (a rerun never duplicates)."""
        self.delete_partition(table, key)
        return self.upsert(table, frame, key_columns)

    def update_columns(self, table: str, frame: pd.DataFrame, key_columns: Sequence[str]) -> int:
        """``UPDATE table SET <other columns of frame>`` for rows matching the frame's keys.

        Rows of ``frame`` without a matching row in ``table`` are ignored (counted in
        the log), which is what writing a model output into an existing KPI row needs.
        """
        if frame.empty:
            log.info("%s: no rows to update", table)
            return 0
        temp = self._copy_to_temp(table, frame)
        set_columns = [column for column in frame.columns if column not in key_columns]
        statement = sql.SQL("UPDATE {target} AS t SET {sets} FROM {temp} AS s WHERE {match}").format(
            target=sql.Identifier(table),
            sets=sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(sql.Identifier(column)) for column in set_columns),
            temp=temp,
            match=sql.SQL(" AND ").join(
                sql.SQL("t.{0} = s.{0}").format(sql.Identifier(column)) for column in key_columns
            ),
        )
        updated = self.execute(statement, what=f"UPDATE {table}")
        log.info("%s: updated %s of %s rows (%s)", table, updated, len(frame), ", ".join(set_columns))
        return updated


class ClockMismatchError(RuntimeError):
    """The warehouse's clock (``platform_clock``) is not the run's ``LA_TIMEZONE``."""


def warehouse_timezone(conn: psycopg.Connection) -> str:
    """The zone of ``platform_clock``: the clock of the ``attempt`` view's ``attempt_date``."""
    with conn.cursor() as cur:
        cur.execute("SELECT timezone FROM platform_clock")
        row = cur.fetchone()
    if row is None:
        raise ClockMismatchError("platform_clock is empty: run `python -m learning_analytics.migrations`")
    return row[0]


def set_platform_clock(conn: psycopg.Connection, timezone: str) -> bool:
    """Make ``timezone`` the warehouse's clock; return whether it changed (committed).

    Days and weeks already built on the old clock are not rebuilt here: after a change,
    rebuild ``features_topic_daily`` and ``weekly_kpi`` over the history (backfill).
    """
    previous = warehouse_timezone(conn)
    if previous == timezone:
        return False
    with conn.cursor() as cur:
        cur.execute("UPDATE platform_clock SET timezone = %s, updated_at = now()", (timezone,))
    conn.commit()
    log.warning(
        "platform clock changed from %s to %s: rebuild features and weekly KPI over the history", previous, timezone
    )
    return True


def require_platform_clock(conn: psycopg.Connection, timezone: str) -> None:
    """Fail unless the warehouse's clock is ``timezone`` (a run's ``LA_TIMEZONE``).

    The ``attempt`` view computes ``attempt_date`` on the warehouse's clock and the SQL
    files put window bounds on the run's: both must be the same zone.

    :raises ClockMismatchError: naming both zones and how to switch.
    """
    current = warehouse_timezone(conn)
    if current != timezone:
        raise ClockMismatchError(
            f"{TIMEZONE_ENV} is {timezone!r} but the warehouse's clock (platform_clock) is {current!r}: "
            f"set {TIMEZONE_ENV} back, or switch the warehouse with "
            f"`{TIMEZONE_ENV}={timezone} python -m learning_analytics.migrations --dsn ...` "
            "and rebuild features and weekly KPI over the history"
        )


class Warehouse:
    """The analytics warehouse behind an Airflow Postgres connection.

    :param conn_id: Airflow connection id; host, port, login, password and schema
        (the database name) are those of the PostgreSQL server.
    """

    def __init__(self, conn_id: str = ANALYTICS_CONN_ID) -> None:
        self.conn_id = conn_id

    def connect(self) -> psycopg.Connection:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        conn = PostgresHook(postgres_conn_id=self.conn_id).get_conn()
        conn.autocommit = False
        apply_session_limits(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[WarehouseTransaction]:
        """One transaction: committed when the block ends, rolled back on any error."""
        conn = self.connect()
        try:
            yield WarehouseTransaction(conn)
            conn.commit()
        except BaseException:
            # A connection the server closed (restart, pg_terminate_backend) cannot roll
            # back, and need not: PostgreSQL discards its open transaction itself.
            with suppress(psycopg.Error):
                conn.rollback()
            log.error("warehouse transaction rolled back; nothing was written")
            raise
        finally:
            conn.close()

    def require_clock(self, timezone: str) -> None:
        """:func:`require_platform_clock` on this warehouse (called at the start of every run)."""
        conn = self.connect()
        try:
            require_platform_clock(conn, timezone)
        finally:
            conn.close()

    def query_frame(self, relative_path: str, params: Mapping[str, Any]) -> pd.DataFrame:
        """Run the query in ``include/sql/<relative_path>`` and return its rows."""
        started = time.monotonic()
        statement = read_sql(relative_path)
        log_statement(relative_path, statement, params)
        conn = self.connect()
        try:
            with _limits_named(relative_path), conn.cursor() as cur:
                cur.execute(statement, params)
                columns = [column.name for column in cur.description or []]
                frame = pd.DataFrame(cur.fetchall(), columns=columns)
            conn.rollback()
        finally:
            conn.close()
        log.info("%s: %s rows in %.2f s", relative_path, len(frame), time.monotonic() - started)
        return frame


def _json_default(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(value: Any) -> str:
    """JSON text for a jsonb column (dates as ISO strings)."""
    return json.dumps(value, default=_json_default)


def add_dsn_argument(parser: argparse.ArgumentParser) -> None:
    """``--dsn`` for command lines: optional, and never with a password (``ps`` shows it)."""
    parser.add_argument(
        "--dsn",
        help="libpq URI of the warehouse WITHOUT a password (default: $ANALYTICS_DB_URI, else the "
        "libpq environment: PGHOST, PGDATABASE, ... with the password from PGPASSWORD or PGPASSFILE)",
    )


def dsn_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The DSN to connect with: ``--dsn`` (password-less), ``ANALYTICS_DB_URI``, or ``""``
    (libpq reads the environment and the passfile)."""
    if args.dsn:
        try:
            has_password = "password" in psycopg.conninfo.conninfo_to_dict(args.dsn)
        except psycopg.ProgrammingError as err:
            parser.error(f"--dsn: {err}")
        if has_password:
            parser.error(
                "--dsn must not contain a password (every user can read command lines): "
                "set ANALYTICS_DB_URI or use a passfile (PGPASSFILE, ~/.pgpass)"
            )
        return args.dsn
    return os.environ.get("ANALYTICS_DB_URI", "")
