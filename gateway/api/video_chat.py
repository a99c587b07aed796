"""Answering a chat request about a video: resolve it, run the perception loop under admission control,
and answer as one ``chat.completion`` or as SSE chunks — both built from the same chunk stream."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

from gateway.api.admission import Admission
from gateway.api.answers import AnswerBuilder
from gateway.api.respond import Answer
from gateway.api.routing import ModelRoute
from gateway.api.schemas import ChatCompletionRequest
from gateway.api.services import Services
from gateway.api.video_refs import VideoRef, resolve
from gateway.api.wire import Chunk
from gateway.errors import InvalidRequest
from gateway.media.library import Asset, VideoLibrary
from gateway.perception.loop import LoopRequest, Piece, Replying, RoundFinished
from gateway.perception.merge import GeminiFinished, GeminiText, Merger, Sources
from vchat_settings import Settings
from videochat_r15.prompts import split_options

logger = logging.getLogger(__name__)

DEFAULT_QUESTION = "Describe what happens in the video."


def loop_request(body: ChatCompletionRequest, ref: VideoRef, model: str | None, settings: Settings) -> LoopRequest:
    """The loop's view of the request; refuses perception knobs outside the configured limits."""
    iterations = body.vchat.iterations or settings.default_iterations
    if iterations > settings.max_iterations:
        raise InvalidRequest(f"vchat.iterations may be at most {settings.max_iterations}, got {iterations}.",
                             param="vchat.iterations", code="invalid_value")
    user = next((m for m in reversed(body.messages) if m.role == "user"), None)
    text = user.text() if user is not None else ""
    if ref.from_text:
        text = text.replace(ref.value, " ")
    question, options = split_options(" ".join(text.split()) if "\n" not in text else text.strip())
    asked = body.max_completion_tokens or body.max_tokens
    return LoopRequest(
        model=model or "", question=question.strip() or DEFAULT_QUESTION, options=options, iterations=iterations,
        max_frames=body.vchat.max_frames or settings.max_frames, fps=body.vchat.fps or settings.sample_fps,
        sampling=body.sampling(), max_tokens=asked or settings.round_max_tokens, max_tokens_set=asked is not None,
        zoom=body.vchat.zoom or settings.zoom, subtitles=body.vchat.subtitles or settings.subtitles,
    )


class _Job:
    """One answer's chunk stream; ``committed`` turns true once a model has produced something."""

    def __init__(self, merger: Merger, admission: Admission, library: VideoLibrary, builder: AnswerBuilder,
                 include_usage: bool, early_progress: bool, kv_tokens: int = 0) -> None:
        self.merger, self.admission, self.library, self.builder = merger, admission, library, builder
        self.kv_tokens = kv_tokens
        self.include_usage = include_usage
        self.early_progress = early_progress
        self.committed = False

    async def chunks(self) -> AsyncGenerator[Chunk, None]:
        builder = self.builder
        async with self.admission.slot(self.kv_tokens), self.library.store.pinned(builder.asset.id):
            yield builder.start()
            if self.early_progress:
                # Video accepted, frames planned, question admitted: what is left can only fail on the model
                # servers' side, and that travels as an error event. Say so at once (the first byte in well under
                # a second on a cached video) rather than holding the headers through frames and prefill.
                self.committed = True
                yield builder.accepted()
            async with aclosing(self.merger.run(builder.asset, builder.req)) as events:
                async for event in events:
                    if isinstance(event, Replying | Piece | RoundFinished | GeminiText | GeminiFinished):
                        self.committed = True
                    for chunk in builder.on_event(event):
                        yield chunk
            for chunk in builder.finish(self.include_usage):
                yield chunk


async def answer_about_video(services: Services, body: ChatCompletionRequest, ref: VideoRef,
                             route: ModelRoute) -> Answer:
    """Resolve the video, plan the first round and what its rounds hold in vLLM, size admission; the answer's chunks
    then run the rounds under an admission slot. Errors until the question is admitted (and, unless the progress line
    goes out early, until a model answers) are plain JSON errors."""
    library, settings = services.media, services.settings
    clock = time.perf_counter()
    # Gemini alone watches a YouTube link by its URL: nothing to download (unless Gemini cannot fetch it).
    linked = await library.linked_or_cached(ref.value) if route.local is None and ref.kind == "url" else None
    asset = linked if linked is not None else await resolve(ref, library)
    video_seconds = round(time.perf_counter() - clock, 3)
    req = loop_request(body, ref, route.local, settings)
    loop = services.perception if route.local is not None else None
    kv_tokens = 0
    if loop is not None:
        assert isinstance(asset, Asset)  # linked only when no local model answers
        await loop.plan(asset, req)  # a video that cannot be sampled (or fit) is refused before anything starts
        # Admitted by what its rounds hold in vLLM's KV cache, not by a whole context each (when vLLM's cache is known).
        kv_tokens = await loop.kv_tokens(asset, req, evidence=route.gemini and route.mode == "gemini_context")
    gemini = services.gemini if route.gemini else None
    merger = Merger(Sources(loop, gemini, route.mode, route.local_down), settings.gemini_deadline_s)
    builder = AnswerBuilder(body.model, asset, req, merged=route.mode, video_seconds=video_seconds)
    # A non-streamed answer is folded from the chunks, usage chunk included.
    include_usage = not body.stream or bool(body.stream_options and body.stream_options.include_usage)
    if loop is not None and services.auto_size is not None:
        await services.auto_size.ensure(req.model)
    # The progress line goes out at once only when the local model is to run: a Gemini-only answer (or one whose vLLM
    # is known to be down) keeps its headers until Gemini answers, so that both failing is still a plain 503.
    early = body.stream and loop is not None and not route.local_down
    job = _Job(merger, services.admission, library, builder, include_usage, early, kv_tokens)
    return Answer(builder.envelope, job.chunks(), committed=lambda: job.committed,
                  counted=lambda outcome: services.metrics.answers.labels(outcome).inc())
