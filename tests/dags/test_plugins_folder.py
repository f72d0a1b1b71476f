"""What Airflow imports from plugins/: every .py file, as a top-level module named after it."""

from __future__ import annotations

from pathlib import Path

from airflow._shared.module_loading.file_discovery import find_path_from_directory

PLUGINS_DIR = Path(__file__).resolve().parents[2] / "plugins"


def test_package_entry_points_are_not_loaded_as_plugins() -> None:
    """A ``__main__.py`` would be imported as the module ``__main__`` (replacing the
    scheduler's) and run its command line: ``plugins/.airflowignore`` keeps it out."""
    mains = sorted(PLUGINS_DIR.rglob("__main__.py"))
    assert mains, "expected the synthetic generator's command line in plugins/"
    loaded = {Path(path) for path in find_path_from_directory(str(PLUGINS_DIR), ".airflowignore", "glob")}
    assert not loaded & set(mains)
    assert PLUGINS_DIR / "learning_analytics" / "synthetic" / "simulate.py" in loaded
