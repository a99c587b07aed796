"""Exact replies through the real gateway and the real openai SDK, streamed and not.

A real model cannot be made to send "reasoning</think><answer>B</answer>" or a blank line on demand, so here vLLM's
network is an httpx MockTransport that answers as vLLM does (its ``/v1/models`` card with ``max_model_len``, its
SSE chat stream, token by token). Everything else is real: the video is fetched, probed and sampled with ffmpeg,
the rounds are planned and the answer built by the gateway served over HTTP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai

from tests.conftest import GatewayFactory, LiveGateway
from tests.support.clips import make_clip
from tests.support.origin import Origin

MODEL = "videochat-r1.5"
ADAPTER = "adapter-a"
QUESTION = "What moves in the video?\nA. nothing\nB. the bars"


@dataclass
class ScriptedVllm:
    """vLLM's wire format for scripted replies (round i gets ``tokens``, or ``later[i - 1]`` when given); keeps the
    chat requests the gateway sent."""

    tokens: list[str]
    later: list[list[str]] = field(default_factory=list)
    finish: str = "stop"
    max_model_len: int = 8192
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/v1/models":
            card = {"id": MODEL, "object": "model", "created": 0, "owned_by": "vllm", "root": MODEL, "parent": None,
                    "max_model_len": self.max_model_len}
            # vLLM's adapter cards carry no max_model_len: the engine's context is the base model's.
            lora = {"id": ADAPTER, "object": "model", "created": 0, "owned_by": "vllm", "root": "/a", "parent": MODEL}
            return httpx2.Response(200, json={"object": "list", "data": [card, lora]})
        if request.url.path != "/v1/chat/completions":
            return httpx2.Response(404, json={"error": {"message": "not found"}})
        self.requests.append(json.loads(request.content))
        tokens = self.later[len(self.requests) - 2] if len(self.requests) > 1 and self.later else self.tokens

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": token}) for token in tokens]
        events += [chunk({}, self.finish), {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0,
                                            "model": MODEL, "choices": [],
                                            "usage": {"prompt_tokens": 900, "completion_tokens": len(tokens),
                                                      "total_tokens": 900 + len(tokens)}}]
        body = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())


def gateway(factory: GatewayFactory, vllm: ScriptedVllm) -> LiveGateway:
    return factory(vllm_url="http://127.0.0.1:9", vllm_transport=httpx2.MockTransport(vllm))


def ask_both(gw: LiveGateway, url: str, model: str = MODEL, **fields: Any) -> tuple[Any, tuple[str, str, Any]]:
    """The same question non-streamed and streamed: (the completion, (content, reasoning, final chunk))."""
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=120)
    messages: Any = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                  {"type": "text", "text": QUESTION}]}]
    params: dict[str, Any] = {"model": model, "messages": messages, "extra_body": {"vchat": {"iterations": 1}},
                              **fields}
    plain = client.chat.completions.create(**params)
    chunks = list(client.chat.completions.create(stream=True, **params))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in chunks if c.choices)
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    return plain, (content, reasoning, final)


def test_reasoning_before_a_bare_close_tag_stays_out_of_the_answer(gateway_factory: GatewayFactory,
                                                                    origin: Origin, clip: Path) -> None:
    vllm = ScriptedVllm(["The", " bars", " move", ".", "</", "think", ">", "\n", "<answer>", "B", "</answer>"])
    plain, (content, reasoning, _) = ask_both(gateway(gateway_factory, vllm), origin.file("/c.mp4", clip.read_bytes()))
    assert content == plain.choices[0].message.content == "B"
    assert "The bars move." in reasoning and "The bars move." in plain.choices[0].message.model_extra[
        "reasoning_content"]
    assert plain.model_extra["perception"]["rounds"][0]["answer"] == "B"


def test_blank_lines_between_paragraphs_reach_the_client(gateway_factory: GatewayFactory, origin: Origin,
                                                         clip: Path) -> None:
    vllm = ScriptedVllm(["First", " paragraph", ".", "\n\n", "Second", " one", ".", "\n"])
    plain, (content, _, _) = ask_both(gateway(gateway_factory, vllm), origin.file("/c.mp4", clip.read_bytes()))
    assert content == plain.choices[0].message.content == "First paragraph.\n\nSecond one."


def test_a_reply_cut_off_inside_think_answers_with_its_text(gateway_factory: GatewayFactory, origin: Origin,
                                                            clip: Path) -> None:
    vllm = ScriptedVllm(["<think>", "The", " bars", " mo"], finish="length")
    plain, (content, reasoning, final) = ask_both(gateway(gateway_factory, vllm),
                                                  origin.file("/c.mp4", clip.read_bytes()), max_tokens=4)
    assert content == plain.choices[0].message.content == "The bars mo"  # upstream: answer = ans
    assert "The bars mo" in reasoning
    assert plain.choices[0].finish_reason == final.choices[0].finish_reason == "length"


def test_an_adapters_frames_are_cut_to_the_context_vllm_lists_and_the_client_is_told(gateway_factory: GatewayFactory,
                                                                        origin: Origin) -> None:
    # 60 s at 2 fps is 120 frames, about 7,200 visual tokens: with 2,048 reply tokens that overflows 8,192.
    vllm = ScriptedVllm(["<answer>", "B", "</answer>"], max_model_len=8192)
    gw = gateway(gateway_factory, vllm)
    url = origin.file("/long.mp4", make_clip(seconds=60, size="640x360", fps=10).read_bytes())
    plain, _ = ask_both(gw, url, model=ADAPTER)
    rounds = plain.model_extra["perception"]["rounds"]
    sent = vllm.requests[0]
    frames = sent["messages"][0]["content"][0]["video_url"]["url"].count(",")  # data:video/jpeg;base64,f1,f2,…
    text = sent["messages"][0]["content"][1]["text"]
    assert sent["max_tokens"] == 2048 and frames == rounds[0]["frames"] < 120
    assert rounds[0]["visual_tokens"] + len(text.encode()) + sent["max_tokens"] <= 8192
    (warning,) = plain.model_extra["perception"]["warnings"]
    assert f"Sent {frames} frames" in warning and "instead of 120" in warning and "context of 8192" in warning


def test_a_reply_budget_too_large_for_the_context_is_a_clear_400(gateway_factory: GatewayFactory, origin: Origin,
                                                                 clip: Path) -> None:
    vllm = ScriptedVllm(["<answer>", "B", "</answer>"], max_model_len=8192)
    gw = gateway(gateway_factory, vllm)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=120)
    content: Any = [{"type": "video_url", "video_url": {"url": origin.file("/c.mp4", clip.read_bytes())}},
                    {"type": "text", "text": QUESTION}]
    try:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=8000)
    except openai.BadRequestError as exc:
        assert exc.code == "context_length_exceeded" and exc.param == "max_tokens"
        assert "context of 8192 tokens" in exc.message and "at most" in exc.message
    else:
        raise AssertionError("a reply budget larger than the context was accepted")
    assert vllm.requests == []  # refused before anything reached vLLM


def test_a_round_without_glue_keeps_the_segments_it_was_given(gateway_factory: GatewayFactory, origin: Origin,
                                                             clip: Path) -> None:
    # eval_videomme.py: pred_glue changes only when a reply has a <glue> match, so round 3 still zooms into 1.0-2.5.
    glued = ["<think>", "bars", "</think>", "<answer>", "B", "</answer>", "<glue>", "[(1.0, 2.5)]", "</glue>"]
    vllm = ScriptedVllm(glued, later=[["<answer>", "B", "</answer>"], ["<answer>", "B", "</answer>"]])
    gw = gateway(gateway_factory, vllm)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=120)
    content: Any = [{"type": "video_url", "video_url": {"url": origin.file("/c.mp4", clip.read_bytes())}},
                    {"type": "text", "text": QUESTION}]
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}],
                                            extra_body={"vchat": {"iterations": 3}})
    rounds = answer.model_extra["perception"]["rounds"]
    assert [r["dense_segments"] for r in rounds] == [[], [[1.0, 2.5]], [[1.0, 2.5]]]
    assert answer.model_extra["perception"]["warnings"] == []
