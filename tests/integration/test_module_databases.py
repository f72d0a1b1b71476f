"""Each integration module owns its warehouse database (tests/conftest.py).

This module's database is a copy of the migrated, empty template: it has the schema and
no rows; everything the module uses (the ``db`` fixture, ``ANALYTICS_DB_URI``, the
Airflow connection ``analytics_db`` that in-process code and ``airflow dags test``
resolve) points at it; and rows written here are invisible to another module's
database, made from the same template the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

from la_testing import (
    copy_database,
    database_name,
    drop_database,
    fetch_all,
    module_database_name,
    with_database,
)
from learning_analytics.warehouse import Warehouse

MODULE = Path(__file__).stem


def test_the_module_runs_on_a_database_of_its_own(warehouse_uri: str, warehouse_template, db) -> None:
    expected = module_database_name(database_name(warehouse_template.base_uri), MODULE)
    assert database_name(warehouse_uri) == expected != warehouse_template.name
    assert fetch_all(db, "SELECT current_database()") == [(expected,)]
    assert database_name(os.environ["ANALYTICS_DB_URI"]) == expected
    assert database_name(os.environ["AIRFLOW_CONN_ANALYTICS_DB"]) == expected
    conn = Warehouse().connect()  # the DAGs' way: the Airflow connection analytics_db
    try:
        assert fetch_all(conn, "SELECT current_database()") == [(expected,)]
    finally:
        conn.close()


def test_the_copy_has_every_migration(warehouse_template, db: psycopg.Connection) -> None:
    with psycopg.connect(with_database(warehouse_template.base_uri, warehouse_template.name)) as template:
        migrations = fetch_all(template, "SELECT version, checksum FROM schema_migrations ORDER BY version")
    assert migrations, "the template must be migrated"
    assert fetch_all(db, "SELECT version, checksum FROM schema_migrations ORDER BY version") == migrations


def test_rows_written_here_are_invisible_to_another_modules_database(warehouse_template, db) -> None:
    db.execute("INSERT INTO students VALUES (-1, '2026-01-05', 0.8, '2026-12-01')")
    other_name = module_database_name(database_name(warehouse_template.base_uri), "test_another_module")
    other_uri = copy_database(warehouse_template.base_uri, warehouse_template.name, other_name)
    try:
        with psycopg.connect(other_uri) as other:
            assert fetch_all(other, "SELECT user_id FROM students") == []
            other.execute("INSERT INTO students VALUES (-2, '2026-01-05', 0.8, '2026-12-01')")
            other.commit()
        assert fetch_all(db, "SELECT user_id FROM students") == [(-1,)]
    finally:
        drop_database(warehouse_template.base_uri, other_name)
