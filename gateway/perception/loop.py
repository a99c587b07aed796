"""VideoChat-R1.5's iterative perception as a stream of events: N single-turn rounds over vLLM, each
re-sampling the video 1.5x denser inside the time segments the previous round glued."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol

from gateway.backends.vllm import Generated, RoundCall
from gateway.errors import BackendTimeout, ContextExceeded, EncoderCacheExceeded, ModelLimitExceeded
from gateway.logs import request_id_var
from gateway.media.framecache import Frames
from gateway.media.frames import JPEG_QSCALE
from gateway.media.library import Asset, VideoLibrary
from gateway.media.plan import FrameLimits
from gateway.media.sampling import KEY_TIME_SPARE_FRAMES, Span, parse_glue
from gateway.media.subtitles import Line
from gateway.media.zoom import round_frames, segment_fps
from gateway.metrics import Metrics
from gateway.perception.budget import RoundPlan, largest_round, plan_round, text_room
from gateway.perception.subtitles import covered, preamble_bytes, thin, with_subtitles
from vchat_settings import Settings
from videochat_r15.geometry import visual_tokens
from videochat_r15.prompts import Reply, parse_reply, round_prompt
from videochat_r15.tags import Channel, TagSplitter

logger = logging.getLogger(__name__)


class RoundModel(Protocol):
    """What the loop asks of the model that runs its rounds (``backends.vllm.VllmBackend``; a benchmark's recorder)."""

    async def max_model_len(self, model: str) -> int | None:
        """The context ``model`` is served with; None when unknown."""

    async def round_stream(self, call: RoundCall) -> AsyncGenerator[Generated, None]:
        """The round's reply, streamed (the call made before this returns); a round over one of the model's limits
        raises ``EncoderCacheExceeded`` or ``ContextExceeded``."""


@dataclass(frozen=True)
class LoopRequest:
    """One question about one video, with the client's sampling and perception knobs already checked."""

    model: str
    question: str
    options: list[str] | None
    iterations: int
    max_frames: int
    fps: float
    sampling: dict[str, object]
    max_tokens: int = 2048  # each round's reply budget
    max_tokens_set: bool = False  # the client chose it (then it is never lowered to fit the context)
    zoom: str = "official"  # glue rounds' sampling (gateway.media.zoom): official or dense
    subtitles: str = "auto"  # the video's timed text in each round's prompt (auto) or not (off)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class RoundStarted:
    """A round is about to call vLLM with these frames (``times``: seconds of each frame sent)."""

    round: int
    last: bool
    times: tuple[float, ...]
    sample_fps: float
    width: int
    height: int
    visual_tokens: int
    spans_in: tuple[Span, ...]  # the segments this round samples densely (empty: uniform)
    notes: tuple[str, ...] = ()  # what was cut to fit vLLM, and why
    frames_seconds: float = 0.0  # planning the round and getting its frames (extracted or cached), encoded
    segment_fps: float | None = None  # the real density inside the glued segments (sample_fps: declared)
    subtitles: tuple[Line, ...] = ()  # the subtitle lines in this round's prompt


@dataclass(frozen=True)
class Replying:
    """vLLM accepted the round and sent its first token (the request can no longer fail as a whole)."""

    round: int
    seconds: float = 0.0  # from the round's call to vLLM to its first token: the prefill vLLM's caches can save


@dataclass(frozen=True)
class Piece:
    """Text the model just produced, already split by tag (reasoning, content, glue)."""

    round: int
    channel: Channel
    text: str


@dataclass(frozen=True)
class RoundFinished:
    round: int
    last: bool
    reply: Reply
    text: str
    answer: str  # the answer as streamed to the client (TagSplitter's content)
    segments: tuple[Span, ...]  # hardened glue: what the next round looks at
    usage: Usage
    finish_reason: str | None
    seconds: float


Event = RoundStarted | Replying | Piece | RoundFinished


class PerceptionLoop:
    """Runs the rounds for one request at a time per call; shared by all requests (it learns vLLM's limits)."""

    def __init__(self, vllm: RoundModel, library: VideoLibrary, settings: Settings, metrics: Metrics) -> None:
        self.vllm = vllm
        self.library = library
        self.settings = settings
        self.metrics = metrics
        self.token_limit = settings.max_visual_tokens
        self.context_limit: int | None = None  # a context vLLM's errors reported, when smaller than it lists

    async def plan(self, asset: Asset, req: LoopRequest, prompt: str | None = None, reserved: int = 0) -> RoundPlan:
        """Frames and reply budget of a round with this prompt (default: the glue round's) within vLLM's limits,
        ``reserved`` tokens held for its subtitles."""
        limits, context = await self._limits(req)
        return plan_round(asset.probe.video_info(), limits, context=context,
                          prompt=prompt if prompt is not None else round_prompt(req.question, req.options, glue=True),
                          max_tokens=req.max_tokens, max_tokens_set=req.max_tokens_set,
                          spare_frames=KEY_TIME_SPARE_FRAMES, reserved=reserved)

    async def kv_tokens(self, asset: Asset, req: LoopRequest, *, evidence: bool = False) -> int:
        """The KV-cache tokens the request's largest round can hold in vLLM (prompt and reply): what admission reserves
        for it. Every round is planned under the same limits (visual tokens, context, reply) from the same video; they
        differ in their prompts only (the glue or the final question, their subtitles), so each question is bounded
        with the most subtitles a round may take. With ``evidence`` the last prompt holds Gemini's notes, whose length
        is known only once Gemini answered: the whole context is reserved."""
        limits, context = await self._limits(req)
        if evidence and context is not None:
            return context
        held = []
        for glue in (True, False):
            prompt = round_prompt(req.question, req.options, glue=glue)
            _, line_bytes = await self._subtitle_bytes(asset, req, prompt)
            reserved = line_bytes + preamble_bytes(multiple_choice=bool(req.options)) if line_bytes else 0
            held.append(largest_round(asset.probe.video_info(), limits, context=context, prompt=prompt,
                                      max_tokens=req.max_tokens, spare_frames=KEY_TIME_SPARE_FRAMES,
                                      reserved=reserved))
        return max(held)

    async def _limits(self, req: LoopRequest) -> tuple[FrameLimits, int | None]:
        limits = FrameLimits(max_visual_tokens=self.token_limit, min_pixels=self.settings.frame_min_pixels,
                             max_pixels=self.settings.frame_max_pixels, total_pixels=self.settings.frame_total_pixels,
                             max_frames=req.max_frames, target_fps=req.fps)
        context = await self.vllm.max_model_len(req.model)
        if self.context_limit is not None:
            context = min(context or self.context_limit, self.context_limit)
        return limits, context

    async def _subtitle_bytes(self, asset: Asset, req: LoopRequest, prompt: str) -> tuple[tuple[Line, ...], int]:
        """The video's subtitle lines a round may choose from, and the bytes its chosen lines may take: the
        setting's, less when vLLM's context could not hold them beside the fewest frames and the reply."""
        if req.subtitles == "off" or asset.transcript is None:
            return (), 0
        lines = asset.transcript.lines
        wanted = min(sum(len(line.text.encode()) + 1 for line in lines), self.settings.subtitle_prompt_tokens)
        limits, context = await self._limits(req)
        room = text_room(asset.probe.video_info(), limits, context=context, prompt=prompt,
                         max_tokens=req.max_tokens, spare_frames=KEY_TIME_SPARE_FRAMES)
        if room is not None:
            wanted = min(wanted, room - preamble_bytes(multiple_choice=bool(req.options)))
        return lines, max(wanted, 0)

    async def run(self, asset: Asset, req: LoopRequest,
                  final_context: Callable[[], Awaitable[str | None]] | None = None) -> AsyncGenerator[Event, None]:
        """The rounds' events. ``final_context`` is awaited just before the last round; text it returns is put in
        front of that round's prompt as evidence (how Gemini's analysis reaches the local model)."""
        spans: tuple[Span, ...] = ()
        shapes: list[_Shape] = []  # each round's frames, so that a round with no new segments repeats them
        for number in range(1, req.iterations + 1):
            last = number == req.iterations
            context = await final_context() if last and final_context is not None else None
            for attempt in range(2):
                del shapes[number - 1:]  # a retried round plans anew
                try:
                    # aclosing: when our consumer closes us at a yield, the round (and with it the vLLM stream, which
                    # is what makes vLLM abort) must close now, not when the garbage collector gets to it.
                    async with aclosing(self._round(asset, req, number, last, spans, context, shapes)) as events:
                        async for event in events:
                            if isinstance(event, RoundFinished):
                                spans = event.segments
                            yield event
                    break
                except ModelLimitExceeded as exc:
                    # vLLM names its encoder cache or context when a round does not fit: plan under it and retry.
                    if attempt == 1 or not self._learn(exc):
                        raise

    def _learn(self, refused: ModelLimitExceeded) -> bool:
        """Take the smaller limit vLLM named; False when it is no smaller than the one planned under."""
        if isinstance(refused, EncoderCacheExceeded) and refused.limit < self.token_limit:
            self.token_limit = refused.limit
            logger.warning("vLLM's encoder cache holds %d visual tokens; planning under it", self.token_limit)
            return True
        if isinstance(refused, ContextExceeded) and refused.limit < (self.context_limit or 1 << 62):
            self.context_limit = refused.limit
            logger.warning("vLLM's context is %d tokens; planning under it", self.context_limit)
            return True
        return False

    async def _round(self, asset: Asset, req: LoopRequest, number: int, last: bool, spans: tuple[Span, ...],
                     context: str | None = None, shapes: list[_Shape] | None = None) -> AsyncGenerator[Event, None]:
        prepared = time.perf_counter()
        question = round_prompt(req.question, req.options, glue=not last)
        lines, line_bytes = await self._subtitle_bytes(asset, req, _with_context(question, context))
        reserved = line_bytes + preamble_bytes(multiple_choice=bool(req.options)) if line_bytes else 0
        budget = await self.plan(asset, req, _with_context(question, context), reserved)
        plan = budget.frames
        before = shapes[-1] if shapes else None
        if before is not None and before.spans == spans:
            same = visual_tokens(before.nframes, before.height, before.width)
            if plan.nframes >= before.nframes or same <= plan.tokens:
                # No new segments: exactly the frames of the round before (count and size), though a shorter prompt
                # (the last round's) left room for more or other ones; new frames would all be extracted anew and
                # match no vLLM cache. The round before's prompt was longer, so its frames fit here too.
                plan = dataclasses.replace(plan, nframes=before.nframes, height=before.height, width=before.width,
                                           tokens=same)
        if shapes is not None:
            shapes.append(_Shape(spans, plan.nframes, plan.width, plan.height))
        probe = asset.probe
        # The frames decord would number (VideoChat-R1.5 picks indices of those); exactly these are extracted.
        total = await self.library.frame_count(asset)
        selection = round_frames(total, probe.fps, min(plan.nframes, total), spans, dense=req.zoom == "dense")
        # Frames outside the glued segments may come from a keyframe near them (decoded alone, no GOP decoded for
        # one frame); the bound is a share of the round's average frame interval, and the times sent are the shown
        # frames' own.
        shown = await self.library.frames(asset, list(selection.indices), width=plan.width, height=plan.height,
                                          snap_s=self.settings.frame_keyframe_snap / selection.sample_fps,
                                          keep=selection.keep)
        started = RoundStarted(number, last, tuple(round(t, 3) for t in shown.times),
                               round(selection.sample_fps, 4), shown.width, shown.height,
                               _tokens(len(shown.jpegs), shown), spans if selection.key_time else (), budget.notes,
                               segment_fps=_rounded(segment_fps(shown.indices, selection.keep, probe.fps)))
        wanted = covered(lines, shown.times)
        sent = thin(wanted, line_bytes)
        prompt = _with_context(with_subtitles(question, sent, multiple_choice=bool(req.options)), context)
        if len(sent) < len(wanted):
            started = dataclasses.replace(started, notes=(*budget.notes, _thinned(len(sent), len(wanted), line_bytes)))
        started = dataclasses.replace(started, subtitles=tuple(sent))
        video = await asyncio.to_thread(shown.data_url)
        started = dataclasses.replace(started, frames_seconds=round(time.perf_counter() - prepared, 3))
        self.metrics.round_frames.observe(len(shown.jpegs))
        self.metrics.round_visual_tokens.observe(started.visual_tokens)
        yield started

        call = RoundCall(req.model, video, prompt, selection.sample_fps, shown.width, shown.height, budget.max_tokens,
                         req.sampling, request_id=f"{request_id_var.get() or 'req'}-r{number}", video_id=asset.id,
                         video_uuid=frames_uuid(asset.id, shown.indices or selection.indices, shown,
                                                selection.sample_fps))
        clock = time.perf_counter()
        text, usage, finish = "", Usage(), None
        splitter = TagSplitter()
        replying = False
        try:
            async with asyncio.timeout(self.settings.round_timeout_s):
                async with aclosing(await self.vllm.round_stream(call)) as steps:
                    async for step in steps:
                        if step.prompt_tokens is not None:
                            usage = Usage(step.prompt_tokens, step.completion_tokens)
                        finish = step.finish_reason or finish
                        if step.text and not replying:
                            replying = True
                            yield Replying(number, round(time.perf_counter() - clock, 3))
                        text += step.text
                        for channel, piece in splitter.feed(step.text):
                            yield Piece(number, channel, piece)
        except TimeoutError as exc:
            raise BackendTimeout(f"Round {number} took longer than {self.settings.round_timeout_s:g} s.",
                                 retry_after=5) from exc
        for channel, piece in splitter.close():
            yield Piece(number, channel, piece)
        seconds = time.perf_counter() - clock
        self.metrics.vllm_call_seconds.observe(seconds)
        self.metrics.rounds.labels("last" if last else "intermediate").inc()
        reply = parse_reply(text)
        # As upstream: a reply without <glue> keeps the segments it was given; one whose glue does not parse drops them.
        segments = spans if reply.glue_text is None else tuple(parse_glue(reply.glue_text, probe.duration_s))
        segments = () if last else segments
        yield RoundFinished(number, last, reply, text, splitter.answer, segments, usage, finish, round(seconds, 3))


@dataclass(frozen=True)
class _Shape:
    """What a round's frames were chosen from: its segments, and the plan's frame count and size."""

    spans: tuple[Span, ...]
    nframes: int
    width: int
    height: int


def _with_context(prompt: str, context: str | None) -> str:
    if not context:
        return prompt
    return (f"Notes from another model that watched the video and heard its audio (they may be wrong):\n"
            f"{context.strip()}\n\n{prompt}")


def _thinned(sent: int, wanted: int, budget: int) -> str:
    return (f"Sent {sent} of the {wanted} subtitle lines this round's frames cover, spread over the round: a round's "
            f"subtitles may take {budget} tokens (VCHAT_SUBTITLE_PROMPT_TOKENS, or what vLLM's context leaves).")


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def frames_uuid(asset_id: str, indices: Sequence[int], shown: Frames, sample_fps: float) -> str:
    """vLLM's ``uuid`` for a round's video: the same for the same frames of the same video at the same size, rate and
    JPEG quality (the JPEG bytes are a function of these), different otherwise; vLLM caches by it."""
    key = f"{asset_id}|{','.join(map(str, indices))}|{shown.width}x{shown.height}|{sample_fps!r}|q{JPEG_QSCALE}"
    return "vchat-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def _tokens(frames: int, shown: Frames) -> int:
    return (frames + frames % 2) // 2 * (shown.height // 28) * (shown.width // 28)

