"""Pure ASGI middleware around every request: request id, access log, metrics, last-resort 500."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.handlers import render_error
from gateway.errors import ClientGone, RequestTooLarge, VChatError
from gateway.logs import request_id_var
from gateway.memory import release_free_memory
from gateway.metrics import Metrics

logger = logging.getLogger("gateway.access")

# A body this large (a video as a data URL) leaves its chunks' memory to be handed back to the OS when it is done.
TRIM_AFTER_BYTES = 8 * 2**20

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _CLIENT_ID.match(candidate):
                return candidate
    return f"req-{uuid.uuid4().hex}"


class RequestContextMiddleware:
    """Tags each HTTP request with an id (the client's when sane), logs it and records its metrics.

    It is also the last line of defence: an exception nothing else handled becomes a 500 in the
    OpenAI envelope (never a traceback), still carrying the request id.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # Read past the client's leaving: no server error, nobody to answer, and no 500 in the counts.
            logger.info("client disconnected before its request was read")
            if not response_started:
                status = ClientGone.status_code
        except Exception:
            logger.exception("unhandled error")
            if response_started:
                raise
            await render_error(VChatError("Internal server error."))(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.http_requests.labels(template, method, str(status)).inc()
            self.metrics.http_latency.labels(template, method).observe(elapsed)
            # Only the path: query strings and headers may carry credentials.
            logger.info(
                "%s %s %d", method, scope.get("path", ""), status,
                extra={"status": status, "duration_ms": round(elapsed * 1000, 2), "route": template},
            )
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` (413): by Content-Length up front, and by counting as they stream
    in, since a chunked body announces nothing. Data URLs arrive inside JSON bodies, so this bounds them too.

    A body the app reads whole (JSON) is read here, into a list that is dropped the moment the limit is passed.
    Refusing from inside the app's ``receive`` instead (an exception raised through Starlette's ``Request.body``)
    kept the body alive: the exception's traceback holds the frame that gathered the chunks, in a reference cycle
    that only a full garbage collection frees, and a body is bytes the collector does not count, so none came.
    Each refused 1.4 GB body stayed in memory for good. A multipart upload is streamed to disk by its route
    (``multipart.py``, with a cap of its own) and only counted here; its refusal holds nothing but the last chunk.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, trim_after_bytes: int = TRIM_AFTER_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.trim_after_bytes = trim_after_bytes

    def _too_large(self) -> RequestTooLarge:
        return RequestTooLarge(f"The request body is larger than the {self.max_bytes // 2**20} MiB limit.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await render_error(self._too_large())(scope, receive, send)
            return
        if headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data"):
            await self.app(scope, self._counted(receive), send)
            return
        first = await self._whole_body(receive)
        if first is None:
            await render_error(self._too_large())(scope, receive, send)
            await asyncio.to_thread(release_free_memory)
            return
        large = len(first.get("body", b"")) >= self.trim_after_bytes
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()  # nothing more but the client's disconnect

        try:
            await self.app(scope, replay, send)
        finally:
            if large:
                del first
                await asyncio.to_thread(release_free_memory)

    async def _whole_body(self, receive: Receive) -> Message | None:
        """The body as one ``http.request`` message (a disconnect as itself), or None once over the limit."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message  # the client left: the app sees it when it reads
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                chunks.clear()  # freed here and now, not by a later garbage collection
                return None
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                # One chunk joins to itself (no copy); Starlette's own join of one chunk is free too.
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                return {"type": "http.request", "body": body, "more_body": False}

    def _counted(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large()  # made here: a closure holding it would close a reference cycle
            return message

        return counted
