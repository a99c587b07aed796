"""Answering a chat request about a video: resolve it, run the perception loop under admission control,
and answer as one ``chat.completion`` or as SSE chunks — both built from the same chunk stream."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, cast

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from gateway.api.admission import Admission, AutoSize
from gateway.api.answers import AnswerBuilder, merge
from gateway.api.routing import ModelRoute
from gateway.api.schemas import ChatCompletionRequest
from gateway.api.streaming import KEEPALIVE, ChunkPump, Silence, sse, sse_response
from gateway.api.video_refs import VideoRef, resolve
from gateway.backends.gemini import GeminiBackend
from gateway.errors import ClientGone, InvalidRequest, VChatError
from gateway.media.library import Asset, VideoLibrary
from gateway.metrics import Metrics
from gateway.perception.loop import LoopRequest, PerceptionLoop, Piece, Replying, RoundFinished
from gateway.perception.merge import GeminiFinished, GeminiText, Merger, Sources
from gateway.settings import Settings
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
    )


class _Job:
    """One answer's chunk stream; ``committed`` turns true once a model has produced something."""

    def __init__(self, merger: Merger, admission: Admission, library: VideoLibrary, builder: AnswerBuilder,
                 include_usage: bool, early_progress: bool) -> None:
        self.merger, self.admission, self.library, self.builder = merger, admission, library, builder
        self.include_usage = include_usage
        self.early_progress = early_progress
        self.committed = False

    async def chunks(self) -> AsyncGenerator[dict[str, Any], None]:
        builder = self.builder
        async with self.admission.slot(), self.library.store.pinned(builder.asset.id):
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



async def answer_about_video(body: ChatCompletionRequest, ref: VideoRef, route: ModelRoute,
                             request: Request) -> Response:
    """Resolve the video, then stream or return the answer. Errors before a model answers are plain JSON errors."""
    state = request.state
    library = cast(VideoLibrary, state.media)
    metrics = cast(Metrics, request.app.state.metrics)
    settings = cast(Settings, request.app.state.settings)
    clock = time.perf_counter()
    # Gemini alone watches a YouTube link by its URL: nothing to download (unless Gemini cannot fetch it).
    linked = await library.linked_or_cached(ref.value) if route.local is None and ref.kind == "url" else None
    asset = linked if linked is not None else await resolve(ref, library)
    video_seconds = round(time.perf_counter() - clock, 3)
    req = loop_request(body, ref, route.local, settings)
    loop = cast(PerceptionLoop | None, state.perception) if route.local is not None else None
    if loop is not None:
        assert isinstance(asset, Asset)  # linked only when no local model answers
        await loop.plan(asset, req)  # a video that cannot be sampled (or fit) is refused before anything starts
    gemini = cast(GeminiBackend | None, state.gemini) if route.gemini else None
    merger = Merger(Sources(loop, gemini, route.mode, route.local_down), settings.gemini_deadline_s)
    builder = AnswerBuilder(body.model, asset, req, merged=route.mode, video_seconds=video_seconds)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    if loop is not None and (auto_size := cast(AutoSize | None, state.auto_size)) is not None:
        await auto_size.ensure(req.model)
    # The progress line goes out at once only when the local model is to run: a Gemini-only answer (or one whose vLLM
    # is known to be down) keeps its headers until Gemini answers, so that both failing is still a plain 503.
    early = body.stream and loop is not None and not route.local_down
    job = _Job(merger, cast(Admission, state.admission), library, builder, include_usage, early)
    if not body.stream:
        try:
            collected = await _unless_client_leaves(request, _collect(job.chunks()))
        except BaseException as exc:
            metrics.answers.labels(_outcome(exc)).inc()
            raise
        metrics.answers.labels("ok").inc()
        return JSONResponse(merge(collected, builder))
    pump = ChunkPump(job.chunks())
    try:
        # Hold the headers back until the question is admitted: until then, errors (429 included) are JSON errors.
        head: list[dict[str, Any]] = []
        while (chunk := await pump.next()) is not None:
            head.append(chunk)
            if job.committed:
                break
    except BaseException as exc:
        await pump.aclose()
        metrics.answers.labels(_outcome(exc)).inc()
        raise

    async def body_stream() -> AsyncIterator[bytes]:
        outcome = "ok"
        try:
            for chunk in head:
                yield sse(chunk)
            while True:
                try:
                    item = await pump.next(settings.sse_keepalive_s)
                except Silence:
                    yield KEEPALIVE  # a silent stretch (a long prefill, waiting for Gemini)
                    continue
                if item is None:
                    break
                yield sse(item)
        except VChatError as exc:
            # The headers are gone: the error travels as an event, then the stream ends normally.
            outcome = _outcome(exc)
            logger.warning("answer failed mid-stream: %s", exc.message)
            yield sse(exc.body())
        except BaseException as exc:
            outcome = _outcome(exc)
            raise
        finally:
            # On a client disconnect this task is being cancelled; stopping the pump (shielded inside) is what
            # closes the vLLM stream, so vLLM aborts the round.
            await pump.aclose()
            metrics.answers.labels(outcome).inc()
        yield sse("[DONE]")

    return sse_response(body_stream(), cleanup=pump.aclose)


async def _collect(chunks: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in chunks]


async def _unless_client_leaves(request: Request, work: Any) -> list[dict[str, Any]]:
    """Run ``work``; if the client disconnects first, cancel it (no further vLLM call is made)."""
    task: asyncio.Task[list[dict[str, Any]]] = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ClientGone("The client closed the connection.")
    finally:
        if not task.done():
            task.cancel()


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, ClientGone | asyncio.CancelledError | GeneratorExit):
        return "client_gone"
    if isinstance(exc, VChatError):
        return "client_error" if exc.status_code < 500 else "backend_error"
    return "internal_error"
