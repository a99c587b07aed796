"""An SSE response that always closes its body iterator, so a client leaving stops the work behind it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class ClosingStreamingResponse(StreamingResponse):
    """Starlette cancels a stream when the client disconnects but leaves its async generator suspended until
    garbage collection; closing it here (shielded from that cancellation) runs its cleanup now — which is what
    closes the vLLM stream and makes vLLM abort the round."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()


def sse(payload: dict[str, Any] | str) -> bytes:
    """One server-sent event: a JSON object (compact) or a literal such as ``[DONE]``."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def sse_response(events: AsyncIterator[bytes]) -> ClosingStreamingResponse:
    """The ``text/event-stream`` response every streamed answer uses (no caching, no proxy buffering)."""
    return ClosingStreamingResponse(events, media_type="text/event-stream",
                                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
