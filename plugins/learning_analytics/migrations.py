"""The warehouse schema: ordered, append-only migrations and the ``migrate`` command.

    python -m learning_analytics.migrations [--dsn URI-without-password]

applies the files of ``include/sql/migrations`` not yet applied (each in its own
transaction, under an advisory lock so that two containers starting at once do not race)
and sets the platform clock (``LA_TIMEZONE``) the ``attempt`` view reads.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Iterable, Sequence

import psycopg

from learning_analytics.paths import MIGRATIONS_DIR
from learning_analytics.settings import TIMEZONE_ENV, platform_timezone
from learning_analytics.warehouse import add_dsn_argument, apply_session_limits, dsn_from_args, set_platform_clock

log = logging.getLogger(__name__)

# Serialises concurrent migration runs (e.g. two containers starting at once).
_MIGRATION_LOCK_ID = 727_001


def migration_files() -> list[tuple[str, str]]:
    """``(version, sql)`` of every migration, in order (file names sort by number)."""
    return [(path.name, path.read_text(encoding="utf-8")) for path in sorted(MIGRATIONS_DIR.glob("*.sql"))]


def apply_migrations(conn: psycopg.Connection, files: Iterable[tuple[str, str]] | None = None) -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction; return them.

    A migration already applied with different content is an error: migrations are
    append-only, a change needs a new file.
    """
    conn.autocommit = False
    applied_now: list[str] = []
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_ID,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.commit()
        try:
            cur.execute("SELECT version, checksum FROM schema_migrations")
            applied = dict(cur.fetchall())
            for version, text in files if files is not None else migration_files():
                checksum = hashlib.sha256(text.encode()).hexdigest()
                if version in applied:
                    if applied[version] != checksum:
                        raise RuntimeError(
                            f"migration {version} was changed after it was applied; add a new migration instead"
                        )
                    continue
                cur.execute(text)
                cur.execute("INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)", (version, checksum))
                conn.commit()
                applied_now.append(version)
                log.info("applied migration %s", version)
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_ID,))
            conn.commit()
    return applied_now


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Apply the warehouse migrations in include/sql/migrations and set the platform clock "
        f"({TIMEZONE_ENV}, default Asia/Seoul)."
    )
    add_dsn_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    timezone = platform_timezone()
    with psycopg.connect(dsn_from_args(parser, args)) as conn:
        apply_session_limits(conn)
        applied = apply_migrations(conn)
        changed = set_platform_clock(conn, timezone)
    print(f"migrations: {len(applied)} applied ({', '.join(applied) or 'schema up to date'})")
    print(f"platform clock: {timezone}{' (changed)' if changed else ''}")


if __name__ == "__main__":
    main()
