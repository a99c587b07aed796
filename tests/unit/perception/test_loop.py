"""PerceptionLoop over a real media library (real ffmpeg) and vLLM's wire format (MockTransport): glue carried from
round to round, limits learned from vLLM's refusals and retried once, a silent round timed out."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gateway.backends.vllm import VllmBackend
from gateway.errors import BackendTimeout, InvalidRequest
from gateway.media.library import Asset, open_library
from gateway.metrics import Metrics
from gateway.perception.budget import PLANNED_TEXT_STEP, planned_text_tokens
from gateway.perception.loop import Event, LoopRequest, PerceptionLoop, Piece, RoundFinished, RoundStarted
from tests.support.clips import make_clip
from tests.support.vllm_wire import MODEL, STALL, FakeVllm, Reply, error_reply, sse, stream_reply, vllm_error
from vchat_settings import Settings
from videochat_r15.prompts import round_prompt

GLUED = ["<think>", "bars", "</think>", "<answer>", "B", "</answer>", "<glue>", "[(1.0, 2.5), (3.0, 99)]", "</glue>"]
ANSWER = ["<answer>", "B", "</answer>"]


@dataclass
class Rig:
    loop: PerceptionLoop
    asset: Asset
    vllm: FakeVllm

    def request(self, iterations: int = 1, **fields: Any) -> LoopRequest:
        return LoopRequest(model=MODEL, question="What moves?", options=["nothing", "the bars"],
                           iterations=iterations, max_frames=16, fps=2.0, sampling={"temperature": 0}, **fields)

    async def run(self, req: LoopRequest) -> list[Event]:
        async with aclosing(self.loop.run(self.asset, req)) as events:
            return [event async for event in events]

    def frames_sent(self, n: int) -> int:
        url = self.vllm.requests[n]["messages"][0]["content"][0]["video_url"]["url"]
        return int(url.count(",")) if url.startswith("data:video/jpeg;base64,") else -1


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    replies: list[Reply] = request.param if hasattr(request, "param") else [stream_reply(ANSWER)]
    settings = Settings(vllm_url=None, media_dir=tmp_path / "media", round_timeout_s=1.0)
    clip = make_clip(4.0, "640x360", 10).read_bytes()
    vllm = FakeVllm(replies)
    async with open_library(settings, Metrics()) as library, \
            httpx2.AsyncClient(transport=vllm.transport(), trust_env=False) as http:
        asset = await library.from_data_url("data:video/mp4;base64," + base64.b64encode(clip).decode())
        backend = VllmBackend(http, "http://vllm.test", None, 5.0)
        yield Rig(PerceptionLoop(backend, library, settings, Metrics()), asset, vllm)


def rounds(events: list[Event], kind: type[Any]) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


@pytest.mark.parametrize("rig", [[stream_reply(GLUED), stream_reply(ANSWER)]], indirect=True)
async def test_glue_of_one_round_is_where_the_next_looks_closer(rig: Rig) -> None:
    events = await rig.run(rig.request(iterations=2))
    first, second = rounds(events, RoundStarted)
    assert first.spans_in == () and second.spans_in == ((1.0, 2.5), (3.0, 4.0))  # clipped to the video's end
    finished = rounds(events, RoundFinished)
    assert [f.segments for f in finished] == [((1.0, 2.5), (3.0, 4.0)), ()]  # the last round glues nothing
    assert [f.answer for f in finished] == ["B", "B"]
    assert "".join(p.text for p in rounds(events, Piece) if p.round == 1 and p.channel == "reasoning") == "bars"
    dense = [t for t in second.times if 1.0 <= t <= 2.5 or 3.0 <= t <= 4.0]
    assert len(dense) > len(second.times) - len(dense)  # denser inside the glued spans
    prompts = [sent["messages"][0]["content"][1]["text"] for sent in rig.vllm.requests]
    assert ["in the <glue> </glue> tags" in prompt for prompt in prompts] == [True, False]  # the last asks no glue
    # The round is declared at its average rate; the real density inside the segments is reported beside it.
    assert first.segment_fps is None and second.segment_fps is not None and second.segment_fps > second.sample_fps
    assert [sent["media_io_kwargs"]["video"]["fps"] for sent in rig.vllm.requests] == [first.sample_fps] * 2


ENCODER = "video exceeds the pre-allocated encoder cache size 700; use fewer frames"


@pytest.mark.parametrize("rig", [[error_reply(400, ENCODER), stream_reply(ANSWER)]], indirect=True)
async def test_an_encoder_cache_refusal_is_learned_and_the_round_retried_smaller(rig: Rig) -> None:
    events = await rig.run(rig.request())
    tries = rounds(events, RoundStarted)
    assert [t.round for t in tries] == [1, 1]
    assert tries[0].visual_tokens > 700 >= tries[1].visual_tokens
    assert rig.loop.token_limit == 700
    assert rig.frames_sent(1) < rig.frames_sent(0)
    assert rounds(events, RoundFinished)[0].answer == "B"


@pytest.mark.parametrize("rig", [[stream_reply(["<think>"], then=[sse(vllm_error(400, ENCODER))]),
                                  stream_reply(ANSWER)]], indirect=True)
async def test_the_same_refusal_arriving_mid_stream_is_learned_too(rig: Rig) -> None:
    await rig.run(rig.request())
    assert rig.loop.token_limit == 700 and len(rig.vllm.requests) == 2


CONTEXT = "This model's maximum context length is 1500 tokens. However, you requested 2500 tokens."


@pytest.mark.parametrize("rig", [[error_reply(400, CONTEXT), stream_reply(ANSWER)]], indirect=True)
async def test_a_context_refusal_lowers_the_reply_budget_for_the_retry(rig: Rig) -> None:
    await rig.run(rig.request())
    assert rig.loop.context_limit == 1500
    assert rig.vllm.requests[0]["max_tokens"] == 2048 > rig.vllm.requests[1]["max_tokens"]


@pytest.mark.parametrize("rig", [[error_reply(400, ENCODER)]], indirect=True)
async def test_a_refusal_that_persists_after_the_retry_reaches_the_caller(rig: Rig) -> None:
    with pytest.raises(InvalidRequest, match="encoder cache size 700"):
        await rig.run(rig.request())
    assert len(rig.vllm.requests) == 2  # one retry, not a loop


@pytest.mark.parametrize("rig", [[error_reply(400, "temperature must be non-negative")]], indirect=True)
async def test_a_refusal_naming_no_limit_is_not_retried(rig: Rig) -> None:
    with pytest.raises(InvalidRequest):
        await rig.run(rig.request())
    assert len(rig.vllm.requests) == 1


@pytest.mark.timing
@pytest.mark.parametrize("rig", [[stream_reply(["<think>"], then=[STALL])]], indirect=True)
async def test_a_silent_round_times_out(rig: Rig) -> None:
    with pytest.raises(BackendTimeout, match=r"Round 1 took longer than 1 s"):
        await rig.run(rig.request())


async def test_the_gateway_sets_vllms_media_kwargs_itself(rig: Rig) -> None:
    events = await rig.run(rig.request())
    sent = rig.vllm.requests[0]
    started = rounds(events, RoundStarted)[0]
    video = sent["media_io_kwargs"]["video"]
    assert video == {"num_frames": -1, "fps": started.sample_fps}
    area = started.width * started.height
    assert sent["mm_processor_kwargs"] == {"size": {"shortest_edge": area, "longest_edge": area}}
    assert rig.frames_sent(0) == len(started.times) and len(started.times) % 2 == 0
    assert sent["stream_options"] == {"include_usage": True} and sent["temperature"] == 0
    assert rounds(events, RoundFinished)[0].usage.prompt_tokens == 900


@pytest.mark.parametrize("rig", [[stream_reply(ANSWER), stream_reply(ANSWER)]], indirect=True)
async def test_a_round_with_no_new_segments_sends_exactly_the_frames_of_the_round_before(rig: Rig) -> None:
    # A context where the glue round's longer prompt leaves room for fewer frames than the last round's: the last
    # round, with no new segments (round 1 glued nothing), still sends round 1's frames, so they come from the cache
    # and vLLM's caches can match.
    req = rig.request(iterations=2, max_tokens=64, max_tokens_set=True)
    # Frames are planned for the text rounded up to steps (budget.planned_text_tokens): a question just long enough
    # puts the glue round's prompt one step above the last round's.
    for pad in range(PLANNED_TEXT_STEP):
        req = dataclasses.replace(req, question=rig.request().question + " more" * pad)
        glue, final = (round_prompt(req.question, req.options, glue=kind) for kind in (True, False))
        if planned_text_tokens(glue) > planned_text_tokens(final):
            break
    for context in range(400, 8000, 8):
        rig.loop.context_limit = context  # as if vLLM had said so
        try:
            planned = [(await rig.loop.plan(rig.asset, req, prompt)).frames.nframes for prompt in (glue, final)]
        except InvalidRequest:  # not even 4 frames fit yet
            continue
        if 4 <= planned[0] < planned[1]:
            break
    else:
        pytest.fail("no context separates the two prompts' frame counts")
    first, second = rounds(await rig.run(req), RoundStarted)
    assert second.spans_in == () and second.times == first.times and len(first.times) == planned[0]
    assert rig.frames_sent(0) == rig.frames_sent(1)


@pytest.mark.parametrize("rig", [[stream_reply(ANSWER)]], indirect=True)
async def test_a_follow_up_question_sends_round_1_the_same_video_part_byte_for_byte(rig: Rig) -> None:
    # vLLM's prefix and encoder caches serve a second question about a video only when its frames reach vLLM as the
    # same bytes, before the text, under the same uuid.
    first = rig.request(iterations=2)
    follow_up = dataclasses.replace(first, question="And which colour is the bar on the far left, at the very end?",
                                    options=None)
    for req in (first, follow_up):
        await rig.run(req)
    round_1 = [rig.vllm.requests[0], rig.vllm.requests[2]]
    parts = [body["messages"][0]["content"] for body in round_1]
    assert [[part["type"] for part in p] for p in parts] == [["video_url", "text"]] * 2
    assert json.dumps(parts[0][0]).encode() == json.dumps(parts[1][0]).encode()
    assert parts[0][0]["uuid"].startswith("vchat-") and parts[0][1] != parts[1][1]
    assert round_1[0]["media_io_kwargs"] == round_1[1]["media_io_kwargs"]
    assert round_1[0]["mm_processor_kwargs"] == round_1[1]["mm_processor_kwargs"]


@pytest.mark.parametrize("rig", [[stream_reply(ANSWER)]], indirect=True)
async def test_other_frames_of_the_video_go_under_another_uuid(rig: Rig) -> None:
    await rig.run(rig.request())
    await rig.run(dataclasses.replace(rig.request(), max_frames=4))
    uuids = [body["messages"][0]["content"][0]["uuid"] for body in rig.vllm.requests]
    assert rig.frames_sent(0) != rig.frames_sent(1) and uuids[0] != uuids[1]


@pytest.mark.parametrize("rig", [[stream_reply(ANSWER)]], indirect=True)
async def test_frames_extracted_again_after_eviction_are_the_same_bytes(rig: Rig) -> None:
    # The frame cache may drop a video's frames between two questions: extracting them again (ffmpeg's decode and
    # JPEG encoding at fixed settings) must give vLLM the same bytes, or the uuid would name other frames.
    await rig.run(rig.request())
    frames = rig.asset.video.parent / "frames"
    evicted = list(frames.rglob("*.jpg"))
    for jpeg in evicted:
        jpeg.unlink()
    await rig.run(rig.request())
    assert evicted and any(frames.rglob("*.jpg"))  # extracted again
    parts = [body["messages"][0]["content"][0] for body in rig.vllm.requests]
    assert parts[0] == parts[1]
