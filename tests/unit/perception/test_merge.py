"""Merger: each merge mode's order of events, and each side falling back to the other when it fails.

The two sides are test doubles with the real interfaces (``PerceptionLoop.run``, ``GeminiBackend.describe`` /
``describe_stream``): what is under test is the merge, not vLLM or Gemini.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path

import pytest

from gateway.backends.gemini import GeminiAnswer, GeminiBackend, GeminiDelta, GeminiDone, GeminiEvent, GeminiUsage
from gateway.errors import BackendTimeout, BackendUnavailable
from gateway.media.library import Asset, LinkedVideo, VideoFacts
from gateway.media.probe import Probe
from gateway.perception.loop import Event, LoopRequest, PerceptionLoop, Piece, RoundFinished, Usage
from gateway.perception.merge import (
    GeminiFinished,
    GeminiText,
    MergedEvent,
    MergeMode,
    Merger,
    Notice,
    Section,
    Sources,
)
from videochat_r15.prompts import parse_reply

REQ = LoopRequest(model="videochat-r1.5", question="What moves?", options=None, iterations=2, max_frames=16,
                  fps=2.0, sampling={"temperature": 0.5})
PROBE = Probe(duration_s=2.0, fps=10.0, width=160, height=120, rotation=0, vcodec="h264", pix_fmt="yuv420p",
              frame_count=20, has_audio=True, acodec="aac", format_name="mp4", bytes=1, video_index=0)
FACTS = VideoFacts(duration_s=2.0, fps=10.0, width=160, height=120, codec="h264", has_audio=True, audio_codec="aac",
                   bytes=1, source="upload", source_host=None)
ASSET = Asset("a" * 64, Path("/nonexistent/video.mp4"), PROBE, FACTS)


def finished(number: int, answer: str) -> RoundFinished:
    text = f"<answer>{answer}</answer>"
    return RoundFinished(number, number == REQ.iterations, parse_reply(text), text, answer,
                         ((0.5, 1.0),) if number < REQ.iterations else (), Usage(10, 2), "stop", 0.1)


class FakeLoop:
    """Two rounds answering ``answers``; ``fail`` raises after round 1; records the context the last round got."""

    def __init__(self, answers: tuple[str, str] = ("A", "B"), fail: Exception | None = None) -> None:
        self.answers, self.fail = answers, fail
        self.context: str | None = None
        self.context_asked = asyncio.Event()

    async def run(self, asset: Asset, req: LoopRequest,
                  final_context: Callable[[], Awaitable[str | None]] | None = None) -> AsyncGenerator[Event, None]:
        yield Piece(1, "content", self.answers[0])
        yield finished(1, self.answers[0])
        if self.fail is not None:
            raise self.fail
        if final_context is not None:
            self.context_asked.set()
            self.context = await final_context()
        yield Piece(2, "content", self.answers[1])
        yield finished(2, self.answers[1])


class FakeGemini:
    """Answers ``text`` (or raises ``fail``); ``hold`` keeps ``describe`` waiting; records prompts and cancels."""

    def __init__(self, text: str = "Gemini says B", fail: Exception | None = None,
                 hold: asyncio.Event | None = None) -> None:
        self.text, self.fail, self.hold = text, fail, hold
        self.prompts: list[str] = []
        self.cancelled = False

    def answer(self) -> GeminiAnswer:
        return GeminiAnswer(self.text, "gemini-test-001", GeminiUsage(5, 3), "inline")

    async def describe(self, asset: Asset | LinkedVideo, prompt: str, *, temperature: float | None = None,
                       max_output_tokens: int | None = None, deadline_s: float) -> GeminiAnswer:
        self.prompts.append(prompt)
        try:
            if self.hold is not None:
                await self.hold.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.fail is not None:
            raise self.fail
        return self.answer()

    async def describe_stream(self, asset: Asset | LinkedVideo, prompt: str, *, temperature: float | None = None,
                              max_output_tokens: int | None = None,
                              deadline_s: float) -> AsyncGenerator[GeminiEvent, None]:
        self.prompts.append(prompt)
        if self.fail is not None:
            raise self.fail

        async def events() -> AsyncGenerator[GeminiEvent, None]:
            for word in self.text.split(" "):
                yield GeminiDelta(word + " ")
            yield GeminiDone(self.answer())

        return events()


async def merged(local: FakeLoop | None, gemini: FakeGemini | None, mode: MergeMode | None,
                 local_down: str | None = None) -> list[MergedEvent]:
    sources = Sources(local, gemini, mode, local_down)  # the fakes implement the merge's Protocols
    async with aclosing(Merger(sources, gemini_deadline_s=5).run(ASSET, REQ)) as events:
        return [event async for event in events]


def shown(events: list[MergedEvent]) -> list[str]:
    """The events as short words, to compare orders."""
    words = []
    for event in events:
        if isinstance(event, Piece):
            words.append(f"piece{event.round}:{event.channel}:{event.text}")
        elif isinstance(event, RoundFinished):
            words.append(f"round{event.round}")
        elif isinstance(event, GeminiText):
            words.append(f"gemini:{event.role}")
        elif isinstance(event, GeminiFinished):
            words.append(f"gemini-done:{event.role}")
        elif isinstance(event, Section):
            words.append(f"section:{event.label}")
        elif isinstance(event, Notice):
            words.append("notice")
    return [w for i, w in enumerate(words) if i == 0 or w != words[i - 1] or not w.startswith("gemini:")]


def notices(events: list[MergedEvent]) -> list[str]:
    return [event.text for event in events if isinstance(event, Notice)]


UNAVAILABLE = BackendUnavailable("vLLM is unreachable", retry_after=5)


# --- gemini_context ---------------------------------------------------------------------------------------------------


async def test_context_puts_geminis_analysis_before_the_last_round() -> None:
    local, gemini = FakeLoop(), FakeGemini()
    events = await merged(local, gemini, "gemini_context")
    assert local.context == "Gemini says B"
    assert shown(events) == ["piece1:content:A", "round1", "piece2:content:B", "gemini:evidence",
                             "gemini-done:evidence", "round2"]
    assert "listen to its audio" in gemini.prompts[0]


async def test_context_without_gemini_answers_locally_with_a_notice() -> None:
    local = FakeLoop()
    events = await merged(local, FakeGemini(fail=BackendTimeout("Gemini took too long")), "gemini_context")
    assert local.context is None
    assert notices(events) == ["Gemini did not answer (Gemini took too long); the local model answered alone."]
    assert shown(events)[-1] == "round2"


async def test_context_with_the_local_model_failing_falls_back_to_gemini() -> None:
    events = await merged(FakeLoop(fail=UNAVAILABLE), FakeGemini(), "gemini_context")
    assert notices(events) == ["The local model failed (vLLM is unreachable); Gemini answered alone."]
    assert shown(events)[-2:] == ["gemini:content", "gemini-done:content"]


async def test_both_failing_is_one_503_naming_both() -> None:
    with pytest.raises(BackendUnavailable) as caught:
        await merged(FakeLoop(fail=UNAVAILABLE), FakeGemini(fail=BackendUnavailable("quota")), "gemini_context")
    assert caught.value.code == "all_backends_unavailable"
    assert "vLLM is unreachable" in caught.value.message and "quota" in caught.value.message


async def test_a_client_leaving_cancels_the_pending_gemini_call() -> None:
    local, gemini = FakeLoop(), FakeGemini(hold=asyncio.Event())
    sources = Sources(local, gemini, "gemini_context")
    events = Merger(sources, gemini_deadline_s=5).run(ASSET, REQ)
    async with aclosing(events):
        consumer = asyncio.ensure_future(_drain(events))
        await local.context_asked.wait()  # the last round waits for Gemini's evidence
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
    assert gemini.cancelled


async def _drain(events: AsyncGenerator[MergedEvent, None]) -> None:
    async for _ in events:
        pass


# --- gemini_final and side_by_side ---------------------------------------------------------------------------------


async def test_final_turns_the_local_answer_into_reasoning_and_gemini_answers() -> None:
    gemini = FakeGemini()
    events = await merged(FakeLoop(), gemini, "gemini_final")
    assert shown(events) == ["piece1:content:A", "round1", "piece2:reasoning:B", "round2", "gemini:content",
                             "gemini-done:content"]
    assert "answered: 'B'" in gemini.prompts[0] and "0.5-1.0 s" in gemini.prompts[0]


async def test_final_without_gemini_gives_the_local_answer_back_as_content() -> None:
    events = await merged(FakeLoop(), FakeGemini(fail=BackendUnavailable("quota")), "gemini_final")
    assert notices(events) == ["Gemini did not answer (quota); this is the local model's answer."]
    assert shown(events)[-1] == "piece2:content:B"


async def test_side_by_side_labels_both_answers() -> None:
    events = await merged(FakeLoop(), FakeGemini(), "side_by_side")
    assert shown(events) == ["section:VideoChat-R1.5", "piece1:content:A", "round1", "piece2:content:B", "round2",
                             "section:Gemini", "gemini:content", "gemini-done:content"]


async def test_side_by_side_with_gemini_failing_keeps_the_local_answer() -> None:
    events = await merged(FakeLoop(), FakeGemini(fail=BackendUnavailable("quota")), "side_by_side")
    assert notices(events) == ["Gemini did not answer (quota)."]
    assert "section:Gemini" not in shown(events)


# --- one side only ----------------------------------------------------------------------------------------------------


async def test_without_gemini_the_loop_runs_alone() -> None:
    events = await merged(FakeLoop(), None, None)
    assert shown(events) == ["piece1:content:A", "round1", "piece2:content:B", "round2"]


async def test_gemini_alone_says_why_the_local_model_is_not_answering() -> None:
    events = await merged(None, FakeGemini(), "gemini_context", local_down="vLLM is not configured")
    assert notices(events) == ["The local model is unavailable (vLLM is not configured); Gemini answered alone."]
    assert shown(events)[-2:] == ["gemini:content", "gemini-done:content"]
    with pytest.raises(BackendUnavailable, match="Both answerers failed"):
        await merged(None, FakeGemini(fail=BackendUnavailable("quota")), "gemini_context", local_down="down")


def test_the_fakes_keep_to_the_real_signatures() -> None:
    import inspect

    for fake, real in [(FakeLoop.run, PerceptionLoop.run), (FakeGemini.describe, GeminiBackend.describe),
                       (FakeGemini.describe_stream, GeminiBackend.describe_stream)]:
        assert list(inspect.signature(fake).parameters) == list(inspect.signature(real).parameters)

