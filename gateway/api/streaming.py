"""An SSE response that always closes its body iterator, so a client leaving stops the work behind it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, Generic, TypeVar, cast

import anyio
from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from gateway.api.wire import Chunk


class _ClientLeft(Exception):
    """Raised by the response's ``send`` once the client has disconnected (uvicorn's own send then does nothing)."""


class ClosingStreamingResponse(StreamingResponse):
    """A stream that stops for certain when its client leaves, and closes its body iterator right then (shielded):
    that cleanup is what closes the vLLM stream and makes vLLM abort the round.

    Starlette's own stop is not certain. It cancels the stream through an anyio cancel scope, which skips a task
    whose awaited future is already done; a body that never waits on a pending future (chunks already queued,
    uvicorn's ``send`` a silent no-op once the client is gone) is never cancelled, and the model generates on for
    nobody — what happened under load. Here a watcher cancels the stream task directly (asyncio's ``cancel`` always
    lands at the next await), and ``send`` raises once the client is gone, so even a body that never awaits stops
    at its next chunk. A generator left suspended is otherwise only closed when garbage collected.
    """

    def __init__(self, content: AsyncIterator[bytes], *, cleanup: Callable[[], Awaitable[None]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def send_while_connected(message: Message) -> None:
            if gone.is_set():
                raise _ClientLeft
            await send(message)

        stream = asyncio.ensure_future(self.stream_response(send_while_connected))

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            stream.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await stream
        except (_ClientLeft, asyncio.CancelledError):
            if not gone.is_set():
                raise  # cancelled from outside (server shutdown): pass it on
        finally:
            watcher.cancel()
            stream.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.gather(stream, watcher, return_exceptions=True)
                close = getattr(self.body_iterator, "aclose", None)
                if close is not None:
                    await close()
                # A body the client left before it started never runs its own cleanup: this does.
                if self._cleanup is not None:
                    await self._cleanup()


def sse(payload: Chunk | dict[str, Any] | str) -> bytes:
    """One server-sent event: a chunk, a JSON object (compact) or a literal such as ``[DONE]``."""
    if isinstance(payload, Chunk):
        return b"data: " + payload.model_dump_json().encode() + b"\n\n"
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def sse_response(events: AsyncIterator[bytes],
                 cleanup: Callable[[], Awaitable[None]] | None = None) -> ClosingStreamingResponse:
    """The ``text/event-stream`` response every streamed answer uses (no caching, no proxy buffering)."""
    return ClosingStreamingResponse(events, cleanup=cleanup, media_type="text/event-stream",
                                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: clients ignore it


_Item = TypeVar("_Item")


class Silence(Exception):
    """``ChunkPump.next``: nothing arrived within the keep-alive interval."""


class ChunkPump(Generic[_Item]):
    """Runs a chunk generator to the end in one task of its own and hands the chunks over through a small queue.

    Every round's timeouts and cancel scopes then live in one task (the handler and the response body run in
    different tasks), and the response can send keep-alive comments while a round is silent: proxies keep the
    stream open, and a client that left is noticed at the next write rather than at the next model token.
    """

    _END = object()

    def __init__(self, chunks: AsyncGenerator[_Item, None], maxsize: int = 64) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize)
        self._task = asyncio.create_task(self._run(chunks))

    async def _run(self, chunks: AsyncGenerator[_Item, None]) -> None:
        async with aclosing(chunks):
            try:
                async for chunk in chunks:
                    await self._queue.put(chunk)
            except Exception as exc:  # handed to the consumer, which raises it
                await self._queue.put(exc)
                return
        await self._queue.put(self._END)

    async def next(self, keepalive_s: float | None = None) -> _Item | None:
        """The next chunk; None at the end. With ``keepalive_s``, raises ``Silence`` when nothing came in that long
        (the pump goes on: call again)."""
        if keepalive_s is None:
            item = await self._queue.get()
        else:
            # Not asyncio.wait_for: on Python 3.11 it returns the result and swallows the cancellation when the get
            # completes as the task is cancelled — with a full queue (a client slower than the model) nearly every
            # time, so a client that left never stopped the stream and vLLM generated on for nobody.
            try:
                async with asyncio.timeout(keepalive_s):
                    item = await self._queue.get()
            except TimeoutError:
                raise Silence from None
        if item is self._END:
            return None
        if isinstance(item, Exception):
            raise item
        return cast(_Item, item)  # the queue holds the generator's items, its error and _END

    async def aclose(self) -> None:
        """Stop the pump (cancelling the work behind it) and wait for its cleanup, even while being cancelled."""
        self._task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(self._task, return_exceptions=True)
