"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gateway.api.deps import SettingsDep
from gateway.backends.vllm import RETRY_AFTER_S, VllmBackend
from gateway.errors import BackendUnavailable

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive (says nothing about the backends)."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request, settings: SettingsDep) -> dict[str, object]:
    """Every configured backend answers and serves its model; otherwise 503 with the reason."""
    vllm: VllmBackend | None = request.state.vllm
    if vllm is None:
        raise BackendUnavailable("No model backend is configured.", code="no_backend",
                                 retry_after=RETRY_AFTER_S)
    await vllm.health(settings.ready_timeout_s)
    served = [model.id for model in await vllm.list_models()]
    if settings.served_model_name not in served:
        raise BackendUnavailable(
            f"vLLM is up but does not serve '{settings.served_model_name}' (it serves: {', '.join(served)}).",
            code="model_not_loaded", retry_after=RETRY_AFTER_S,
        )
    return {"status": "ready", "backends": {"vllm": {"status": "ok", "models": served}}}
