"""Filesystem locations of the project's non-Python assets."""

from __future__ import annotations

from pathlib import Path

#: Repository root (``plugins/learning_analytics/paths.py`` -> two levels up).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: SQL lives in files, never in Python strings.
SQL_DIR = PROJECT_ROOT / "include" / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"


def read_sql(relative_path: str) -> str:
    """Return the text of ``include/sql/<relative_path>``.

    :raises FileNotFoundError: naming the missing file, so a typo in a pipeline
        definition fails at DAG-parse time rather than mid-run.
    """
    path = SQL_DIR / relative_path
    if not path.is_file():
        raise FileNotFoundError(f"SQL file not found: {path}")
    return path.read_text(encoding="utf-8")
