"""Local perception and Gemini on the same video, run concurrently and merged in one of three documented modes,
with each side falling back to the other when it fails.

- ``gemini_context`` (default): Gemini's analysis (which also hears the audio) is put in front of the final local
  round as evidence; the answer and its time segments are the local model's. Gemini runs while rounds 1..N-1 do.
- ``gemini_final``: after the local rounds, Gemini writes the final answer from the video plus the local answer and
  segments (best answers, sequential latency: local, then Gemini).
- ``side_by_side``: both answer the question at the same time; the content holds both answers, labelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.backends.gemini import GeminiAnswer, GeminiDelta, GeminiDone, GeminiEvent
from gateway.errors import BackendUnavailable, VChatError
from gateway.media.library import Asset, LinkedVideo
from gateway.perception.loop import Event, LoopRequest, Piece, RoundFinished
from videochat_r15.prompts import format_options

logger = logging.getLogger(__name__)

MergeMode = Literal["gemini_context", "gemini_final", "side_by_side"]
LOCAL_LABEL = "VideoChat-R1.5"
GEMINI_LABEL = "Gemini"


@dataclass(frozen=True)
class Section:
    """A labelled part of the content begins (side by side)."""

    label: str


@dataclass(frozen=True)
class GeminiText:
    """Text of Gemini's answer; ``role`` says where it goes: the content, or the reasoning (evidence)."""

    text: str
    role: Literal["content", "evidence"]


@dataclass(frozen=True)
class GeminiFinished:
    answer: GeminiAnswer
    role: Literal["content", "evidence"]


@dataclass(frozen=True)
class Notice:
    """Something the client should know (a source failed, a fallback was taken)."""

    text: str


MergedEvent = Event | Section | GeminiText | GeminiFinished | Notice


class LocalPerception(Protocol):
    """The local side: rounds over the video (``loop.PerceptionLoop``), evidence put before the last one."""

    def run(self, asset: Asset, req: LoopRequest,
            final_context: Callable[[], Awaitable[str | None]] | None = None) -> AsyncGenerator[Event, None]:
        """The rounds' events."""


class EvidenceSource(Protocol):
    """A model that watches the whole video (and hears it) and answers a prompt about it: the merge folds its
    answer in as evidence, as the final answer, or beside the local one (``backends.gemini.GeminiBackend``)."""

    async def describe(self, asset: Asset | LinkedVideo, prompt: str, *, temperature: float | None = None,
                       max_output_tokens: int | None = None, deadline_s: float) -> GeminiAnswer:
        """The whole answer, within ``deadline_s``."""

    async def describe_stream(self, asset: Asset | LinkedVideo, prompt: str, *, temperature: float | None = None,
                              max_output_tokens: int | None = None,
                              deadline_s: float) -> AsyncGenerator[GeminiEvent, None]:
        """The answer as it is written, opened before this returns."""


@dataclass(frozen=True)
class Sources:
    """Who answers: the local loop (None: not configured or down), Gemini (None: off), and how they merge."""

    local: LocalPerception | None
    gemini: EvidenceSource | None
    mode: MergeMode | None
    local_down: str | None = None  # why the local model is known to be unavailable before we start


def question_text(req: LoopRequest) -> str:
    if req.options:
        return f"{req.question}\nOptions:\n{format_options(req.options)}Answer with the option's letter first."
    return req.question


def evidence_prompt(req: LoopRequest) -> str:
    return (f"Watch this video and listen to its audio. Question: {question_text(req)}\n"
            "Answer it, then list the moments (with start and end times in seconds) and any sounds or speech that "
            "support the answer. Be concise.")


def final_prompt(req: LoopRequest, local: RoundFinished | None, segments: list[tuple[float, float]]) -> str:
    if local is None:
        return f"Watch this video and listen to its audio, then answer. {question_text(req)}"
    spans = ", ".join(f"{s:.1f}-{e:.1f} s" for s, e in segments) or "none given"
    return (f"Watch this video and listen to its audio, then answer. {question_text(req)}\n"
            f"A specialised local video model answered: {local.answer!r}, based on these "
            f"moments: {spans}. Check them yourself and give the final answer.")


