"""The Assets every DAG declares match the tables its code actually reads and writes.

"Actually" is read from the code, not from the catalog: the SQL files a DAG's modules
name (INSERT/UPDATE/DELETE targets are writes, FROM/JOIN sources are reads) and the
table names passed to the warehouse's write helpers (``replace_partition``,
``upsert``, ``update_columns``, ``delete_partition``). A DAG's code is its DAG file,
the pipeline module it builds from, and the ``kpi`` functions those name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from learning_analytics import catalog
from learning_analytics.paths import MIGRATIONS_DIR, SQL_DIR

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "plugins" / "learning_analytics"

#: dag_id -> the DAG file and the module holding its pipeline.
DAG_CODE = {
    "build_features_topic_daily": ("build_features_topic_daily.py", None),
    "build_weekly_kpi": ("build_weekly_kpi.py", None),
    "fit_bayesian_growth": ("fit_bayesian_growth.py", "pipelines/growth.py"),
    "forecast_prophet": ("forecast_prophet.py", "pipelines/prophet.py"),
    "fit_survival_churn": ("fit_survival_churn.py", "pipelines/survival.py"),
    "cluster_segments": ("cluster_segments.py", "pipelines/cluster.py"),
    "evaluate_models": ("evaluate_models.py", "evaluation.py"),
}
WRITE_HELPERS = {"replace_partition", "upsert", "update_columns", "delete_partition"}
WRITE_SQL = re.compile(r"\b(?:insert\s+into|update|delete\s+from)\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)
READ_SQL = re.compile(r"\b(?:from|join)\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)


def warehouse_relations() -> set[str]:
    """Every table and view the migrations create (CTE names and aliases are not among them)."""
    text = "\n".join(path.read_text() for path in MIGRATIONS_DIR.glob("*.sql"))
    pattern = r"create\s+(?:or\s+replace\s+)?(?:table|view)\s+(?:if\s+not\s+exists\s+)?([a-z_][a-z0-9_]*)"
    return set(re.findall(pattern, text, re.IGNORECASE))


def sql_tables(text: str, relations: set[str]) -> tuple[set[str], set[str]]:
    """(reads, writes) of one SQL file; ``DELETE FROM t`` is a write, not a read."""
    text = re.sub(r"--[^\n]*", "", text)
    writes = {name.lower() for name in WRITE_SQL.findall(text)} & relations
    deleted = {name.lower() for name in re.findall(r"delete\s+from\s+([a-z_]+)", text, re.IGNORECASE)}
    reads = {name.lower() for name in READ_SQL.findall(text)} & relations
    # A DELETE's own FROM is not a read unless the table is also read elsewhere in the file.
    only_deleted = {t for t in deleted if len(re.findall(rf"\b(?:from|join)\s+{t}\b", text, re.IGNORECASE)) == 1}
    return reads - only_deleted, writes


def code_units(dag_id: str) -> list[str]:
    dag_file, module = DAG_CODE[dag_id]
    sources = [(ROOT / "dags" / dag_file).read_text()]
    if module:
        sources.append((PACKAGE / module).read_text())
    called = {
        node.id if isinstance(node, ast.Name) else node.attr
        for source in sources
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Name | ast.Attribute)
    }
    # The kpi.py functions the code calls, and the ones those call.
    kpi_functions = {
        node.name: node
        for node in ast.parse((PACKAGE / "kpi.py").read_text()).body
        if isinstance(node, ast.FunctionDef)
    }
    included: set[str] = set()
    while pending := (called & set(kpi_functions)) - included:
        for name in sorted(pending):
            included.add(name)
            sources.append(ast.unparse(kpi_functions[name]))
            called |= {
                node.id if isinstance(node, ast.Name) else node.attr
                for node in ast.walk(kpi_functions[name])
                if isinstance(node, ast.Name | ast.Attribute)
            }
    return sources


def code_tables(dag_id: str) -> tuple[set[str], set[str]]:
    """(reads, writes) of a DAG's code: its SQL files and the write helpers it calls."""
    relations = warehouse_relations()
    reads: set[str] = set()
    writes: set[str] = set()
    for source in code_units(dag_id):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(".sql"):
                file_reads, file_writes = sql_tables((SQL_DIR / node.value).read_text(), relations)
                reads |= file_reads
                writes |= file_writes
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in WRITE_HELPERS
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                writes.add(node.args[0].value)
    return reads, writes


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=ROOT / "dags", safe_mode=False)


def test_every_dag_is_catalogued() -> None:
    assert set(catalog.DAGS) == set(DAG_CODE)


@pytest.mark.parametrize("dag_id", sorted(DAG_CODE))
def test_catalog_matches_the_tables_the_code_reads_and_writes(dag_id: str) -> None:
    reads, writes = code_tables(dag_id)
    entry = catalog.DAGS[dag_id]
    assert set(entry.writes) == writes, f"{dag_id}: catalog writes {sorted(entry.writes)}, code writes {sorted(writes)}"
    assert set(entry.reads) == reads, f"{dag_id}: catalog reads {sorted(entry.reads)}, code reads {sorted(reads)}"


@pytest.mark.parametrize("dag_id", sorted(DAG_CODE))
def test_dag_declares_its_tables_as_assets(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    inlets = {asset.uri for task in dag.tasks for asset in task.inlets}
    outlets = {asset.uri for task in dag.tasks for asset in task.outlets}
    entry = catalog.DAGS[dag_id]
    assert inlets == {catalog.table_asset(t).uri for t in entry.reads}
    assert outlets == {catalog.table_asset(t).uri for t in entry.writes}
    assert dag.description == entry.description and "\n" not in dag.description


def test_checker_sees_a_missing_or_extra_table() -> None:
    """Negative control: the parser is not vacuous (a wrong catalog would fail)."""
    relations = warehouse_relations()
    reads, writes = sql_tables(
        "-- from students (a comment)\nDELETE FROM weekly_kpi WHERE x;\n"
        "INSERT INTO weekly_kpi SELECT * FROM attempt a JOIN questions q USING (q);\n"
        "WITH x AS (SELECT 1) SELECT * FROM x",
        relations,
    )
    assert writes == {"weekly_kpi"} and reads == {"attempt", "questions"}
    reads, writes = code_tables("fit_survival_churn")
    assert set(catalog.DAGS["forecast_prophet"].writes) != writes


def test_asset_uris_are_valid_postgres_assets() -> None:
    from urllib.parse import urlsplit

    from airflow.providers.postgres.assets.postgres import sanitize_uri

    for table in {t for entry in catalog.DAGS.values() for t in (*entry.reads, *entry.writes)}:
        uri = catalog.table_asset(table).uri
        assert sanitize_uri(urlsplit(uri)).geturl() == uri


def test_model_output_tables_are_what_the_models_write_without_the_kpi_tables() -> None:
    """Tests and benchmarks empty these to start from the source data: every table a model DAG
    or the scoreboard writes, none the KPI builders own."""
    tables = set(catalog.model_output_tables())
    assert {"growth_brms_meta", "prophet_forecast", "survival_active_risk", "segment_meta"} <= tables
    assert "model_evaluation" in tables
    assert not tables & {"weekly_kpi", "features_topic_daily", "attempt_log"}
