"""Watches a request's client while its handler works, so nothing starts for a client that has already left."""

from __future__ import annotations

import asyncio
from types import TracebackType

from fastapi import Request

from gateway.errors import ClientGone


class ClientWatch:
    """``async with ClientWatch(request):`` — if the client disconnects inside the block, the handler's task is
    cancelled at once and the block raises ``ClientGone``.

    Before a response starts nothing else notices a client leave: a handler waiting for the model list, for a
    video's fetch or for an admission slot went on, and under load started fetches, ffmpeg runs and vLLM rounds
    minutes after its client had gone. The watch reads only ``http.disconnect``: by the time a handler runs, FastAPI
    has read the whole body, so the receive channel has nothing else to give. uvicorn repeats ``http.disconnect``
    to every later ``receive``, so a response that takes over the watch still sees it.
    """

    def __init__(self, request: Request) -> None:
        self._receive = request.receive
        self._gone = False
        self._task: asyncio.Task[object] | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ClientWatch:
        self._task = asyncio.current_task()
        self._watcher = asyncio.create_task(self._watch())
        return self

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._gone = True
        assert self._task is not None
        self._task.cancel()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        # No await here: the watcher can only cancel the handler while the handler waits inside the block, so the
        # cancellation it sends is always the one that ends the block.
        assert self._watcher is not None and self._task is not None
        self._watcher.cancel()
        if self._gone:
            self._task.uncancel()  # the cancellation was ours: the handler ends with ClientGone, not cancelled
            raise ClientGone("The client closed the connection.") from None