class Merger:
    """Runs one question through the configured sources; events are the loop's plus the merge's own."""

    def __init__(self, sources: Sources, gemini_deadline_s: float) -> None:
        self.sources = sources
        self.deadline_s = gemini_deadline_s

    async def run(self, asset: Asset | LinkedVideo, req: LoopRequest) -> AsyncGenerator[MergedEvent, None]:
        """``asset`` is a ``LinkedVideo`` (not downloaded) only when Gemini answers alone."""
        src = self.sources
        if src.gemini is None or (src.mode is None and src.local is not None):
            assert src.local is not None and isinstance(asset, Asset)
            async with aclosing(src.local.run(asset, req)) as events:
                async for local_event in events:
                    yield local_event
            return
        if src.local is None:
            if src.local_down:
                yield Notice(f"The local model is unavailable ({src.local_down}); Gemini answered alone.")
            try:
                async with aclosing(self._gemini_stream(asset, final_prompt(req, None, []), req, "content")) as items:
                    async for item in items:
                        yield item
            except VChatError as exc:
                if src.local_down is None:
                    raise
                raise _both_down(src.local_down, exc) from exc
            return
        steps = {"gemini_context": self._context, "gemini_final": self._final, "side_by_side": self._side_by_side}
        assert src.mode is not None and isinstance(asset, Asset)
        async with aclosing(steps[src.mode](asset, req)) as merged:
            async for item in merged:
                yield item

    # --- the modes -------------------------------------------------------------------------------------------------

    async def _context(self, asset: Asset, req: LoopRequest) -> AsyncGenerator[MergedEvent, None]:
        gemini = self._ask(asset, evidence_prompt(req), req)
        notices: list[str] = []

        async def evidence() -> str | None:
            try:
                return (await gemini).text
            except VChatError as exc:
                notices.append(f"Gemini did not answer ({exc.message}); the local model answered alone.")
                return None

        try:
            async with aclosing(self._local(asset, req, evidence)) as events:
                async for event in events:
                    if isinstance(event, RoundFinished) and event.last:
                        for text in notices:
                            yield Notice(text)
                        if gemini.done() and not gemini.cancelled() and gemini.exception() is None:
                            answer = gemini.result()
                            yield GeminiText(answer.text, "evidence")
                            yield GeminiFinished(answer, "evidence")
                    yield event
        except _LocalFailed as failed:
            yield Notice(f"The local model failed ({failed.reason}); Gemini answered alone.")
            answer = await self._or_both_down(gemini, failed.reason)
            yield GeminiText(answer.text, "content")
            yield GeminiFinished(answer, "content")
        finally:
            gemini.cancel()

    async def _final(self, asset: Asset, req: LoopRequest) -> AsyncGenerator[MergedEvent, None]:
        last: RoundFinished | None = None
        segments: list[tuple[float, float]] = []
        failure: str | None = None
        try:
            async with aclosing(self._local(asset, req, None)) as events:
                async for event in events:
                    if isinstance(event, RoundFinished):
                        segments = list(event.segments) or segments
                        last = event if event.last else last
                    if isinstance(event, Piece) and event.channel == "content" and event.round == req.iterations:
                        event = Piece(event.round, "reasoning", event.text)  # the local answer informs Gemini's
                    yield event
        except _LocalFailed as failed:
            failure = failed.reason
            yield Notice(f"The local model failed ({failure}); Gemini answered alone.")
        try:
            async with aclosing(self._gemini_stream(asset, final_prompt(req, last, segments), req, "content")) as items:
                async for item in items:
                    yield item
        except VChatError as exc:
            if last is None:
                raise _both_down(failure or "no answer", exc) from exc
            yield Notice(f"Gemini did not answer ({exc.message}); this is the local model's answer.")
            yield Piece(last.round, "content", last.answer)

    async def _side_by_side(self, asset: Asset, req: LoopRequest) -> AsyncGenerator[MergedEvent, None]:
        gemini = self._ask(asset, final_prompt(req, None, []), req)
        failure: str | None = None
        try:
            yield Section(LOCAL_LABEL)
            async with aclosing(self._local(asset, req, None)) as events:
                async for event in events:
                    yield event
        except _LocalFailed as failed:
            failure = failed.reason
            yield Notice(f"The local model failed ({failure}).")
        try:
            try:
                answer = await gemini
            except VChatError as exc:
                if failure is not None:
                    raise _both_down(failure, exc) from exc
                yield Notice(f"Gemini did not answer ({exc.message}).")
                return
            yield Section(GEMINI_LABEL)
            yield GeminiText(answer.text, "content")
            yield GeminiFinished(answer, "content")
        finally:
            gemini.cancel()

    # --- the two sides -----------------------------------------------------------------------------------------------

    async def _local(self, asset: Asset, req: LoopRequest,
                     context: Callable[[], Awaitable[str | None]] | None) -> AsyncGenerator[Event, None]:
        """The local loop; a backend failure becomes ``_LocalFailed`` so the mode can fall back to Gemini."""
        assert self.sources.local is not None
        try:
            async with aclosing(self.sources.local.run(asset, req, context)) as events:
                async for event in events:
                    yield event
        except BackendUnavailable as exc:
            raise _LocalFailed(exc.message) from exc

    def _ask(self, asset: Asset | LinkedVideo, prompt: str, req: LoopRequest) -> asyncio.Task[GeminiAnswer]:
        assert self.sources.gemini is not None
        temperature = req.sampling.get("temperature")
        return asyncio.ensure_future(self.sources.gemini.describe(
            asset, prompt, temperature=temperature if isinstance(temperature, int | float) else None,
            deadline_s=self.deadline_s))

    async def _gemini_stream(self, asset: Asset | LinkedVideo, prompt: str, req: LoopRequest,
                             role: Literal["content", "evidence"]) -> AsyncGenerator[MergedEvent, None]:
        assert self.sources.gemini is not None
        temperature = req.sampling.get("temperature")
        stream = await self.sources.gemini.describe_stream(
            asset, prompt, temperature=temperature if isinstance(temperature, int | float) else None,
            deadline_s=self.deadline_s)
        async with aclosing(stream) as items:
            async for item in items:
                if isinstance(item, GeminiDelta):
                    yield GeminiText(item.text, role)
                elif isinstance(item, GeminiDone):
                    yield GeminiFinished(item.answer, role)

    async def _or_both_down(self, gemini: asyncio.Task[GeminiAnswer], local_reason: str) -> GeminiAnswer:
        try:
            return await gemini
        except VChatError as exc:
            raise _both_down(local_reason, exc) from exc


class _LocalFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _both_down(local_reason: str, gemini_error: VChatError) -> BackendUnavailable:
    return BackendUnavailable(
        f"Both answerers failed: the local model ({local_reason}) and Gemini ({gemini_error.message}).",
        code="all_backends_unavailable", retry_after=gemini_error.retry_after or 5,
    )
