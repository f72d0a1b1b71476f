"""The Learning analytics view in a real browser (headless Chromium driven by Playwright).

One scenario for the module: 120 synthetic students whose data continue 6 weeks past T;
every model DAG runs for T (cluster also two weeks earlier; `airflow dags test`, real R
services, real warehouse), the future's KPI is built and the runs are scored at
E = T + 6 weeks (the KPI builders' and evaluate_models' functions, in-process).
Two API servers run the plugin (non-lazy plugin loading):
one with ``SIMPLE_AUTH_MANAGER_ALL_ADMINS=True`` (the local default: the browser test
opens every page there and saves the README's screenshots under docs/ui/), one with a
real login (no token: 401, or a redirect to the login page; a viewer's token: 200).

What is checked is read from the warehouse, not hard-coded: the number of segments
and their members, the students in the P(goal) histogram, a known student's flagged
week marked on their I_t chart, one forest-plot row per Cox coefficient, one chart per
scored metric. Empty states (a run date without results, an unknown student, a
malformed value) are pages with a message and status 200.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from playwright import sync_api as playwright_api

from la_testing import LENIENT_GROWTH_CONF, TEST_LOGICAL_DATE, PortServer, fetch_all
from learning_analytics import synthetic
from learning_analytics.catalog import model_output_tables
from learning_analytics.evaluation import EVALUATORS, MODELS, EvaluationWindow, persist_evaluation
from learning_analytics.kpi import build_features_topic_daily, build_weekly_kpi, features_window, kpi_window
from learning_analytics.settings import EvaluationSettings, FeaturesSettings, KpiSettings
from learning_analytics.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "ui"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
T = TEST_LOGICAL_DATE
FUTURE_WEEKS = 6
E = T + timedelta(weeks=FUTURE_WEEKS)
HISTORY_WEEKS = 12
N_STUDENTS = 120
#: The model DAGs run as in production (`airflow dags test`, R services); each group's
#: DAGs are independent and run at the same time (growth writes weekly_kpi.p and
#: survival weekly_kpi.s, so they are in different groups; cluster's run at T matches
#: its ids to the earlier run).
MODEL_RUN_GROUPS = (
    (
        (
            "fit_bayesian_growth",
            T,
            {"LOOKBACK_WEEKS": 6, "BRMS_ITER": 400, "BRMS_CHAINS": 1, "GOAL_HORIZON_WEEKS": 4, **LENIENT_GROWTH_CONF},
        ),
        ("forecast_prophet", T, {}),
        ("cluster_segments", T - timedelta(weeks=2), {}),
    ),
    (
        ("fit_survival_churn", T, {}),
        ("cluster_segments", T, {}),
    ),
)
EVALUATION_PARAMS = {"EVAL_MIN_BIN_STUDENTS": 5, "EVAL_CALIBRATION_BINS": 5}
VIEWER, VIEWER_PASSWORD = "analyst", "analyst-password"
PREFIX = "/learning-analytics"


def build_kpi(run_date: date, weeks: int) -> None:
    settings = KpiSettings.from_params({"KPI_LOOKBACK_WEEKS": weeks})
    build_weekly_kpi(Warehouse(), kpi_window(run_date, settings), settings)


def evaluate(run_date: date) -> None:
    """What evaluate_models' tasks do: score each model, then replace its rows."""
    window = EvaluationWindow.for_run(run_date, EvaluationSettings.from_params(EVALUATION_PARAMS))
    settings = EvaluationSettings.from_params(EVALUATION_PARAMS)
    scored = {model: EVALUATORS[model](Warehouse(), window, settings) for model in MODELS}
    with Warehouse().transaction() as tx:
        for model, rows in scored.items():
            persist_evaluation(tx, window.evaluated_for, model, rows)


