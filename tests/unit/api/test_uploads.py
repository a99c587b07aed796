"""Uploads that end badly (a client leaving mid-body, an announced size over the cap) cost no more than they must and
are recorded for what they are (raw sockets: these are what an HTTP client library will not do on purpose)."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest

from tests.conftest import GatewayFactory, LiveGateway
from tests.support.media_api import media_entries

FILE_HEAD = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'


def start_upload(gw: LiveGateway, content_length: int, sent: bytes) -> socket.socket:
    """A connection that has sent the request head and the first ``sent`` bytes of the body, and stays open."""
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    head = (f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {content_length}\r\n"
            "Content-Type: multipart/form-data; boundary=XyZ\r\n\r\n").encode()
    sock.sendall(head + sent)
    return sock


def metrics_line(gw: LiveGateway, status: int, route: str = "/v1/files", within_s: float = 10) -> str | None:
    """The request counter's line for POST ``route`` with this status, once it appears (None if it does not)."""
    prefix = f'vchat_http_requests_total{{method="POST",route="{route}",status="{status}"}}'
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        found = [line for line in httpx.get(f"{gw.url}/metrics").text.splitlines() if line.startswith(prefix)]
        if found:
            return found[0]
        time.sleep(0.05)
    return None


def test_a_client_leaving_mid_upload_is_a_499_not_an_error(gateway_factory: GatewayFactory,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    gw = gateway_factory()
    sock = start_upload(gw, 10_000_000, FILE_HEAD + b"\0" * 200_000)
    deadline = time.monotonic() + 10
    while not any(path.name.startswith("upload-") for path in (gw.settings.media_dir / "tmp").rglob("*")):
        assert time.monotonic() < deadline, "the upload never reached the disk"
        time.sleep(0.02)
    sock.close()

    assert metrics_line(gw, 499) == (
        'vchat_http_requests_total{method="POST",route="/v1/files",status="499"} 1.0')
    assert metrics_line(gw, 500, within_s=0.2) is None
    server_side = [r for r in caplog.records if r.name.startswith("gateway")]
    assert not [r for r in server_side if r.levelno >= logging.WARNING], [r.getMessage() for r in server_side]
    gone = [r for r in server_side if r.getMessage().startswith("client disconnected")]
    assert [r.levelno for r in gone] == [logging.INFO]
    assert "during the upload" in gone[0].getMessage()
    deadline = time.monotonic() + 5
    while media_entries(gw.settings.media_dir)["tmp"]:
        assert time.monotonic() < deadline, media_entries(gw.settings.media_dir)
        time.sleep(0.02)


def test_a_client_leaving_mid_json_body_is_a_499_not_a_400(gateway_factory: GatewayFactory,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    gw = gateway_factory()
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                 b'Content-Type: application/json\r\n\r\n{"model": "videochat-r1.5", "messages": [')
    time.sleep(0.3)  # let the gateway start reading the body
    sock.close()

    assert metrics_line(gw, 499, route="/v1/chat/completions") is not None
    assert metrics_line(gw, 400, route="/v1/chat/completions", within_s=0.2) is None
    gone = [r for r in caplog.records if r.name.startswith("gateway") and "client disconnected" in r.getMessage()]
    assert [r.levelno for r in gone] == [logging.INFO]


def test_an_announced_length_over_the_cap_is_refused_before_reading(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(media_max_bytes=100_000)
    # 50 MB announced (under the request body limit), a few bytes sent: the answer must come without the rest.
    sock = start_upload(gw, 50_000_000, FILE_HEAD)
    with sock:
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)  # times out (10 s) if the gateway waits for the body
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), reply
    assert b'"code":"video_too_large"' in body and b"50000000 bytes" in body and b"100000 bytes" in body, body
    assert media_entries(gw.settings.media_dir)["tmp"] == []


def test_an_announced_length_within_the_allowance_is_read(gateway_factory: GatewayFactory) -> None:
    # The file itself may be as large as the cap: boundaries and headers come on top, and are not refused up front.
    gw = gateway_factory(media_max_bytes=100_000)
    body = FILE_HEAD + b"x" * 100_001 + b"\r\n--XyZ--\r\n"
    response = httpx.post(f"{gw.url}/v1/files", content=body,
                          headers={"content-type": "multipart/form-data; boundary=XyZ"}, timeout=30)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "video_too_large"
    assert error["message"] == "The upload is larger than the limit of 100000 bytes."


def test_form_values_are_quoted_short_and_escaped(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    purpose = "\x1b[2J" + "p" * 3000
    form = {"purpose": purpose}
    response = httpx.post(f"{gw.url}/v1/files", files={"file": ("a.mp4", b"not a video")}, data=form, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "message": f"Unknown purpose '\\x1b[2J{'p' * 55}'… (3004 characters).", "type": "invalid_request_error",
        "param": "purpose", "code": "invalid_value"}

    name = "n" * 100
    response = httpx.post(f"{gw.url}/v1/files", files={"file": ("a.mp4", b"x")}, data={name: "v" * 5000}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "message": f"The form field '{'n' * 62}'… (100 characters) is too long.", "type": "invalid_request_error",
        "param": f"'{'n' * 62}'… (100 characters)", "code": "invalid_upload"}
    assert media_entries(gw.settings.media_dir)["tmp"] == []
