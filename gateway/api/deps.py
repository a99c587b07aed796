"""FastAPI dependencies: typed access to what the lifespan built (the API-key check is ``auth.py``'s middleware)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from gateway.backends.vllm import VllmBackend
from gateway.errors import BackendUnavailable
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
