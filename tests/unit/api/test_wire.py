"""The one wire format: chunks and the completion folded from them."""

from __future__ import annotations

import json

from gateway.api.wire import Chunk, Completion, Delta, Envelope, RoundRecord, TokenCount, Usage


def test_a_chunk_leaves_unset_fields_off_but_always_says_its_finish_reason() -> None:
    envelope = Envelope("m")
    wire = json.loads(envelope.content("hi").model_dump_json())
    assert wire == {"id": envelope.id, "object": "chat.completion.chunk", "created": envelope.created, "model": "m",
                    "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
    assert json.loads(envelope.usage(Usage.of(3, 4)).model_dump_json())["usage"] == {
        "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_the_completion_is_the_stream_folded() -> None:
    envelope = Envelope("m")
    chunks = [envelope.start(), envelope.reasoning("think "), envelope.content(" B"),
              envelope.chunk(None, "length", warnings=["w"]), envelope.usage(Usage.of(1, 2))]
    completion = envelope.completion(chunks).model_dump(mode="json")
    assert completion["object"] == "chat.completion" and completion["id"] == envelope.id
    assert completion["choices"] == [{"index": 0, "finish_reason": "length", "logprobs": None,
                                      "message": {"role": "assistant", "content": "B", "reasoning_content": "think"}}]
    assert completion["usage"]["total_tokens"] == 3 and completion["warnings"] == ["w"]


def test_a_relayed_vllm_chunk_keeps_its_own_fields_under_the_gateways_envelope() -> None:
    envelope = Envelope("videochat-r1.5+gemini")
    vllm = Chunk.model_validate({"id": "chatcmpl-vllm", "object": "chat.completion.chunk", "created": 1,
                                 "model": "videochat-r1.5", "system_fingerprint": None,
                                 "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]},
                                              "finish_reason": None, "logprobs": {"content": []}}]})
    wire = json.loads(envelope.relabel(vllm).model_dump_json())
    assert (wire["id"], wire["model"]) == (envelope.id, "videochat-r1.5+gemini")
    assert wire["choices"][0]["delta"] == {"tool_calls": [{"index": 0}]}
    assert wire["choices"][0]["logprobs"] == {"content": []} and "system_fingerprint" in wire
    whole = Completion.model_validate({"id": "x", "object": "chat.completion", "created": 1, "model": "v",
                                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                                    "finish_reason": "stop"}]})
    assert envelope.relabel(whole).model == "videochat-r1.5+gemini"


def test_a_round_says_what_came_back_only_once_it_finished() -> None:
    sent = RoundRecord(round=1, frames=2, frame_times=[0.0, 1.0], sample_fps=2.0, frame_size=[28, 28],
                       visual_tokens=1, dense_segments=[], frames_seconds=0.1)
    assert "finish_reason" not in sent.model_dump(mode="json")
    done = sent.model_copy(update={"finished": True, "answer": "B", "usage": TokenCount(), "seconds": 1.0})
    dumped = done.model_dump(mode="json")
    assert dumped["finish_reason"] is None and dumped["answer"] == "B" and "finished" not in dumped
    assert Delta().model_dump(mode="json") == {}
