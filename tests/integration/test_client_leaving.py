"""A client that leaves closes the gateway's stream from vLLM at once — also when the gateway was blocked writing to
that client (its chunk queue full), the case that left vLLM generating for an abandoned request under load.

vLLM here is an httpx MockTransport whose chat stream never ends and records when the gateway closes it: a real
model cannot be made to produce tokens faster than the client reads them on demand. Everything else is real: the
gateway over HTTP, the video fetched, probed and sampled with ffmpeg. tests/integration/test_chat_video.py proves the
same against the real vLLM (its log must show the abort).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest

from tests.conftest import GatewayFactory
from tests.support.origin import Origin

MODEL = "videochat-r1.5"


class EndlessStream(httpx2.AsyncByteStream):
    """An SSE chat stream that sends tokens as fast as it is read, until the gateway closes it."""

    def __init__(self, closed: threading.Event) -> None:
        self.closed = closed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        def event(delta: dict[str, Any]) -> bytes:
            chunk = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            return f"data: {json.dumps(chunk)}\n\n".encode()

        try:
            yield event({"role": "assistant", "content": ""})
            yield event({"content": "<think>"})
            while True:
                yield event({"content": " the bars move and move" * 20})
                await asyncio.sleep(0)
        finally:
            self.closed.set()

    async def aclose(self) -> None:
        self.closed.set()


@dataclass
class EndlessVllm:
    closed: list[threading.Event] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/v1/models":
            card = {"id": MODEL, "object": "model", "created": 0, "owned_by": "vllm", "root": MODEL, "parent": None,
                    "max_model_len": 8192}
            return httpx2.Response(200, json={"object": "list", "data": [card]})
        if request.url.path != "/v1/chat/completions":
            return httpx2.Response(404)
        self.closed.append(threading.Event())
        return httpx2.Response(200, headers={"content-type": "text/event-stream"},
                               stream=EndlessStream(self.closed[-1]))


@pytest.mark.parametrize("stall_s", [0.0, 2.0], ids=["reading", "stalled"])
def test_a_client_that_leaves_closes_the_vllm_stream(gateway_factory: GatewayFactory, origin: Origin, clip: Path,
                                                     stall_s: float) -> None:
    vllm = EndlessVllm()
    gw = gateway_factory(vllm_url="http://127.0.0.1:9", vllm_transport=httpx2.MockTransport(vllm))
    url = origin.file("/c.mp4", clip.read_bytes())
    body = {"model": MODEL, "stream": True, "vchat": {"iterations": 3},
            "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                      {"type": "text", "text": "What moves?"}]}]}
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():  # past the gateway's own progress line, into vLLM's tokens
            if "the bars" in line:
                break
        # Stop reading, connection open: the socket buffers fill and the gateway blocks writing to us.
        time.sleep(stall_s)
    assert len(vllm.closed) == 1
    assert vllm.closed[0].wait(10), "the gateway kept reading vLLM's stream for a client that left"
    time.sleep(0.5)
    assert len(vllm.closed) == 1, "a later round was started for a client that left"
