"""The one place errors become HTTP responses, always in the OpenAI envelope."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from gateway.errors import (
    AuthenticationFailed,
    ClientGone,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RequestValidationFailed,
    VChatError,
    excerpt,
    param_name,
)

logger = logging.getLogger(__name__)


def render_error(error: VChatError) -> JSONResponse:
    """The response for ``error``: its status, the OpenAI envelope, and headers such as Retry-After."""
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers())


def _from_http_exception(exc: StarletteHTTPException) -> VChatError:
    # FastAPI wraps errors raised while it reads the body (our size limit, a client leaving, JSON its parser gives up
    # on) in a 400 "There was an error parsing the body": unwrap them.
    for cause in (exc.__cause__, exc.__context__):
        if isinstance(cause, VChatError):
            return cause
        if isinstance(cause, ClientDisconnect):
            return ClientGone("The client closed the connection while sending the request body.")
    if exc.status_code == 400 and isinstance(exc.__cause__, Exception):
        return _unreadable_body(exc.__cause__)
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


def _unreadable_body(cause: Exception) -> RequestValidationFailed:
    """The one shape of a body that is not JSON, whichever way the parser failed (every one is 422 invalid_json)."""
    if isinstance(cause, RecursionError):
        why = "it is nested too deeply"
    elif isinstance(cause, UnicodeDecodeError):
        why = f"it is not UTF-8 text (byte {cause.start} is 0x{cause.object[cause.start]:02x})"
    else:
        why = "it could not be parsed"
    return RequestValidationFailed(f"The request body is not valid JSON: {why}.", code="invalid_json")


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def _from_validation_error(exc: RequestValidationError, content_type: str) -> VChatError:
    first = exc.errors()[0] if exc.errors() else {}
    # "<...>" segments are the tags of the request schema's unions (schemas.py), not places in the body.
    loc = [param_name(str(part)) for part in first.get("loc", ()) if part != "body" and not str(part).startswith("<")]
    kind = first.get("type")
    ctx = first.get("ctx") or {}
    if kind == "json_invalid":
        where = f" (at character {loc[0]})" if loc else ""
        return RequestValidationFailed(
            f"The request body is not valid JSON: {ctx.get('error', 'parse error')}{where}.", code="invalid_json",
        )
    if not loc and kind == "missing":
        return RequestValidationFailed("The request body is empty; send a JSON object.", code="invalid_json")
    if not loc and kind in ("model_attributes_type", "dict_type", "model_type"):
        given = first.get("input")
        if not isinstance(given, bytes):  # FastAPI parsed it as JSON: the JSON is of the wrong kind
            return RequestValidationFailed(
                f"The request body must be a JSON object, not {_json_kind(given)}.", code="invalid_json",
            )
        # FastAPI reads a body as JSON only when it is declared so; anything else arrives as bytes.
        sent = f"Content-Type {excerpt(content_type)}" if content_type else "no Content-Type"
        return RequestValidationFailed(
            f"The request body must be a JSON object sent with 'Content-Type: application/json' (got {sent}).",
            code="invalid_content_type",
        )
    message = str(first.get("msg", "invalid value"))
    if kind == "too_long":  # pydantic's words ("Dictionary … after validation, not more") are its own
        given = first.get("input")
        items = "entries" if isinstance(given, dict) else "items"
        count = len(given) if isinstance(given, list | dict) else ctx.get("actual_length")
        message = f"At most {ctx.get('max_length')} {items} are allowed, got {count}"
    if kind == "unknown_part_type":
        given = first.get("input", {}).get("type") if isinstance(first.get("input"), dict) else None
        loc.append("type")
        message = f"{message} (got {excerpt(given)})" if given is not None else f"{message} (the part has none)"
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


def _logged(error: VChatError) -> VChatError:
    if error.status_code >= 500:
        logger.warning("request failed: %s", error.message, extra={"error_code": error.code})
    elif isinstance(error, ClientGone):  # not an error of ours, but worth a line: work stopped for it
        logger.info("client disconnected: %s", error.message)
    return error


async def _vchat_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VChatError)
    response = render_error(_logged(exc))
    forget(exc)
    return response


async def _http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response = render_error(_logged(_from_http_exception(exc)))
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
