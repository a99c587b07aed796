"""vLLM's OpenAI wire format for ``httpx2.MockTransport``, for the failure shapes a real vLLM cannot be made to
produce on demand: a 503 before or in the middle of a stream, a reset connection, a malformed chunk, a stall.

``FakeVllm`` answers ``/health`` and ``/v1/models`` as vLLM does and each chat call with the next scripted reply
(the last one repeats); it keeps the chat bodies the gateway sent. Replies are built by ``stream_reply``,
``error_reply`` and ``json_reply``; a streamed body is a list of parts where bytes are sent, an exception is
raised at that point (as httpx2 raises it from a broken connection) and ``STALL`` waits until cancelled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2

MODEL = "videochat-r1.5"
STALL = b"<stall>"  # a body part: the server goes silent, the connection stays open

Reply = Callable[[httpx2.Request], httpx2.Response]


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as vLLM streams it."""
    return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": MODEL, "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


def sse(*events: dict[str, Any] | str) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


def vllm_error(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """vLLM's error object (``ErrorResponse``): its numeric ``code`` is the HTTP status."""
    kind = "BadRequestError" if status < 500 else "InternalServerError"
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


class Body(httpx2.AsyncByteStream):
    """A streamed response body sent part by part (see the module docstring)."""

    def __init__(self, parts: Sequence[bytes | BaseException]) -> None:
        self.parts = parts
        self.closed = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            if isinstance(part, BaseException):
                raise part
            if part == STALL:
                await asyncio.Event().wait()
            yield part

    async def aclose(self) -> None:
        self.closed.set()


def stream_reply(tokens: Sequence[str], *, finish: str | None = "stop",
                 then: Sequence[bytes | BaseException] | None = None, done: bool = True,
                 bodies: list[Body] | None = None) -> Reply:
    """A 200 SSE chat stream: the role chunk, one chunk per token, then ``then`` (default: the finish chunk, a
    usage chunk and ``[DONE]``); ``bodies`` collects each body sent, to see that it was closed."""

    def reply(_: httpx2.Request) -> httpx2.Response:
        parts: list[bytes | BaseException] = [sse(chunk({"role": "assistant", "content": ""}))]
        parts += [sse(chunk({"content": token})) for token in tokens]
        if then is None:
            parts += [sse(chunk({}, finish), usage_chunk(900, len(tokens)))]
            parts += [sse("[DONE]")] if done else []
        else:
            parts += list(then)
        body = Body(parts)
        if bodies is not None:
            bodies.append(body)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=body)

    return reply


def error_reply(status: int, message: str, param: str | None = None) -> Reply:
    """vLLM refusing a chat call before streaming anything."""
    return json_reply(status, vllm_error(status, message, param))


def json_reply(status: int, body: object) -> Reply:
    return lambda _: httpx2.Response(status, json=body)


def raising(exc: BaseException) -> Reply:
    """The connection fails before any answer (refused, reset, timed out)."""

    def reply(_: httpx2.Request) -> httpx2.Response:
        raise exc

    return reply


def completion(text: str) -> Reply:
    """A non-streamed ``chat.completion``."""
    body = {"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}
    return json_reply(200, body)


@dataclass
class FakeVllm:
    """vLLM's network as the gateway sees it: health, the model list, and scripted chat replies."""

    replies: list[Reply]
    max_model_len: int = 8192
    health: int = 200
    metrics: str = ""  # vLLM's /metrics text (Prometheus)
    metrics_asked: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/health":
            return httpx2.Response(self.health)
        if request.url.path == "/v1/models":
            card = {"id": MODEL, "object": "model", "created": 0, "owned_by": "vllm", "root": MODEL, "parent": None,
                    "max_model_len": self.max_model_len}
            return httpx2.Response(200, json={"object": "list", "data": [card]})
        if request.url.path == "/metrics":
            self.metrics_asked += 1
            return httpx2.Response(200, text=self.metrics)
        if request.url.path != "/v1/chat/completions":
            return httpx2.Response(404, json=vllm_error(404, "not found"))
        self.requests.append(json.loads(request.content))
        return self.replies[min(len(self.requests), len(self.replies)) - 1](request)

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self)
