"""An SSE response that always closes its body iterator, so a client leaving stops the work behind it."""

from __future__ import annotations

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
