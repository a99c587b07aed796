"""VllmBackend against vLLM's failure shapes (httpx2.MockTransport): every one becomes one of the gateway's errors,
with the status, code and Retry-After a client acts on — never a raw httpx or SDK exception."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from typing import Any

import httpx2
import pytest

from gateway.backends import vllm as vllm_module
from gateway.backends.vllm import ChatCall, Generated, RoundCall, VllmBackend
from gateway.errors import (
    BackendTimeout,
    BackendUnavailable,
    ContextExceeded,
    EncoderCacheExceeded,
    InvalidRequest,
    VChatError,
)
from tests.support.vllm_wire import (
    MODEL,
    STALL,
    Body,
    FakeVllm,
    Reply,
    chunk,
    completion,
    error_reply,
    json_reply,
    raising,
    sse,
    stream_reply,
    usage_chunk,
    vllm_error,
)

BASE = "http://vllm.test:8000"
PARAMS = ChatCall(MODEL, [{"role": "user", "content": "hi"}], {"max_tokens": 16})


async def stream_text(backend: VllmBackend, call: ChatCall = PARAMS) -> str:
    text = ""
    async with aclosing(await backend.chat_stream(call)) as chunks:
        async for piece in chunks:
            for choice in piece.choices:
                text += choice.delta.content or ""
    return text


async def with_backend(replies: list[Reply], work: Any, **fake: Any) -> Any:
    vllm = FakeVllm(replies, **fake)
    async with httpx2.AsyncClient(transport=vllm.transport(), trust_env=False) as http:
        return await work(VllmBackend(http, BASE, "key", 0.5))


# --- health and the model list -------------------------------------------------------------------------------------


async def test_health_and_models_speak_vllms_format() -> None:
    async def work(backend: VllmBackend) -> None:
        await backend.health(1.0)
        assert await backend.model_ids() == [MODEL]
        assert await backend.max_model_len(MODEL) == 8192
        assert await backend.max_model_len("missing") is None

    await with_backend([], work)


async def test_an_unhealthy_engine_is_a_503_with_retry_after() -> None:
    with pytest.raises(BackendUnavailable, match=r"reports itself unhealthy \(HTTP 503\)") as caught:
        await with_backend([], lambda b: b.health(1.0), health=503)
    assert caught.value.status_code == 503 and caught.value.retry_after == 5


async def test_concurrent_callers_share_one_model_listing_and_one_leaving_does_not_cancel_it() -> None:
    asked = 0
    listing, release = asyncio.Event(), asyncio.Event()

    async def answer(request: httpx2.Request) -> httpx2.Response:
        nonlocal asked
        asked += 1
        listing.set()
        await release.wait()  # vLLM busy: the listing is in flight while the others ask
        card = {"id": MODEL, "object": "model", "created": 0, "owned_by": "vllm", "max_model_len": 8192}
        return httpx2.Response(200, json={"object": "list", "data": [card]})

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer), trust_env=False) as http:
        backend = VllmBackend(http, BASE, None, 5.0)
        callers = [asyncio.create_task(backend.model_ids()) for _ in range(20)]
        await listing.wait()
        callers[0].cancel()  # its client left
        release.set()
        assert await asyncio.gather(*callers[1:]) == [[MODEL]] * 19
        assert asked == 1
        assert await backend.model_ids() == [MODEL] and asked == 1  # the copy serves what follows
        assert await backend.model_ids(max_age_s=0) == [MODEL] and asked == 2  # a fresh one is asked for anew


async def test_a_copy_at_hand_routes_while_vllm_is_slow_to_list_and_a_fresh_one_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm_module, "BUSY_GRACE_S", 0.05)
    names = [MODEL]
    busy = asyncio.Event()
    busy.set()

    async def answer(request: httpx2.Request) -> httpx2.Response:
        await busy.wait()
        cards = [{"id": name, "object": "model", "created": 0, "owned_by": "vllm"} for name in names]
        return httpx2.Response(200, json={"object": "list", "data": cards})

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer), trust_env=False) as http:
        backend = VllmBackend(http, BASE, None, 5.0)
        assert await backend.model_ids() == [MODEL]
        busy.clear()  # vLLM's API server busy preparing frames
        names.append("adapter")
        assert await backend.model_ids(max_age_s=1e-9) == [MODEL]  # the copy, while the listing goes on
        fresh = asyncio.create_task(backend.model_ids(max_age_s=0))  # a name missing from the copy: wait
        await asyncio.sleep(0.1)
        assert not fresh.done()
        busy.set()
        assert await fresh == [MODEL, "adapter"]
        assert await backend.model_ids() == [MODEL, "adapter"]


@pytest.mark.parametrize(("failure", "error", "status"), [
    (httpx2.ConnectError("connection refused"), BackendUnavailable, 503),
    (httpx2.ReadTimeout("timed out"), BackendTimeout, 504),
])
async def test_an_unreachable_vllm_is_named_with_its_status(failure: Exception, error: type[VChatError],
                                                           status: int) -> None:
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(raising(failure)), trust_env=False) as http:
        with pytest.raises(error) as caught:
            await VllmBackend(http, BASE, None, 0.5).list_models()
    assert caught.value.status_code == status and BASE in caught.value.message


@pytest.mark.parametrize("body", [{"data": [{"object": "model"}]}, {"models": []}, "not json"])
async def test_a_model_list_that_is_not_vllms_is_a_503(body: object) -> None:
    async def answer(request: httpx2.Request) -> httpx2.Response:
        if isinstance(body, str):
            return httpx2.Response(200, content=body.encode())
        return httpx2.Response(200, json=body)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer), trust_env=False) as http:
        with pytest.raises(BackendUnavailable, match="something unexpected"):
            await VllmBackend(http, BASE, None, 0.5).list_models()


# --- refusals before a stream starts -------------------------------------------------------------------------------


async def test_a_context_refusal_is_the_clients_400_naming_the_field() -> None:
    message = ("This model's maximum context length is 8192 tokens. However, you requested 9000 tokens "
               "(1000 in the messages, 8000 in the completion). Please reduce max_tokens.")
    with pytest.raises(InvalidRequest) as caught:
        await with_backend([error_reply(400, message)], stream_text)
    error = caught.value
    assert (error.status_code, error.code, error.param) == (400, "context_length_exceeded", "max_tokens")
    assert isinstance(error, ContextExceeded) and error.limit == 8192
    assert error.message == f"vLLM refused the request: {message}"


async def test_vllms_own_param_wins_and_other_refusals_are_rejected_by_model_server() -> None:
    with pytest.raises(InvalidRequest) as caught:
        await with_backend([error_reply(400, "bad stop sequence", param="stop")], stream_text)
    assert (caught.value.param, caught.value.code) == ("stop", "rejected_by_model_server")


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_server_error_before_the_stream_is_a_503_with_retry_after(status: int) -> None:
    with pytest.raises(BackendUnavailable, match=rf"failed to complete the chat \(HTTP {status}\)") as caught:
        await with_backend([error_reply(status, "engine dead")], stream_text)
    assert (caught.value.status_code, caught.value.retry_after) == (503, 5)


async def test_a_4xx_the_gateway_caused_is_not_blamed_on_the_client() -> None:
    with pytest.raises(VChatError) as caught:
        await with_backend([error_reply(404, "The model `x` does not exist.")], stream_text)
    assert type(caught.value) is VChatError and caught.value.status_code == 500


async def test_an_error_body_that_is_not_json_still_names_the_status() -> None:
    def html(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(503, content=b"<html>Service Unavailable</html>")

    with pytest.raises(BackendUnavailable, match=r"HTTP 503"):
        await with_backend([html], stream_text)


@pytest.mark.parametrize(("failure", "error"), [
    (httpx2.ConnectError("[Errno 111] Connection refused"), BackendUnavailable),
    (httpx2.RemoteProtocolError("Server disconnected without sending a response."), BackendUnavailable),
    (httpx2.ReadTimeout("timed out"), BackendTimeout),
])
async def test_a_connection_failing_before_the_answer(failure: Exception, error: type[VChatError]) -> None:
    with pytest.raises(error) as caught:
        await with_backend([raising(failure)], stream_text)
    assert caught.value.retry_after == 5


async def test_a_non_streamed_chat_and_its_refusal() -> None:
    async def work(backend: VllmBackend) -> str | None:
        return (await backend.chat(PARAMS)).choices[0].message.content

    assert await with_backend([completion("hello")], work) == "hello"
    with pytest.raises(InvalidRequest, match="max_tokens"):
        await with_backend([error_reply(400, "max_tokens must be at least 1")], work)


# --- failures after the stream started ------------------------------------------------------------------------------


async def test_a_whole_stream_arrives_in_order() -> None:
    assert await with_backend([stream_reply(["<answer>", "B", "</answer>"])], stream_text) == "<answer>B</answer>"


async def test_an_error_event_for_the_clients_input_mid_stream_is_a_400() -> None:
    # vLLM validates multimodal input late: the refusal arrives as an SSE event after the 200.
    late = stream_reply(["<think>"], then=[sse(vllm_error(400, "video exceeds the pre-allocated encoder cache "
                                                              "size 8960"))])
    with pytest.raises(EncoderCacheExceeded, match="encoder cache size 8960") as caught:
        await with_backend([late], stream_text)
    assert (caught.value.status_code, caught.value.limit) == (400, 8960)


async def test_a_503_event_mid_stream_is_a_503() -> None:
    dead = stream_reply(["The", " bars"], then=[sse(vllm_error(503, "engine died"))])
    with pytest.raises(BackendUnavailable, match="engine died") as caught:
        await with_backend([dead], stream_text)
    assert caught.value.status_code == 503


@pytest.mark.parametrize(("failure", "error", "words"), [
    (httpx2.ReadError("[Errno 104] Connection reset by peer"), BackendUnavailable,
     r"^The local model server could not be reached: vLLM at \S+ \(VCHAT_VLLM_URL\) refused or dropped the "
     r"connection \(stream the chat\)\.$"),
    (httpx2.RemoteProtocolError("peer closed connection without sending complete message body"),
     BackendUnavailable, "local model server could not be reached"),
    (httpx2.ReadTimeout("timed out"), BackendTimeout, "in time"),
])
async def test_a_connection_breaking_mid_stream_is_one_of_ours(failure: Exception, error: type[VChatError],
                                                               words: str) -> None:
    bodies: list[Body] = []
    broken = stream_reply(["The", " bars"], then=[failure], bodies=bodies)
    with pytest.raises(error, match=words) as caught:
        await with_backend([broken], stream_text)
    assert caught.value.retry_after == 5
    assert bodies[0].closed.is_set()


@pytest.mark.parametrize("garbage", [b"data: {not json\n\n", b'data: {"choices": "nope"}\n\n'])
async def test_a_malformed_chunk_is_a_503_not_a_crash(garbage: bytes) -> None:
    broken = stream_reply(["The"], then=[garbage])
    with pytest.raises(BackendUnavailable, match="malformed answer"):
        await with_backend([broken], stream_text)


async def test_a_stream_cut_before_done_ends_without_error() -> None:
    # vLLM finished the reply but the body ended without [DONE]: the tokens that came are the answer.
    cut = stream_reply(["B"], done=False)
    assert await with_backend([cut], stream_text) == "B"


@pytest.mark.parametrize("kind", ["chat", "round"])
async def test_closing_a_stream_early_closes_vllms_response(kind: str) -> None:
    """A plain chat's stream (the SDK's chunks) and a perception round's (vLLM's JSON) alike: the client left, so
    vLLM must see its request closed (it aborts the generation)."""
    bodies: list[Body] = []
    stalled = stream_reply(["The"], then=[STALL], bodies=bodies)

    async def work(backend: VllmBackend) -> None:
        if kind == "chat":
            async with aclosing(await backend.chat_stream(PARAMS)) as chunks:
                async for piece in chunks:
                    if any(c.delta.content for c in piece.choices):
                        break
        else:
            async with aclosing(await backend.round_stream(ROUND)) as steps:
                async for step in steps:
                    if step.text:
                        break

    await with_backend([stalled], work)
    assert bodies[0].closed.is_set()


async def test_a_refusal_json_with_a_non_dict_error_keeps_vllms_message() -> None:
    odd = json_reply(400, {"object": "error", "message": "messages: field required", "type": "BadRequestError",
                           "code": 400})
    with pytest.raises(InvalidRequest, match="messages: field required") as caught:
        await with_backend([odd], stream_text)
    assert caught.value.param == "messages"


def test_chunk_helper_matches_the_sdk() -> None:
    from openai.types.chat import ChatCompletionChunk

    assert ChatCompletionChunk.model_validate(chunk({"content": "x"})).choices[0].delta.content == "x"


# --- perception rounds: vLLM's chunks read as JSON, not built into the SDK's models ---------------------------------

ROUND = RoundCall(MODEL, "data:video/jpeg;base64,AAAA,BBBB", "Question?", 2.0, 420, 224, 256,
                  {"temperature": 0, "seed": 1}, request_id="req-7-r1", video_id="vid", video_uuid="vchat-abc")


async def round_steps(backend: VllmBackend, call: RoundCall = ROUND) -> list[Generated]:
    async with aclosing(await backend.round_stream(call)) as steps:
        return [step async for step in steps]


async def test_a_round_streams_its_text_finish_and_usage_in_order() -> None:
    steps = await with_backend([stream_reply(["<answer>", "B", "</answer>"], finish="length")], round_steps)
    assert "".join(step.text for step in steps) == "<answer>B</answer>"
    assert [step.finish_reason for step in steps if step.finish_reason] == ["length"]
    assert [(s.prompt_tokens, s.completion_tokens) for s in steps if s.prompt_tokens is not None] == [(900, 3)]


async def test_a_round_sends_exactly_what_the_sdks_create_sends() -> None:
    """The same JSON body and headers as ``chat.completions.create(**params, stream=True)`` (the chat path)."""
    seen: list[httpx2.Request] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return stream_reply(["B"])(request)

    async def both(backend: VllmBackend) -> None:
        await round_steps(backend)
        async with aclosing(await backend._stream(ROUND.params())) as chunks:
            _ = [c async for c in chunks]

    await with_backend([record], both)
    raw, sdk = seen
    assert json.loads(raw.content) == json.loads(sdk.content)
    assert json.loads(raw.content)["media_io_kwargs"] == {"video": {"num_frames": -1, "fps": 2.0}}
    assert json.loads(raw.content)["stream"] is True
    assert raw.url == sdk.url
    for name in ("x-request-id", "x-vchat-video-id", "authorization", "content-type"):
        assert raw.headers.get(name) == sdk.headers.get(name), name
    assert raw.headers["x-request-id"] == "req-7-r1"


async def test_a_rounds_refusal_mid_stream_names_the_limit() -> None:
    late = stream_reply(["<think>"], then=[sse(vllm_error(400, "video exceeds the pre-allocated encoder cache "
                                                              "size 8960"))])
    with pytest.raises(EncoderCacheExceeded) as caught:
        await with_backend([late], round_steps)
    assert caught.value.limit == 8960
    with pytest.raises(ContextExceeded):
        await with_backend([error_reply(400, "This model's maximum context length is 8192 tokens")], round_steps)


@pytest.mark.parametrize("garbage", [b"data: {not json\n\n", b'data: {"choices": "nope"}\n\n', b"data: 5\n\n",
                                     b'data: {"choices": [{"delta": "x"}]}\n\n',
                                     b'data: {"choices": [{"delta": {"content": 5}}]}\n\n',
                                     b'data: {"choices": [], "usage": {"completion_tokens": 1}}\n\n'])
async def test_a_malformed_chunk_in_a_round_is_a_503_not_a_crash(garbage: bytes) -> None:
    with pytest.raises(BackendUnavailable, match="malformed answer"):
        await with_backend([stream_reply(["The"], then=[garbage])], round_steps)


async def test_a_round_with_null_usage_and_content_reads_as_vllm_means_it() -> None:
    quiet = stream_reply([], then=[sse({**chunk({"content": None}), "usage": None}, chunk({"content": "B"}, "stop"),
                                       usage_chunk(5, 1), "[DONE]")])
    steps = await with_backend([quiet], round_steps)
    assert "".join(step.text for step in steps) == "B"
    assert [s.prompt_tokens for s in steps if s.prompt_tokens is not None] == [5]

