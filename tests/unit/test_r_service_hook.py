"""RServiceHook against a real HTTP server on loopback (no mocked requests)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from airflow.sdk.exceptions import AirflowFailException

from learning_analytics.r_service import RServiceHook, RServiceRequestError, RServiceUnavailableError, idempotency_key

TOKEN = "test-token-not-secret"


class ScriptedService(BaseHTTPRequestHandler):
    """Answers each request with the next scripted (status, body); records requests."""

    script: list[tuple[int, dict]] = []
    seen: list[dict] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        type(self).seen.append(
            {
                "path": self.path,
                "method": self.command,
                "auth": self.headers.get("Authorization"),
                "key": self.headers.get("Idempotency-Key"),
                "body": body,
            }
        )
        status, payload = type(self).script.pop(0) if type(self).script else (200, {"status": "ok"})
        data = json.dumps(payload).encode()
        self.send_response(status)
        if status in (429, 503):
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _answer

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


@pytest.mark.parametrize("status", [400, 404, 422, 500])
def test_request_errors_and_service_bugs_fail_at_once_with_the_message(
    service: type[ScriptedService], status: int
) -> None:
    """A 4xx or an application 500 cannot succeed on retry: one request, and an
    AirflowFailException so that Airflow does not retry the task either."""
    service.script = [(status, {"error": "data.accuracy: values must be within [0, 1] (row 3 is 1.4)"})]
    with pytest.raises(
        RServiceRequestError, match=rf"answered {status}: data.accuracy: values must be within"
    ) as caught:
        make_hook().call("growth/fit", {"data": {}})
    assert isinstance(caught.value, AirflowFailException)
    assert caught.value.status == status
    assert len(service.seen) == 1


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_busy_or_unavailable_service_is_retried_with_backoff(service: type[ScriptedService], status: int) -> None:
    service.script = [(status, {"error": "busy"}), (status, {"error": "busy"}), (200, {"ok": True})]
    assert make_hook(max_attempts=3).call("prophet/predict", {}) == {"ok": True}
    assert len(service.seen) == 3


def test_gives_up_after_max_attempts(service: type[ScriptedService]) -> None:
    service.script = [(503, {"error": "restarting"})] * 3
    with pytest.raises(RServiceUnavailableError, match="answered 503: restarting") as caught:
        make_hook(max_attempts=3).call("prophet/predict", {})
    assert not isinstance(caught.value, AirflowFailException)
    assert len(service.seen) == 3


JOB = "job-20261127T000000-0123456789abcdef"


def test_fit_submits_with_the_key_and_polls_the_job(service: type[ScriptedService]) -> None:
    service.script = [
        (202, {"job_id": JOB, "status": "queued"}),
        (200, {"job_id": JOB, "status": "running"}),
        (200, {"job_id": JOB, "status": "succeeded", "result": {"model_id": "m-1"}}),
    ]
    assert make_hook().fit("cluster/fit", {"seed": 1}, idempotency_key="dag/run/fit/0/abc", poll_s=0.01) == {
        "model_id": "m-1"
    }
    assert [(r["method"], r["path"]) for r in service.seen] == [
        ("POST", "/cluster/fit"),
        ("GET", f"/jobs/{JOB}"),
        ("GET", f"/jobs/{JOB}"),
    ]
    assert service.seen[0]["key"] == "dag/run/fit/0/abc"


def test_a_job_that_lost_its_worker_is_submitted_again_under_the_same_key(service: type[ScriptedService]) -> None:
    lost = {"error": "job: lost its worker", "status": 503}
    service.script = [
        (202, {"job_id": JOB, "status": "queued"}),
        (200, {"job_id": JOB, "status": "failed", "error": lost}),
        (202, {"job_id": "job-2", "status": "queued"}),
        (200, {"job_id": "job-2", "status": "succeeded", "result": {"ok": True}}),
    ]
    assert make_hook().fit("growth/fit", {}, idempotency_key="k", poll_s=0.01) == {"ok": True}
    assert [r["key"] for r in service.seen if r["method"] == "POST"] == ["k", "k"]


def test_a_job_that_failed_on_its_input_fails_at_once(service: type[ScriptedService]) -> None:
    service.script = [
        (202, {"job_id": JOB, "status": "queued"}),
        (200, {"job_id": JOB, "status": "failed", "error": {"error": "data: too little data", "status": 400}}),
    ]
    with pytest.raises(RServiceRequestError, match="400: data: too little data"):
        make_hook().fit("growth/fit", {}, idempotency_key="k", poll_s=0.01)
    assert len(service.seen) == 2


def test_cancel_is_a_delete(service: type[ScriptedService]) -> None:
    service.script = [(200, {"job_id": JOB, "status": "cancelled"})]
    assert make_hook().cancel(JOB)["status"] == "cancelled"
    assert (service.seen[0]["method"], service.seen[0]["path"]) == ("DELETE", f"/jobs/{JOB}")


def test_idempotency_key_names_the_task_and_changes_with_the_body() -> None:
    key = idempotency_key("fit_bayesian_growth", "manual__2026", "fit", 3, {"a": 1})
    assert key.startswith("fit_bayesian_growth/manual__2026/fit/3/")
    assert key == idempotency_key("fit_bayesian_growth", "manual__2026", "fit", 3, {"a": 1})
    assert key != idempotency_key("fit_bayesian_growth", "manual__2026", "fit", 3, {"a": 2})


def test_unreachable_service_raises_connection_error_after_retries(
    monkeypatch: pytest.MonkeyPatch, refused_port: int
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_FAKE_R",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": refused_port, "password": TOKEN}),
    )
    with pytest.raises(requests.ConnectionError):
        make_hook(max_attempts=2).call("growth/fit", {})


def test_health_is_a_get(service: type[ScriptedService]) -> None:
    service.script = [(200, {"status": "ok", "service": "fake"})]
    assert make_hook().test_connection() == (True, "fake is ok")
    assert service.seen[0]["method"] == "GET"