@dataclass
class ApiServer:
    """An ``airflow api-server`` on a port of its own (:class:`la_testing.PortServer`)."""

    server: PortServer

    @property
    def base_url(self) -> str:
        return f"http://localhost:{self.server.port}"

    def wait_until_healthy(self, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        self.server.wait_listening(timeout_s)
        while time.monotonic() < deadline:
            if self.server.process is not None and self.server.process.poll() is not None:
                pytest.fail(f"api-server exited ({self.server.process.returncode}); log: {self.server.log_path}")
            try:
                if requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        pytest.fail(f"api-server not healthy after {timeout_s} s; log: {self.server.log_path}")

    def stop(self) -> None:
        self.server.stop(timeout_s=30)


def start_api_server(all_admins: bool, work_dir: Path) -> ApiServer:
    """``airflow api-server`` on a free port with the plugin loaded at start-up (not
    waited for: it boots while the DAGs run; :meth:`ApiServer.wait_until_healthy`)."""
    kind = "admins" if all_admins else "login"
    passwords = work_dir / f"passwords-{kind}.json"
    passwords.write_text(json.dumps({VIEWER: VIEWER_PASSWORD}))

    def env(port: int) -> dict[str, str]:
        return {
            **os.environ,
            "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": str(all_admins),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{VIEWER}:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
            "AIRFLOW__API__WORKERS": "1",
        }

    log_path = ROOT / ".local" / "logs" / f"ui-test-api-server-{kind}.log"
    log_path.unlink(missing_ok=True)
    server = PortServer(
        name=f"api-server ({kind})",
        command=lambda port: ["airflow", "api-server", "--port", str(port)],
        env=env,
        log_path=log_path,
        cwd=ROOT,
    )
    return ApiServer(server.start())


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ApiServer]]:
    """Both API servers, started before the DAG runs so that they boot meanwhile."""
    require = os.environ.get("AIRFLOW_HOME")
    if not require:
        pytest.fail("AIRFLOW_HOME is not set: run the tests through scripts/test.sh")
    work_dir = tmp_path_factory.mktemp("api")
    started = {"admins": start_api_server(True, work_dir), "login": start_api_server(False, work_dir)}
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def warehouse(warehouse_uri: str, run_dag: Any, servers: dict[str, ApiServer]) -> dict[str, Any]:
    """The scenario's results, as the warehouse holds them (what the pages must show)."""
    data = synthetic.generate(n_students=N_STUDENTS, n_weeks=HISTORY_WEEKS + FUTURE_WEEKS, seed=11, end_date=E)
    with psycopg.connect(warehouse_uri, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(model_output_tables())}")
    synthetic.load(warehouse_uri, data)
    # The SQL-only steps (KPI builders, scoring) run in-process through the same
    # functions their DAGs call: an `airflow dags test` process costs tens of seconds.
    build_features_topic_daily(
        Warehouse(), features_window(T, FeaturesSettings.from_params({"FEATURES_LOOKBACK_DAYS": 7 * HISTORY_WEEKS}))
    )
    build_kpi(T, HISTORY_WEEKS)
    for group in MODEL_RUN_GROUPS:
        with ThreadPoolExecutor(len(group)) as pool:
            results = list(pool.map(lambda run: run_dag(run[0], logical_date=run[1], conf=run[2]), group))
        for (dag_id, logical_date, _), result in zip(group, results, strict=True):
            assert result.succeeded, f"{dag_id} {logical_date} failed:\n{result.output[-4000:]}"
    build_kpi(E, FUTURE_WEEKS)  # the future happens
    evaluate(E)
    with psycopg.connect(warehouse_uri) as conn:
        top_anomaly = fetch_all(
            conn,
            "SELECT user_id, week_start FROM prophet_anomalies WHERE run_date = %s"
            " ORDER BY score DESC, user_id LIMIT 1",
            (T,),
        )
        return {
            "growth_users": fetch_all(conn, "SELECT count(*) FROM growth_brms_user WHERE run_date = %s AND p_goal IS NOT NULL", (T,))[0][0],  # noqa: E501
            "growth_student": fetch_all(conn, "SELECT user_id FROM growth_brms_user WHERE run_date = %s ORDER BY p_goal, user_id LIMIT 1", (T,))[0][0],  # noqa: E501
            "anomalies": fetch_all(conn, "SELECT count(*) FROM prophet_anomalies WHERE run_date = %s", (T,))[0][0],
            "top_anomaly": top_anomaly[0] if top_anomaly else None,
            "terms": [c["term"] for c in fetch_all(conn, "SELECT coefficients FROM survival_fit_meta WHERE run_date = %s", (T,))[0][0]],  # noqa: E501
            "active": fetch_all(conn, "SELECT count(*) FROM survival_active_risk WHERE run_date = %s", (T,))[0][0],
            "segments": fetch_all(conn, "SELECT segment, size FROM segment_meta WHERE run_date = %s ORDER BY segment", (T,)),  # noqa: E501
            "scored": {f"{m}: {k}" for m, k in fetch_all(conn, "SELECT DISTINCT model, metric FROM model_evaluation WHERE evaluated_for = %s", (E,))},  # noqa: E501
            "student_ids": [row[0] for row in fetch_all(conn, "SELECT user_id FROM students ORDER BY user_id")],
        }  # fmt: skip


