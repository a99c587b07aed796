"""``respond()``: what every answer shares once its chunks are known — holding the head back until the answer is
committed, keep-alives, the error event and ``[DONE]`` that end a stream, the non-streamed completion folded from
the same chunks, the outcome counted, and the work stopped when the client leaves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field

from fastapi.responses import JSONResponse, Response

from gateway.api.streaming import KEEPALIVE, ChunkPump, Silence, sse, sse_response
from gateway.api.wire import Chunk, Completion, Envelope
from gateway.errors import ClientGone, VChatError

logger = logging.getLogger(__name__)


def _always() -> bool:
    return True


def _uncounted(outcome: str) -> None:
    del outcome


@dataclass(frozen=True)
class Answer:
    """One answer as chunks. ``committed`` turns true once the answer can no longer fail as a whole (a model has
    produced something, or the question was admitted); until then a stream's head is held back, so that errors are
    still plain JSON errors with their status (429, 503). By default the first chunk commits."""

    envelope: Envelope
    chunks: AsyncGenerator[Chunk, None]
    committed: Callable[[], bool] = _always
    counted: Callable[[str], None] = field(default=_uncounted)  # told "ok", "client_gone", "backend_error", …


async def respond(answer: Answer | Completion, *, stream: bool, keepalive_s: float) -> Response:
    """The answer as one ``chat.completion`` (``stream`` false, or a completion a model server made whole) or as SSE
    chunks."""
    if isinstance(answer, Completion):
        return completion_response(answer)
    if not stream:
        return completion_response(await _collect(answer))
    pump = ChunkPump(answer.chunks)
    try:
        # Hold the headers back until the answer is committed: until then, errors (429 included) are JSON errors.
        head: list[Chunk] = []
        while (chunk := await pump.next()) is not None:
            head.append(chunk)
            if answer.committed():
                break
    except BaseException as exc:
        await pump.aclose()
        answer.counted(outcome_of(exc))
        raise
    return sse_response(_events(answer, pump, head, keepalive_s), cleanup=pump.aclose)


def completion_response(completion: Completion) -> JSONResponse:
    return JSONResponse(completion.model_dump(mode="json"))


async def _collect(answer: Answer) -> Completion:
    try:
        # The handler's ClientWatch cancels this when the client leaves (no further model call is made).
        chunks = [chunk async for chunk in answer.chunks]
    except BaseException as exc:
        answer.counted(outcome_of(exc))
        raise
    answer.counted("ok")
    return answer.envelope.completion(chunks)


async def _events(answer: Answer, pump: ChunkPump[Chunk], head: list[Chunk],
                  keepalive_s: float) -> AsyncIterator[bytes]:
    outcome = "ok"
    try:
        for chunk in head:
            yield sse(chunk)
        while True:
            try:
                item = await pump.next(keepalive_s)
            except Silence:
                yield KEEPALIVE  # a silent stretch (a long prefill, waiting for Gemini)
                continue
            if item is None:
                break
            yield sse(item)
    except VChatError as exc:
        # The headers are gone: the error travels as an event, then the stream ends normally.
        outcome = outcome_of(exc)
        logger.warning("answer failed mid-stream: %s", exc.message)
        yield sse(exc.body())
    except BaseException as exc:
        outcome = outcome_of(exc)
        raise
    finally:
        # On a client disconnect this task is being cancelled; stopping the pump (shielded inside) is what
        # closes the model's stream, so vLLM aborts the round.
        await pump.aclose()
        answer.counted(outcome)
    yield sse("[DONE]")


def outcome_of(exc: BaseException) -> str:
    if isinstance(exc, ClientGone | asyncio.CancelledError | GeneratorExit):
        return "client_gone"
    if isinstance(exc, VChatError):
        return "client_error" if exc.status_code < 500 else "backend_error"
    return "internal_error"
