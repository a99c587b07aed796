"""FastAPI dependencies: typed access to what the lifespan built, and the API-key check."""

from __future__ import annotations

import hmac
from typing import Annotated, cast

from fastapi import Depends, Request

from gateway.backends.vllm import VllmBackend
from gateway.errors import AuthenticationFailed, BackendUnavailable
from gateway.metrics import Metrics
from gateway.settings import Settings


def _settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def _metrics(request: Request) -> Metrics:
    return cast(Metrics, request.app.state.metrics)


def vllm_backend(request: Request) -> VllmBackend:
    """The vLLM backend, or 503 ``no_backend`` when none is configured."""
    backend = cast(VllmBackend | None, request.state.vllm)
    if backend is None:
        raise BackendUnavailable("No local model is configured (VCHAT_VLLM_URL is empty).",
                                 code="no_backend")
    return backend


SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
VllmDep = Annotated[VllmBackend, Depends(vllm_backend)]


def require_api_key(request: Request, settings: SettingsDep) -> None:
    """When API keys are configured, accept only ``Authorization: Bearer <one of them>``."""
    if not settings.api_keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key"
        )
    presented = token.strip().encode()
    # Compare against every key so timing does not reveal which one (or how much of one) matched.
    matches = [hmac.compare_digest(presented, key.get_secret_value().encode()) for key in settings.api_keys]
    if not any(matches):
        raise AuthenticationFailed("Invalid API key.")