@pytest.fixture(scope="module")
def browser(servers: dict[str, ApiServer]) -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(browser: Any, servers: dict[str, ApiServer], warehouse: dict[str, Any]) -> Iterator[Any]:
    """A browser tab on the all-admins server (the local stack's default)."""
    servers["admins"].wait_until_healthy()
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab.set_default_timeout(60_000)
    yield tab
    tab.close()


def open_page(page: Any, server: ApiServer, path: str, screenshot: str | None = None) -> Any:
    response = page.goto(f"{server.base_url}{PREFIX}/{path}")
    assert response is not None and response.status == 200, f"{path}: HTTP {response and response.status}"
    assert page.locator("h1").count() == 1, f"{path}: no page heading"
    if screenshot:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / screenshot), full_page=True)
    return page


def chart(page: Any, title_start: str) -> Any:
    charts = page.locator(f'svg.chart[data-title^="{title_start}"]')
    assert charts.count() == 1, f"no single chart titled {title_start!r}"
    return charts.first


def test_growth_page_shows_the_population_p_distribution_and_a_student(
    page: Any, servers: dict[str, ApiServer], warehouse: dict[str, Any]
) -> None:
    open_page(page, servers["admins"], "growth")
    assert page.locator("select[name=run_date]").input_value() == T.isoformat()  # the latest run by default
    chart(page, "Population slope per run")
    chart(page, "Average student's expected accuracy")
    bars = chart(page, "Distribution of P(goal)").locator("rect.bar")
    counts = [int(float(bars.nth(i).get_attribute("data-value"))) for i in range(bars.count())]
    assert sum(counts) == warehouse["growth_users"]
    student = warehouse["growth_student"]
    open_page(page, servers["admins"], f"growth?run_date={T}&user_id={student}", "growth.png")
    trajectory = chart(page, f"Student {student}: weekly accuracy")
    assert trajectory.locator("circle.point").count() >= 2, "weekly accuracy points"
    assert trajectory.locator('polyline[data-series="fitted trend"]').count() == 1
    assert "P(goal)" in page.locator("#student").inner_text()


def test_prophet_page_marks_a_known_students_anomaly_week(
    page: Any, servers: dict[str, ApiServer], warehouse: dict[str, Any]
) -> None:
    open_page(page, servers["admins"], "prophet")
    rows = page.locator("#anomalies tbody tr")
    assert rows.count() == min(warehouse["anomalies"], 50)
    assert warehouse["top_anomaly"] is not None, "the scenario's prophet run flagged no week"
    user_id, week = warehouse["top_anomaly"]
    # The strongest anomaly is the first row and links to the student's chart.
    rows.first.locator("a").click()
    page.wait_for_load_state()
    assert f"user_id={user_id}" in page.url
    page.screenshot(path=str(SCREENSHOTS / "prophet.png"), full_page=True)
    marks = chart(page, f"Student {user_id}: learning index").locator("circle.anomaly")
    assert week.isoformat() in [marks.nth(i).get_attribute("data-x") for i in range(marks.count())]
    chart(page, f"Student {user_id}: attempts per week")


def test_survival_page_shows_hazard_ratios_risk_and_kaplan_meier(
    page: Any, servers: dict[str, ApiServer], warehouse: dict[str, Any]
) -> None:
    open_page(page, servers["admins"], "survival", "survival.png")
    forest = chart(page, "Hazard ratios")
    assert sorted(forest.locator("g.interval").evaluate_all("gs => gs.map(g => g.dataset.term)")) == sorted(
        warehouse["terms"]
    )
    km = chart(page, "Kaplan-Meier")
    assert km.locator("polyline.series").count() == 3  # low / medium / high risk
    bars = chart(page, "Churn risk of the").locator("rect.bar")
    assert sum(int(float(bars.nth(i).get_attribute("data-value"))) for i in range(bars.count())) == warehouse["active"]


