"""The Learning analytics FastAPI app, mounted by the Airflow API server (plugin).

Airflow does not protect plugin endpoints: every route here depends on
``requires_access_view(AccessView.WEBSITE)``, the check the Airflow UI itself passes,
which reads the caller's JWT (the UI's ``_token`` cookie or a Bearer header) through
the configured auth manager. Without a valid token a browser is redirected to the
auth manager's login page (and comes back afterwards); other clients get 401/403.
With ``SIMPLE_AUTH_MANAGER_ALL_ADMINS=True`` the simple auth manager's middleware
authenticates every request, as it does for the rest of the UI.
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import requires_access_view
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from learning_analytics.ui import pages
from learning_analytics.ui.data import Reader

#: Where the API server mounts the app (also the nav entry's link).
URL_PREFIX = "/learning-analytics"
TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


@cache
def _css() -> Markup:
    return Markup((TEMPLATES / "style.css").read_text(encoding="utf-8"))


def render(page: pages.Page, request: Request, started: float) -> HTMLResponse:
    content = Markup("").join(page.sections)
    html = (
        _environment()
        .get_template("page.html")
        .render(
            **page.__dict__,
            content=content,
            css=_css(),
            nav=pages.NAV,
            base=base_path(request),
            render_ms=(time.perf_counter() - started) * 1000,
        )
    )
    return HTMLResponse(html)


def base_path(request: Request) -> str:
    """The app's own URL prefix as the browser sees it (behind the API server's mount)."""
    return request.scope.get("root_path", "").rstrip("/")


def create_app() -> FastAPI:
    app = FastAPI(
        title="Learning analytics",
        description="Read-only results of the learning-analytics models (warehouse connection analytics_db).",
        dependencies=[Depends(requires_access_view(AccessView.WEBSITE))],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(StarletteHTTPException)
    async def login_required(request: Request, exc: StarletteHTTPException) -> Response:
        wants_html = "text/html" in request.headers.get("accept", "")
        if exc.status_code in (401, 403) and wants_html and request.method == "GET":
            from airflow.api_fastapi.app import get_auth_manager

            login = get_auth_manager().get_url_login(next_url=str(request.url))
            return RedirectResponse(login, status_code=303)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        started = time.perf_counter()
        return render(pages.index_page(Reader(), base_path(request)), request, started)

    @app.get("/student", response_class=HTMLResponse)
    def student(request: Request, user_id: str | None = None) -> HTMLResponse:
        started = time.perf_counter()
        return render(pages.student_page(Reader(), base_path(request), user_id), request, started)

    @app.get("/{page}", response_class=HTMLResponse)
    def model_page(
        request: Request,
        page: str,
        run_date: str | None = None,
        user_id: str | None = None,
        segment: str | None = None,
    ) -> HTMLResponse:
        started = time.perf_counter()
        renderer = pages.PAGE_RENDERERS.get(page)
        if renderer is None:
            raise HTTPException(status_code=404, detail=f"no page {page!r}")
        base = base_path(request)
        if page in ("growth", "prophet"):
            result = renderer(Reader(), base, run_date, user_id)
        elif page == "cluster":
            result = renderer(Reader(), base, run_date, segment)
        else:
            result = renderer(Reader(), base, run_date)
        return render(result, request, started)

    return app
