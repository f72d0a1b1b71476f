"""Render time of every Learning analytics page on the data of the running stack.

Measures what a user waits for: HTTP GET of each page (server-side queries + HTML and
SVG rendering, through the Airflow API server and its auth middleware), several times
per page, after one warm-up request. Also reports the server's own render time (the
page footer). Run it against the demo data (scripts/demo.sh) with the UI up:

    source .local/stack.env
    AIRFLOW__CORE__LAZY_LOAD_PLUGINS=False airflow api-server --port "$LA_UI_PORT" &  # or scripts/ui.sh
    python bench/ui_pages.py --base-url "http://localhost:$LA_UI_PORT" --repeat 10 --output docs/bench-ui.md

The local stack lets every user in (SIMPLE_AUTH_MANAGER_ALL_ADMINS); against a server
with logins pass --token (a JWT from POST /auth/token).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import requests

PREFIX = "/learning-analytics"


def demo_size(uri: str) -> str:
    with psycopg.connect(uri) as conn:
        students, attempts = conn.execute(
            "SELECT (SELECT count(*) FROM students), (SELECT count(*) FROM attempt_log)"
        ).fetchone()  # noqa: E501
        anomalies = conn.execute("SELECT count(*) FROM prophet_anomalies").fetchone()[0]
        scores = conn.execute("SELECT count(*) FROM model_evaluation").fetchone()[0]
    return f"{students} students, {attempts:,} attempts, {anomalies} flagged weeks, {scores} scoreboard rows"


def pages(uri: str) -> list[str]:
    """Every page, each student page for a student with results (the heaviest case)."""
    with psycopg.connect(uri) as conn:
        growth = conn.execute("SELECT user_id FROM growth_brms_user ORDER BY p_goal LIMIT 1").fetchone()
        prophet = conn.execute("SELECT user_id FROM prophet_anomalies ORDER BY score DESC LIMIT 1").fetchone()
    return [
        "",
        "growth",
        f"growth?user_id={growth[0]}" if growth else "growth?user_id=1",
        "prophet",
        f"prophet?user_id={prophet[0]}" if prophet else "prophet?user_id=1",
        "survival",
        "cluster",
        "scoreboard",
        f"student?user_id={growth[0]}" if growth else "student?user_id=1",
        "growth?run_date=2001-01-01",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=f"http://localhost:{os.environ.get('LA_UI_PORT', '8080')}")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--token", help="JWT of a UI user (servers with logins)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    uri = os.environ["ANALYTICS_DB_URI"]
    session = requests.Session()
    if args.token:
        session.cookies.set("_token", args.token)
    rows = []
    for path in pages(uri):
        url = f"{args.base_url}{PREFIX}/{path}"
        session.get(url, timeout=60).raise_for_status()  # warm-up: imports, connection look-up
        wall, server = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            response = session.get(url, timeout=60)
            wall.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            match = re.search(r"rendered in (\d+) ms", response.text)
            server.append(float(match.group(1)) if match else float("nan"))
        rows.append(
            (path or "(index)", statistics.median(wall), max(wall), statistics.median(server), len(response.content))
        )
        name, median, slowest, on_server, _ = rows[-1]
        print(f"{name:40s} median {median:7.1f} ms  max {slowest:7.1f} ms  server {on_server:6.0f} ms")
    lines = [
        "# Learning analytics view: page render time",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on the demo data ({demo_size(uri)}),",
        f"{args.repeat} requests per page after one warm-up, through `airflow api-server` (1 worker) on",
        "the shared 2-core development machine (other jobs were running: treat as an upper bound).",
        "",
        "Command: `python bench/ui_pages.py --base-url http://localhost:$LA_UI_PORT "
        f"--repeat {args.repeat} --output docs/bench-ui.md`",
        "",
        "| page | median (ms) | max (ms) | server render, median (ms) | HTML size (kB) |",
        "|---|---:|---:|---:|---:|",
        *(f"| `{p}` | {m:.0f} | {x:.0f} | {s:.0f} | {b / 1024:.0f} |" for p, m, x, s, b in rows),
        "",
        f"Slowest median: {max(r[1] for r in rows):.0f} ms (target: under 1 s per page).",
        "",
    ]
    if args.output:
        args.output.write_text("\n".join(lines))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
