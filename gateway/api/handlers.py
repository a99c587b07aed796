"""The one place errors become HTTP responses, always in the OpenAI envelope."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.errors import (
    AuthenticationFailed,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RequestValidationFailed,
    VChatError,
)

logger = logging.getLogger(__name__)


def render_error(error: VChatError) -> JSONResponse:
    """The response for ``error``: its status, the OpenAI envelope, and headers such as Retry-After."""
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers())


def _from_http_exception(exc: StarletteHTTPException) -> VChatError:
    # FastAPI wraps errors raised while it reads the body (e.g. our own size limit) in a 400: unwrap ours.
    for cause in (exc.__cause__, exc.__context__):
        if isinstance(cause, VChatError):
            return cause
    if exc.status_code == 404:
        return NotFound("Not found: no such route.", code="not_found")
    if exc.status_code == 405:
        return MethodNotAllowed("Method not allowed for this route.")
    if exc.status_code == 401:
        return AuthenticationFailed(str(exc.detail))
    if exc.status_code == 400:
        return InvalidRequest(f"{exc.detail}.")
    error = VChatError(str(exc.detail), code=None)
    error.status_code = exc.status_code  # an HTTP status the tree has no class for
    return error


def _from_validation_error(exc: RequestValidationError, content_type: str) -> VChatError:
    first = exc.errors()[0] if exc.errors() else {}
    # "<...>" segments are the tags of the request schema's unions (schemas.py), not places in the body.
    loc = [str(part) for part in first.get("loc", ()) if part != "body" and not str(part).startswith("<")]
    kind = first.get("type")
    if kind == "json_invalid":
        return RequestValidationFailed(
            f"The request body is not valid JSON: {first.get('ctx', {}).get('error', 'parse error')}.",
            code="invalid_json",
        )
    if not loc and kind in ("model_attributes_type", "dict_type", "model_type"):
        # FastAPI reads a body as JSON only when it is declared so; anything else arrives as text or bytes.
        sent = f"Content-Type '{content_type}'" if content_type else "no Content-Type"
        return RequestValidationFailed(
            f"The request body must be a JSON object sent with 'Content-Type: application/json' (got {sent}).",
            code="invalid_content_type",
        )
    message = str(first.get("msg", "invalid value"))
    if kind == "unknown_part_type":
        given = first.get("input", {}).get("type") if isinstance(first.get("input"), dict) else None
        loc.append("type")
        message = f"{message} (got {given!r})" if given is not None else f"{message} (the part has none)"
    param = ".".join(loc) or None
    where = f" at '{param}'" if param else ""
    return RequestValidationFailed(f"Invalid request{where}: {message}.", param=param)


def forget(exc: BaseException) -> None:
    """Drop the tracebacks of ``exc`` and the exceptions chained to it, once it has been answered.

    A traceback holds the frames the error passed through, and a frame that keeps the error in a local (FastAPI's
    ``raise validation_error from e`` with the body it could not parse, for one) closes a reference cycle: only a
    full garbage collection frees it, and megabytes of bytes and text do not count towards one. A broken 250 MB
    body stayed in memory three times over, for good. Without the tracebacks, reference counting frees it at once.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        error.__traceback__ = None
        pending += [error.__cause__, error.__context__]
    if isinstance(exc, RequestValidationError):
        exc._errors = []  # its inputs and the unparsable body (FastAPI keeps both)
        exc.body = None


async def _vchat_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VChatError)
    if exc.status_code >= 500:
        logger.warning("request failed: %s", exc.message, extra={"error_code": exc.code})
    forget(exc)
    return render_error(exc)


async def _http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response = render_error(_from_http_exception(exc))
    if exc.headers:
        response.headers.update(exc.headers)
    forget(exc)
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    response = render_error(_from_validation_error(exc, request.headers.get("content-type", "")))
    forget(exc)
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; unexpected exceptions are rendered by the request middleware."""
    app.add_exception_handler(VChatError, _vchat_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
