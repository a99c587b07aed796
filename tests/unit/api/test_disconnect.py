"""A client that leaves before its response starts ends its request where it waits — here on a model list vLLM is
slow to give, as under load — with a 499 at once, and nothing more starts for it: no video fetch, no vLLM call.

The gateway is real, over HTTP; vLLM's network is a MockTransport whose model list hangs until released (a real
vLLM cannot be made to stall its /v1/models on demand).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import GatewayFactory
from tests.support.origin import Origin
from tests.support.scrape import samples, wait_for
from tests.support.vllm_wire import MODEL, FakeVllm, stream_reply

ROUTE = "/v1/chat/completions"


class SlowModelList:
    """vLLM whose model list hangs until ``release`` is set; everything else as ``FakeVllm`` answers it."""

    def __init__(self) -> None:
        self.vllm = FakeVllm([stream_reply(["hi"])])
        self.asked = threading.Event()
        self.release = threading.Event()

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/v1/models":
            self.asked.set()
            await asyncio.to_thread(self.release.wait, 60)  # a busy vLLM (released from the test's thread)
        return self.vllm(request)


def send_and_leave(port: int, body: dict[str, Any], leave: threading.Event) -> None:
    """POST ``body``, then close the connection once ``leave`` is set, having read nothing."""
    payload = json.dumps(body).encode()
    head = (f"POST {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + payload)
        assert leave.wait(30)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "not-streamed"])
@pytest.mark.parametrize("video", [True, False], ids=["video", "plain"])
def test_a_client_gone_while_the_model_list_is_slow_starts_no_fetch_and_no_vllm_call(
        gateway_factory: GatewayFactory, origin: Origin, tmp_path: Path, stream: bool, video: bool) -> None:
    vllm = SlowModelList()
    gw = gateway_factory(vllm_url="http://127.0.0.1:9", vllm_transport=httpx2.MockTransport(vllm))
    url = origin.file("/v.mp4", b"never fetched")
    content: Any = [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "What moves?"}]
    body = {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": content if video else "hi"}]}
    try:
        send_and_leave(gw.port, body, vllm.asked)
        seconds = wait_for("the gateway to give up on the request", lambda: samples(f"{gw.url}/metrics").get(
            "vchat_http_requests_total{status=499}", 0) == 1, deadline_s=10)
    finally:
        vllm.release.set()
    assert seconds < 5
    assert origin.hits["/v.mp4"] == 0
    assert vllm.vllm.requests == []
