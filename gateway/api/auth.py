"""The API-key check on ``/v1/…``, made before a request's body is read: a stranger costs the gateway nothing."""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.handlers import render_error
from gateway.errors import AuthenticationFailed

PROTECTED_PREFIX = "/v1/"


def key_error(authorization: str, keys: list[SecretStr]) -> AuthenticationFailed | None:
    """Why ``Authorization: <authorization>`` is refused, or None when it carries one of ``keys``."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return AuthenticationFailed("Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key")
    presented = token.strip().encode()
    # Compare against every key so timing does not reveal which one (or how much of one) matched.
    matches = [hmac.compare_digest(presented, key.get_secret_value().encode()) for key in keys]
    return None if any(matches) else AuthenticationFailed("Invalid API key.")


class ApiKeyMiddleware:
    """Refuses ``/v1/…`` requests without one of the configured keys (401) before anything reads their body.

    A route dependency would run only after FastAPI had read (and parsed) the whole body: an unauthenticated
    client could make the gateway hold a body up to VCHAT_MAX_REQUEST_BYTES per connection for nothing.
    """

    def __init__(self, app: ASGIApp, keys: list[SecretStr]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.keys and str(scope.get("path", "")).startswith(PROTECTED_PREFIX):
            authorization = next((value.decode("latin-1") for name, value in scope.get("headers", ())
                                  if name == b"authorization"), "")
            refused = key_error(authorization, self.keys)
            if refused is not None:
                await render_error(refused)(scope, receive, send)
                return
        await self.app(scope, receive, send)
