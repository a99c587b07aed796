"""VideoChat-R1.5's iterative perception as a stream of events: N single-turn rounds over vLLM, each
re-sampling the video 1.5x denser inside the time segments the previous round glued."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

from gateway.backends.vllm import VllmBackend
from gateway.errors import BackendTimeout, InvalidRequest
from gateway.logs import request_id_var
from gateway.media.framecache import Frames
from gateway.media.library import Asset, VideoLibrary
from gateway.media.plan import FrameLimits
from gateway.media.sampling import KEY_TIME_SPARE_FRAMES, Span, parse_glue
from gateway.media.zoom import round_frames
from gateway.metrics import Metrics
from gateway.perception.budget import RoundPlan, plan_round
from gateway.settings import Settings
from videochat_r15.prompts import Reply, parse_reply, round_prompt
from videochat_r15.tags import Channel, TagSplitter

logger = logging.getLogger(__name__)
_ENCODER_CACHE = re.compile(r"encoder cache size (\d+)")
_CONTEXT = re.compile(r"maximum (?:model|context) length (?:of |is |\()?(\d+)")


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


@dataclass(frozen=True)
class Replying:
    """vLLM accepted the round and sent its first token (the request can no longer fail as a whole)."""

    round: int


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

    def __init__(self, vllm: VllmBackend, library: VideoLibrary, settings: Settings, metrics: Metrics) -> None:
        self.vllm = vllm
        self.library = library
        self.settings = settings
        self.metrics = metrics
        self.token_limit = settings.max_visual_tokens
        self.context_limit: int | None = None  # a context vLLM's errors reported, when smaller than it lists

    async def plan(self, asset: Asset, req: LoopRequest, prompt: str | None = None) -> RoundPlan:
        """Frames and reply budget of a round with this prompt (default: the glue round's) within vLLM's limits."""
        limits = FrameLimits(max_visual_tokens=self.token_limit, min_pixels=self.settings.frame_min_pixels,
                             max_pixels=self.settings.frame_max_pixels, total_pixels=self.settings.frame_total_pixels,
                             max_frames=req.max_frames, target_fps=req.fps)
        context = await self.vllm.max_model_len(req.model)
        if self.context_limit is not None:
            context = min(context or self.context_limit, self.context_limit)
        return plan_round(asset.probe.video_info(), limits, context=context,
                          prompt=prompt if prompt is not None else round_prompt(req.question, req.options, glue=True),
                          max_tokens=req.max_tokens, max_tokens_set=req.max_tokens_set,
                          spare_frames=KEY_TIME_SPARE_FRAMES)

    async def run(self, asset: Asset, req: LoopRequest,
                  final_context: Callable[[], Awaitable[str | None]] | None = None) -> AsyncGenerator[Event, None]:
        """The rounds' events. ``final_context`` is awaited just before the last round; text it returns is put in
        front of that round's prompt as evidence (how Gemini's analysis reaches the local model)."""
        spans: tuple[Span, ...] = ()
        for number in range(1, req.iterations + 1):
            last = number == req.iterations
            context = await final_context() if last and final_context is not None else None
            for attempt in range(2):
                try:
                    # aclosing: when our consumer closes us at a yield, the round (and with it the vLLM stream, which
                    # is what makes vLLM abort) must close now, not when the garbage collector gets to it.
                    async with aclosing(self._round(asset, req, number, last, spans, context)) as events:
                        async for event in events:
                            if isinstance(event, RoundFinished):
                                spans = event.segments
                            yield event
                    break
                except InvalidRequest as exc:
                    # vLLM names its encoder cache or context when a round does not fit: plan under it and retry.
                    if attempt == 1 or not self._learn(exc.message):
                        raise

    def _learn(self, message: str) -> bool:
        """Take a smaller limit from vLLM's error message; False when it names none."""
        if (found := _ENCODER_CACHE.search(message)) and int(found[1]) < self.token_limit:
            self.token_limit = int(found[1])
            logger.warning("vLLM's encoder cache holds %d visual tokens; planning under it", self.token_limit)
            return True
        if (found := _CONTEXT.search(message)) and int(found[1]) < (self.context_limit or 1 << 62):
            self.context_limit = int(found[1])
            logger.warning("vLLM's context is %d tokens; planning under it", self.context_limit)
            return True
        return False

    async def _round(self, asset: Asset, req: LoopRequest, number: int, last: bool,
                     spans: tuple[Span, ...], context: str | None = None) -> AsyncGenerator[Event, None]:
        prepared = time.perf_counter()
        prompt = _with_context(round_prompt(req.question, req.options, glue=not last), context)
        budget = await self.plan(asset, req, prompt)
        plan = budget.frames
        probe = asset.probe
        # The frames decord would number (VideoChat-R1.5 picks indices of those); exactly these are extracted.
        total = await self.library.frame_count(asset)
        selection = round_frames(total, probe.fps, min(plan.nframes, total), spans)
        shown = await self.library.frames(asset, list(selection.indices), width=plan.width, height=plan.height)
        started = RoundStarted(number, last, tuple(round(t, 3) for t in shown.times),
                               round(selection.sample_fps, 4), shown.width, shown.height,
                               _tokens(len(shown.jpegs), shown), spans if selection.key_time else (), budget.notes)
        video = await asyncio.to_thread(shown.data_url)
        started = dataclasses.replace(started, frames_seconds=round(time.perf_counter() - prepared, 3))
        self.metrics.round_frames.observe(len(shown.jpegs))
        self.metrics.round_visual_tokens.observe(started.visual_tokens)
        yield started

        params: dict[str, object] = {
            "model": req.model,
            "messages": [{"role": "user", "content": [
                {"type": "video_url", "video_url": {"url": video}},
                {"type": "text", "text": prompt},
            ]}],
            "stream_options": {"include_usage": True},
            # One id across the gateway's and vLLM's logs (vLLM names its request after it).
            # A router in front of several vLLM replicas hashes on the video id (k8s/overlays/multi-replica), so
            # every round and follow-up about one video lands where its prefix and encoder caches are.
            "extra_headers": {"X-Request-Id": f"{request_id_var.get() or 'req'}-r{number}",
                              "x-vchat-video-id": asset.id},
            **req.sampling,
            "max_tokens": budget.max_tokens,
            "extra_body": {
                # The gateway's own kwargs, never a client's: vLLM must use exactly these frames at this rate.
                "media_io_kwargs": {"video": {"num_frames": -1, "fps": selection.sample_fps}},
                "mm_processor_kwargs": _keep_size(shown),
            },
        }
        clock = time.perf_counter()
        text, usage, finish = "", Usage(), None
        splitter = TagSplitter()
        replying = False
        try:
            async with asyncio.timeout(self.settings.round_timeout_s):
                async with aclosing(await self.vllm.chat_stream(params)) as chunks:
                    async for chunk in chunks:
                        if chunk.usage is not None:
                            usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                        for choice in chunk.choices:
                            finish = choice.finish_reason or finish
                            delta = choice.delta.content or ""
                            if delta and not replying:
                                replying = True
                                yield Replying(number)
                            text += delta
                            for channel, piece in splitter.feed(delta):
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


def _with_context(prompt: str, context: str | None) -> str:
    if not context:
        return prompt
    return (f"Notes from another model that watched the video and heard its audio (they may be wrong):\n"
            f"{context.strip()}\n\n{prompt}")


def _tokens(frames: int, shown: Frames) -> int:
    return (frames + frames % 2) // 2 * (shown.height // 28) * (shown.width // 28)


def _keep_size(shown: Frames) -> dict[str, object]:
    # Frames are already multiples of 28 inside the budget: pin vLLM's resize window to exactly their area.
    area = shown.width * shown.height
    return {"size": {"shortest_edge": area, "longest_edge": area}}
