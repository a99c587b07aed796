"""Idle, trickling and kept-alive connections are closed on the settings' deadlines, while the gateway keeps
serving; real sockets against real uvicorn."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.conftest import GatewayFactory

SOCKETS = 200


def closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """Whether the server closed ``sock`` (EOF or reset) before ``deadline``."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            return False
        except OSError:
            return True
        if not data:
            return True
    return False


@pytest.mark.timing
def test_idle_and_trickling_connections_are_closed_and_serving_goes_on(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(http_header_timeout_s=1.0)
    idle = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(SOCKETS // 2)]
    slow = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(SOCKETS // 2)]
    try:
        for sock in slow:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        started = time.monotonic()
        # Serving goes on meanwhile.
        assert httpx.get(f"{gw.url}/health", timeout=5).status_code == 200
        for sock in slow[:10]:
            sock.sendall(b"X-Trickle: 1\r\n")  # a byte now and then does not buy more time
        deadline = started + 6
        still_open = [s for s in idle + slow if not closed_by_server(s, deadline)]
        assert still_open == [], f"{len(still_open)} of {SOCKETS} connections still open after 6 s"
        assert httpx.get(f"{gw.url}/health", timeout=5).status_code == 200
    finally:
        for sock in idle + slow:
            sock.close()


def test_a_request_sent_in_time_is_answered(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(http_header_timeout_s=2.0)
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        time.sleep(0.5)  # a slow but honest client: the rest of its headers comes well within the deadline
        sock.sendall(b"Host: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


@pytest.mark.timing
def test_an_idle_keep_alive_connection_is_closed(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(http_keepalive_s=1.0, http_header_timeout_s=30.0)
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert closed_by_server(sock, time.monotonic() + 4), "keep-alive connection left open"


def test_connections_beyond_the_limit_get_503(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(http_max_connections=5, http_header_timeout_s=30.0)
    held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(5)]
    try:
        deadline = time.monotonic() + 5
        status = 0
        while time.monotonic() < deadline and status != 503:  # until the server has accepted all five
            status = httpx.get(f"{gw.url}/health", timeout=5).status_code
        assert status == 503
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and httpx.get(f"{gw.url}/health", timeout=5).status_code != 200:
        time.sleep(0.05)
    assert httpx.get(f"{gw.url}/health", timeout=5).status_code == 200
