"""Warehouse limits and DSN handling that need no database."""

from __future__ import annotations

import argparse

import pytest

from learning_analytics.paths import read_sql
from learning_analytics.warehouse import _first_write, add_dsn_argument, dsn_from_args, lock_timeout_s


def parse(argv: list[str]) -> str:
    parser = argparse.ArgumentParser()
    add_dsn_argument(parser)
    return dsn_from_args(parser, parser.parse_args(argv))


def test_a_dsn_with_a_password_is_refused_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--dsn", "postgresql://analytics:s3cret@db:5432/analytics"])
    assert "must not contain a password" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--dsn", "host=db password=s3cret dbname=analytics"])


def test_the_dsn_comes_from_the_environment_or_libpq(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANALYTICS_DB_URI", "postgresql://analytics:s3cret@db/analytics")
    assert parse([]) == "postgresql://analytics:s3cret@db/analytics"
    assert parse(["--dsn", "postgresql://analytics@db/analytics"]) == "postgresql://analytics@db/analytics"
    monkeypatch.delenv("ANALYTICS_DB_URI")
    assert parse([]) == ""  # libpq: PGHOST, PGUSER, ..., PGPASSFILE


def test_timeouts_are_bounded_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LA_DB_LOCK_TIMEOUT_S", raising=False)
    assert lock_timeout_s() == 30.0
    monkeypatch.setenv("LA_DB_LOCK_TIMEOUT_S", "2.5")
    assert lock_timeout_s() == 2.5
    for bad in ("0", "-1", "soon", "100000"):
        monkeypatch.setenv("LA_DB_LOCK_TIMEOUT_S", bad)
        with pytest.raises(ValueError, match="LA_DB_LOCK_TIMEOUT_S"):
            lock_timeout_s()


def test_a_timeout_names_the_table_a_sql_file_writes() -> None:
    assert _first_write(read_sql("survival/clear_kpi_risk.sql")) == "UPDATE weekly_kpi"
    assert _first_write("SELECT 1") == "read"
