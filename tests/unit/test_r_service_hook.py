"""RServiceHook against a real HTTP server on loopback (no mocked requests)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from learning_analytics.r_service import RServiceHook, RServiceRequestError, RServiceUnavailableError

TOKEN = "test-token-not-secret"


class ScriptedService(BaseHTTPRequestHandler):
    """Answers each request with the next scripted (status, body); records requests."""

    script: list[tuple[int, dict]] = []
    seen: list[dict] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        type(self).seen.append(
            {"path": self.path, "method": self.command, "auth": self.headers.get("Authorization"), "body": body}
        )
        status, payload = type(self).script.pop(0) if type(self).script else (200, {"status": "ok"})
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[ScriptedService]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ScriptedService.script, ScriptedService.seen = [], []
    # A login on the connection must not turn into Basic auth.
    connection = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": server.server_port,
        "login": "ignored",
        "password": TOKEN,
    }
    monkeypatch.setenv("AIRFLOW_CONN_FAKE_R", json.dumps(connection))
    yield ScriptedService
    server.shutdown()


def make_hook(**kwargs: float) -> RServiceHook:
    return RServiceHook("fake_r", timeout_s=5, backoff_s=0.01, max_backoff_s=0.05, **kwargs)


def test_posts_json_with_bearer_token(service: type[ScriptedService]) -> None:
    service.script = [(200, {"model_id": "m-1", "k": 3})]
    answer = make_hook().call("cluster/fit", {"data": {"user_id": [1, 2]}, "seed": 1})
    assert answer == {"model_id": "m-1", "k": 3}
    request = service.seen[0]
    assert (request["method"], request["path"], request["auth"]) == ("POST", "/cluster/fit", f"Bearer {TOKEN}")
    assert json.loads(request["body"]) == {"data": {"user_id": [1, 2]}, "seed": 1}


def test_client_error_carries_the_service_message_and_is_not_retried(service: type[ScriptedService]) -> None:
    service.script = [(400, {"error": "data.accuracy: values must be within [0, 1] (row 3 is 1.4)"})]
    with pytest.raises(RServiceRequestError, match=r"answered 400: data.accuracy: values must be within") as caught:
        make_hook().call("growth/fit", {"data": {}})
    assert caught.value.status == 400
    assert len(service.seen) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_busy_or_broken_service_is_retried_with_backoff(service: type[ScriptedService], status: int) -> None:
    service.script = [(status, {"error": "busy"}), (status, {"error": "busy"}), (200, {"ok": True})]
    assert make_hook(max_attempts=3).call("prophet/fit", {}) == {"ok": True}
    assert len(service.seen) == 3


def test_gives_up_after_max_attempts(service: type[ScriptedService]) -> None:
    service.script = [(500, {"error": "internal error"})] * 3
    with pytest.raises(RServiceUnavailableError, match="answered 500: internal error"):
        make_hook(max_attempts=3).call("prophet/fit", {})
    assert len(service.seen) == 3


def test_unreachable_service_raises_connection_error_after_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_FAKE_R", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port, "password": TOKEN})
    )
    with pytest.raises(requests.ConnectionError):
        make_hook(max_attempts=2).call("growth/fit", {})


def test_health_is_a_get(service: type[ScriptedService]) -> None:
    service.script = [(200, {"status": "ok", "service": "fake"})]
    assert make_hook().test_connection() == (True, "fake is ok")
    assert service.seen[0]["method"] == "GET"