def test_cluster_page_shows_every_segment_and_its_members(
    page: Any, servers: dict[str, ApiServer], warehouse: dict[str, Any]
) -> None:
    open_page(page, servers["admins"], "cluster", "cluster.png")
    segments = warehouse["segments"]
    assert page.locator("#segments tbody tr").count() == len(segments)
    assert chart(page, "Segment profiles").locator("polyline.series").count() == len(segments)
    sizes = chart(page, "Segment sizes over runs")
    assert sizes.locator("polyline.series").count() >= len(segments)
    last_segment, last_size = segments[-1]
    open_page(page, servers["admins"], f"cluster?run_date={T}&segment={last_segment}")
    assert page.locator("#members a").count() == min(last_size, 200)


def test_scoreboard_page_charts_every_scored_metric(
    page: Any, servers: dict[str, ApiServer], warehouse: dict[str, Any]
) -> None:
    open_page(page, servers["admins"], "scoreboard", "scoreboard.png")
    assert page.locator("select[name=run_date]").input_value() == E.isoformat()
    titles = set(page.locator("svg.chart").evaluate_all("svgs => svgs.map(s => s.dataset.title)"))
    assert titles == warehouse["scored"]
    assert page.locator("#scores tbody tr").count() > 0


def test_student_search_and_empty_states(page: Any, servers: dict[str, ApiServer], warehouse: dict[str, Any]) -> None:
    known = warehouse["growth_student"]
    open_page(page, servers["admins"], "")
    page.fill("header input[name=user_id]", str(known))
    page.press("header input[name=user_id]", "Enter")
    page.wait_for_load_state()
    models = page.locator("#summary tbody tr td:first-child").all_inner_texts()
    assert {"growth", "prophet", "cluster"} <= set(models), models  # survival only if still active
    unknown = max(warehouse["student_ids"]) + 1
    empty_states = {
        f"growth?run_date={T - timedelta(days=1)}": f"No growth results for run date {T - timedelta(days=1)}",
        f"prophet?user_id={unknown}": f"Student {unknown} is not in the warehouse",
        f"student?user_id={unknown}": f"Student {unknown} is not in the warehouse",
        "survival?run_date=yesterday": "is not a date",
        f"scoreboard?run_date={T}": f"No evaluation results for run date {T}",
        f"cluster?run_date={T}&segment=99": "has no segment 99",
    }
    for path, message in empty_states.items():
        open_page(page, servers["admins"], path)
        assert message in page.locator("p.empty").first.inner_text(), path
    open_page(page, servers["admins"], f"prophet?user_id={unknown}", "empty-state.png")


def test_the_view_is_in_the_airflow_ui_navigation(page: Any, servers: dict[str, ApiServer]) -> None:
    """The nav entry opens the view inside the Airflow UI; the Assets page lists the tables."""
    page.goto(f"{servers['admins'].base_url}/plugin/learning-analytics")
    frame = page.frame_locator("iframe").first
    frame.locator("h1").wait_for()
    page.screenshot(path=str(SCREENSHOTS / "airflow-nav.png"))
    page.goto(f"{servers['admins'].base_url}/assets")
    page.get_by_text("analytics_db.public.weekly_kpi").first.wait_for()
    page.screenshot(path=str(SCREENSHOTS / "assets.png"))


def test_pages_require_the_ui_login(servers: dict[str, ApiServer], warehouse: dict[str, Any]) -> None:
    server = servers["login"]
    server.wait_until_healthy()
    url = f"{server.base_url}{PREFIX}/growth"
    api = requests.get(url, headers={"Accept": "application/json"}, timeout=30, allow_redirects=False)
    assert api.status_code == 401
    browser_like = requests.get(url, headers={"Accept": "text/html"}, timeout=30, allow_redirects=False)
    assert browser_like.status_code == 303 and "/auth/login" in browser_like.headers["location"]
    forged = requests.get(url, cookies={"_token": "not-a-jwt"}, timeout=30, allow_redirects=False)
    assert forged.status_code in (401, 403)
    token = requests.post(
        f"{server.base_url}/auth/token", json={"username": VIEWER, "password": VIEWER_PASSWORD}, timeout=30
    ).json()["access_token"]
    for path in ("", "growth", "prophet", "survival", "cluster", "scoreboard", "student?user_id=1"):
        response = requests.get(f"{server.base_url}{PREFIX}/{path}", cookies={"_token": token}, timeout=60)
        assert response.status_code == 200, path
