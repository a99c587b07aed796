"""What a client sees when vLLM fails, through the real gateway over HTTP (vLLM's network is a MockTransport).

Before a model has produced anything, a failure is a plain OpenAI error response with its status (and Retry-After);
after the stream has started, it is one ``data: {"error": …}`` event followed by ``data: [DONE]`` — never a stream
cut short. And a client that leaves makes the gateway close vLLM's response (which is what makes vLLM abort).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import httpx2
import pytest

from gateway.api.streaming import ChunkPump, Silence
from tests.conftest import GatewayFactory, LiveGateway
from tests.support.clips import make_clip
from tests.support.vllm_wire import (
    MODEL,
    STALL,
    Body,
    FakeVllm,
    Reply,
    error_reply,
    raising,
    sse,
    stream_reply,
    vllm_error,
)

QUESTION = "What moves in the video?\nA. nothing\nB. the bars"
ANSWER_TOKENS = ["<think>", "bars", "</think>", "<answer>", "B", "</answer>"]


def gateway(factory: GatewayFactory, *replies: Reply, **settings: Any) -> tuple[LiveGateway, FakeVllm]:
    vllm = FakeVllm(list(replies))
    return factory(vllm_url="http://127.0.0.1:9", vllm_transport=vllm.transport(), **settings), vllm


def events(response: httpx.Response) -> list[Any]:
    """The SSE data of a response, JSON-decoded ("[DONE]" kept as the string)."""
    found = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            found.append(data if data == "[DONE]" else json.loads(data))
    return found


def post(gw: LiveGateway, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=60)


def plain(stream: bool = True) -> dict[str, Any]:
    return {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": "hello"}]}


def about_video(stream: bool = True, iterations: int = 1) -> dict[str, Any]:
    clip = make_clip(2.0, "160x120", 10).read_bytes()
    url = "data:video/mp4;base64," + base64.b64encode(clip).decode()
    return {"model": MODEL, "stream": stream, "vchat": {"iterations": iterations},
            "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                      {"type": "text", "text": QUESTION}]}]}


def assert_error_event(found: list[Any], error_type: str, code: str) -> dict[str, Any]:
    """The stream ends with exactly one OpenAI error event and then [DONE]."""
    assert found[-1] == "[DONE]", found[-3:]
    error = found[-2]["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == (error_type, code), error
    assert sum(1 for event in found if isinstance(event, dict) and "error" in event) == 1
    return dict(error)


def wait_for(condition: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


# --- plain chat -----------------------------------------------------------------------------------------------------


def test_vllm_down_before_a_plain_stream_is_a_503_envelope(gateway_factory: GatewayFactory) -> None:
    gw, _ = gateway(gateway_factory, error_reply(503, "engine dead"))
    response = post(gw, plain())
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["type"] == "service_unavailable"


@pytest.mark.parametrize(("tail", "error_type", "code"), [
    ([sse(vllm_error(503, "engine died"))], "service_unavailable", "backend_unavailable"),
    ([httpx2.ReadError("[Errno 104] Connection reset by peer")], "service_unavailable", "backend_unavailable"),
    ([b"data: {not json\n\n"], "service_unavailable", "backend_unavailable"),
    ([sse(vllm_error(400, "bad image"))], "invalid_request_error", "rejected_by_model_server"),
])
def test_a_plain_stream_failing_midway_ends_with_an_error_event_and_done(
    gateway_factory: GatewayFactory, tail: list[Any], error_type: str, code: str
) -> None:
    gw, _ = gateway(gateway_factory, stream_reply(["Hel", "lo"], then=tail))
    response = post(gw, plain())
    assert response.status_code == 200
    found = events(response)
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in found[:-2] if e.get("choices")) == "Hello"
    assert all(e["model"] == MODEL for e in found[:-2])
    assert_error_event(found, error_type, code)


def test_a_plain_answer_non_streamed_fails_as_a_whole(gateway_factory: GatewayFactory) -> None:
    gw, _ = gateway(gateway_factory, raising(httpx2.ReadTimeout("timed out")))
    response = post(gw, plain(stream=False))
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"


def test_a_client_leaving_a_plain_stream_closes_vllms_response(gateway_factory: GatewayFactory) -> None:
    bodies: list[Body] = []
    gw, _ = gateway(gateway_factory, stream_reply(["Hel"], then=[STALL], bodies=bodies))
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=plain(), timeout=30) as response:
        for line in response.iter_lines():
            if "Hel" in line:
                break
    wait_for(lambda: bodies and bodies[0].closed.is_set(), "the gateway closed vLLM's stream")


# --- questions about a video ----------------------------------------------------------------------------------------


def test_vllm_refusing_round_one_non_streamed_is_a_plain_503(gateway_factory: GatewayFactory) -> None:
    gw, vllm = gateway(gateway_factory, error_reply(503, "engine dead"))
    response = post(gw, about_video(stream=False))
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "service_unavailable"
    assert response.headers["retry-after"] == "5"
    assert len(vllm.requests) == 1


def test_a_streamed_answer_says_it_started_before_vllm_refuses_round_one(gateway_factory: GatewayFactory) -> None:
    # The video was accepted and the question admitted, so the stream opened with a progress line at once; vLLM's
    # refusal then travels as an error event (the openai SDK raises it), never as an answer.
    gw, vllm = gateway(gateway_factory, error_reply(503, "engine dead"))
    response = post(gw, about_video())
    assert response.status_code == 200, response.text
    found = events(response)
    first = next(e for e in found if e != "[DONE]" and e.get("choices") and e["choices"][0]["delta"].get(
        "reasoning_content"))
    assert first["choices"][0]["delta"]["reasoning_content"].startswith("Watching the video (")
    assert_error_event(found, "service_unavailable", "backend_unavailable")
    assert not any(e != "[DONE]" and e.get("choices") and e["choices"][0]["delta"].get("content") for e in found)
    assert len(vllm.requests) == 1


def test_a_round_failing_after_its_first_tokens_ends_with_an_error_event(gateway_factory: GatewayFactory) -> None:
    reset = httpx2.RemoteProtocolError("peer closed connection without sending complete message body")
    gw, vllm = gateway(gateway_factory, stream_reply(["<think>", "the bars"], then=[reset]))
    response = post(gw, about_video(iterations=2))
    assert response.status_code == 200
    found = events(response)
    reasoning = "".join(e["choices"][0]["delta"].get("reasoning_content") or "" for e in found if e != "[DONE]"
                        and e.get("choices"))
    assert "the bars" in reasoning
    assert_error_event(found, "service_unavailable", "backend_unavailable")
    assert len(vllm.requests) == 1  # round 2 was never asked


def test_a_round_failing_midway_non_streamed_is_a_503(gateway_factory: GatewayFactory) -> None:
    gw, _ = gateway(gateway_factory, stream_reply(["<think>"], then=[sse(vllm_error(500, "engine died"))]))
    response = post(gw, about_video(stream=False))
    assert response.status_code == 503
    assert "engine died" in response.json()["error"]["message"]


@pytest.mark.timing
def test_a_silent_round_gets_keepalives_then_times_out_with_an_event(gateway_factory: GatewayFactory) -> None:
    gw, _ = gateway(gateway_factory, stream_reply(["<think>", "look"], then=[STALL]),
                    round_timeout_s=1.5, sse_keepalive_s=0.2)
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=about_video(), timeout=30) as response:
        lines = list(response.iter_lines())
    assert ": keep-alive" in lines
    found = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    error = assert_error_event([f if f == "[DONE]" else json.loads(f) for f in found], "service_unavailable",
                             "timeout")
    assert "Round 1 took longer than 1.5 s" in error["message"]


@pytest.mark.timing
def test_a_round_silent_from_the_start_times_out_as_a_504(gateway_factory: GatewayFactory) -> None:
    gw, _ = gateway(gateway_factory, stream_reply([], then=[STALL]), round_timeout_s=1.0)
    response = post(gw, about_video(stream=False))
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"


def test_a_whole_answer_streams_to_the_end(gateway_factory: GatewayFactory) -> None:
    gw, _ = gateway(gateway_factory, stream_reply(ANSWER_TOKENS))
    found = events(post(gw, about_video()))
    assert found[-1] == "[DONE]"
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in found[:-1] if e.get("choices"))
    assert content == "B"
    assert not any("error" in e for e in found[:-1])


# --- ChunkPump ------------------------------------------------------------------------------------------------------


async def test_the_pump_hands_over_chunks_errors_and_silence() -> None:
    release = asyncio.Event()

    async def chunks() -> AsyncGenerator[dict[str, Any], None]:
        yield {"n": 1}
        await release.wait()
        raise ValueError("broken")

    pump = ChunkPump(chunks())
    assert await pump.next() == {"n": 1}
    with pytest.raises(Silence):
        await pump.next(keepalive_s=0.05)
    release.set()
    with pytest.raises(ValueError, match="broken"):
        await pump.next()
    await pump.aclose()


async def test_closing_the_pump_runs_the_producers_cleanup() -> None:
    cleaned = asyncio.Event()

    async def chunks() -> AsyncGenerator[dict[str, Any], None]:
        try:
            yield {"n": 1}
            await asyncio.Event().wait()
            yield {"n": 2}
        finally:
            cleaned.set()

    pump = ChunkPump(chunks())
    assert await pump.next() == {"n": 1}
    await pump.aclose()
    assert cleaned.is_set()
