"""Failure alerts end to end: a real failing ``airflow dags test`` run sends an e-mail to
a local SMTP server and a JSON alert to a local HTTP receiver, both started here.

The run is ``build_weekly_kpi`` with its warehouse connection pointing at a closed port
(``extract``-style failure that needs no data and no R service), no retries. The
negative control is the same failing run without the alert settings: nothing arrives,
so what arrives in the first run is due to the settings and not to something else.
"""

from __future__ import annotations

import errno
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from la_testing import TEST_LOGICAL_DATE, DagRunResult, free_port

DAG_ID = "build_weekly_kpi"
FAILING_TASK = "build_kpi"
UI_BASE_URL = "http://airflow.example.test:8080"
PORT_ATTEMPTS = 3


@dataclass
class Inbox:
    """Messages the local SMTP server received."""

    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        message = message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    # aiosmtpd's Controller probes the port it is given, so it cannot take port 0 itself:
    # a free port, and another one if a process took it before the server bound it.
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        try:
            controller.start()
            break
        except OSError as error:
            if error.errno != errno.EADDRINUSE or attempt == PORT_ATTEMPTS - 1:
                raise
    try:
        yield port, inbox
    finally:
        controller.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "body": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


def failing_run_env(warehouse_port: int) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_ANALYTICS_DB": f"postgresql://analytics:x@127.0.0.1:{warehouse_port}/analytics",
        "LA_TASK_RETRIES": "0",
        "AIRFLOW__API__BASE_URL": UI_BASE_URL,
        "LA_ALERT_EMAIL_TO": "",
        "LA_ALERT_WEBHOOK_CONN_ID": "",
    }


def test_a_failed_task_alerts_by_email_and_webhook_with_dag_run_task_error_and_log_link(
    run_dag: Callable[..., DagRunResult],
    smtp_server: tuple[int, Inbox],
    webhook_receiver: tuple[int, list[dict[str, Any]]],
    refused_port: int,
) -> None:
    smtp_port, inbox = smtp_server
    webhook_port, received = webhook_receiver
    closed_port = refused_port
    env = {
        **failing_run_env(closed_port),
        "LA_ALERT_EMAIL_TO": "oncall@example.test, data@example.test",
        "LA_ALERT_EMAIL_FROM": "airflow@example.test",
        "LA_ALERT_SMTP_CONN_ID": "smtp_alerts",
        "AIRFLOW_CONN_SMTP_ALERTS": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_port,
                "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0, "timeout": 10},
            }
        ),
        "LA_ALERT_WEBHOOK_CONN_ID": "alert_webhook",
        "LA_ALERT_WEBHOOK_ENDPOINT": "hooks/airflow",
        "AIRFLOW_CONN_ALERT_WEBHOOK": json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": webhook_port, "schema": "http"}
        ),
    }
    result = run_dag(DAG_ID, env=env, timeout_s=1200)
    assert not result.succeeded, "the run must fail: its warehouse is unreachable"

    (alert,) = [item["body"] for item in received]
    assert [item["path"] for item in received] == ["/hooks/airflow"]
    assert (alert["event"], alert["dag_id"], alert["task_id"], alert["map_index"]) == (
        "task_failed",
        DAG_ID,
        FAILING_TASK,
        -1,
    )
    assert alert["run_id"] and alert["logical_date"].startswith(TEST_LOGICAL_DATE.isoformat())
    assert "OperationalError" in alert["error"] and str(closed_port) in alert["error"]
    assert alert["log_url"].startswith(f"{UI_BASE_URL}/dags/{DAG_ID}/runs/")
    assert alert["log_url"].split("?")[0].endswith(f"/tasks/{FAILING_TASK}")

    (mail,) = inbox.messages
    assert mail["X-Envelope-To"] == "oncall@example.test, data@example.test"
    assert mail["From"] == "airflow@example.test"
    assert DAG_ID in mail["Subject"] and FAILING_TASK in mail["Subject"] and alert["run_id"] in mail["Subject"]
    body = next(part for part in mail.walk() if part.get_content_type() == "text/html").get_payload(decode=True)
    text = body.decode()
    assert alert["run_id"] in text and "OperationalError" in text
    assert f"href='{alert['log_url']}'" in text.replace("&amp;", "&")


def test_without_alert_settings_a_failure_sends_nothing(
    run_dag: Callable[..., DagRunResult],
    smtp_server: tuple[int, Inbox],
    webhook_receiver: tuple[int, list[dict[str, Any]]],
    refused_port: int,
) -> None:
    """Negative control: same failing run, same listeners, alerts not configured."""
    _, inbox = smtp_server
    _, received = webhook_receiver
    result = run_dag(DAG_ID, env=failing_run_env(refused_port), timeout_s=1200)
    assert not result.succeeded
    assert inbox.messages == [] and received == []
