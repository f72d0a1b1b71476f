"""The test helpers that keep the integration tests independent: database names and
servers on ports of their own (la_testing)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from la_testing import (
    MAX_DATABASE_NAME,
    PortServer,
    database_name,
    free_port,
    module_database_name,
    with_database,
)


def test_module_database_names_are_per_module_and_valid() -> None:
    assert module_database_name("analytics_test", "test_backfill") == "analytics_test__test_backfill"
    assert module_database_name("analytics_test", "test_a-b.c") == "analytics_test__test_a_b_c"
    long_a = module_database_name("analytics_test_worktree", "test_" + "x" * 60 + "_a")
    long_b = module_database_name("analytics_test_worktree", "test_" + "x" * 60 + "_b")
    assert len(long_a) == len(long_b) == MAX_DATABASE_NAME
    assert long_a != long_b


def test_with_database_keeps_credentials_host_and_options() -> None:
    uri = "postgresql://analytics:s3cret@127.0.0.1:54329/analytics_test?sslmode=disable"
    other = with_database(uri, "analytics_test__test_x")
    assert other == "postgresql://analytics:s3cret@127.0.0.1:54329/analytics_test__test_x?sslmode=disable"
    assert database_name(other) == "analytics_test__test_x"


@pytest.fixture
def taken_ports() -> Iterator[list[int]]:
    """Two ports another "process" (this one) listens on for the whole test."""
    sockets = [socket.socket() for _ in range(2)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        yield [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def http_server(log_path: Path, ports: list[int], attempts: int = 3) -> PortServer:
    """Python's http.server, whose first ports are ``ports`` and then free ones."""
    queue = list(ports)
    return PortServer(
        name="http.server",
        command=lambda port: [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        env=lambda port: {"PATH": "/usr/bin:/bin"},
        log_path=log_path,
        cwd=log_path.parent,
        attempts=attempts,
        ports=lambda: queue.pop(0) if queue else free_port(),
    )


def test_a_server_whose_port_was_taken_is_started_on_another(tmp_path: Path, taken_ports: list[int]) -> None:
    taken = taken_ports[0]
    server = http_server(tmp_path / "server.log", [taken]).start()
    try:
        port = server.wait_listening(timeout_s=60)
        assert port != taken and server.tried == [taken, port]
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        assert "address already in use" in (tmp_path / "server.log").read_text().lower()
    finally:
        server.stop()


def test_a_clear_failure_once_every_attempt_found_its_port_taken(tmp_path: Path, taken_ports: list[int]) -> None:
    server = http_server(tmp_path / "server.log", taken_ports, attempts=2).start()
    with pytest.raises(pytest.fail.Exception, match="every port tried was taken") as failure:
        server.wait_listening(timeout_s=60)
    assert str(taken_ports) in str(failure.value)


def test_a_server_that_exits_for_another_reason_is_not_started_again(tmp_path: Path) -> None:
    server = PortServer(
        name="crashing",
        command=lambda port: [sys.executable, "-c", "raise SystemExit(3)"],
        env=lambda port: {},
        log_path=tmp_path / "server.log",
    ).start()
    with pytest.raises(pytest.fail.Exception, match=r"exited \(3\)"):
        server.wait_listening(timeout_s=60)
    assert len(server.tried) == 1
