"""Pure ASGI middleware around every request: request id, access log, metrics, last-resort 500."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.handlers import render_error
from gateway.errors import ClientGone, RequestTooLarge, VChatError
from gateway.logs import request_id_var
from gateway.metrics import Metrics

logger = logging.getLogger("gateway.access")

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
    in, since a chunked body announces nothing. Data URLs arrive inside JSON bodies, so this bounds them too."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = RequestTooLarge(f"The request body is larger than the {self.max_bytes // 2**20} MiB limit.")
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await render_error(too_large)(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large
            return message

        await self.app(scope, counted, send)
