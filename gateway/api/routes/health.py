"""Liveness and readiness probes."""

from __future__ import annotations

import time

from fastapi import APIRouter

from gateway.api.deps import ServicesDep
from gateway.backends.gemini import GeminiBackend
from gateway.backends.vllm import RETRY_AFTER_S
from gateway.errors import BackendUnavailable, VChatError

router = APIRouter(tags=["health"])
# Gemini is a paid, rate-limited API: a probe every few seconds must not call it every time.
GEMINI_HEALTH_TTL_S = 60.0


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive (says nothing about the backends)."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(services: ServicesDep) -> dict[str, object]:
    """Ready when the primary backend works: vLLM (serving its model) when configured, else Gemini.

    Gemini's state is reported but does not make a gateway with a working vLLM unready: merged answers fall back
    to the local model on their own. 503 with the reason otherwise.
    """
    settings, vllm, gemini = services.settings, services.vllm, services.gemini
    backends: dict[str, object] = {}
    if vllm is None and gemini is None:
        raise BackendUnavailable("No model backend is configured.", code="no_backend", retry_after=RETRY_AFTER_S)
    if vllm is not None:
        await vllm.health(settings.ready_timeout_s)
        served = [model.id for model in await vllm.list_models()]
        if settings.served_model_name not in served:
            raise BackendUnavailable(
                f"vLLM is up but does not serve '{settings.served_model_name}' (it serves: {', '.join(served)}).",
                code="model_not_loaded", retry_after=RETRY_AFTER_S,
            )
        backends["vllm"] = {"status": "ok", "models": served}
    if gemini is not None:
        problem = await _gemini_problem(services.gemini_health, gemini, settings.ready_timeout_s)
        if problem is not None and vllm is None:
            raise BackendUnavailable(f"Gemini is unavailable: {problem}", retry_after=RETRY_AFTER_S)
        backends["gemini"] = {"status": "ok" if problem is None else "unavailable", "model": gemini.model,
                              **({"reason": problem} if problem else {})}
    return {"status": "ready", "backends": backends}


async def _gemini_problem(cache: dict[str, object], gemini: GeminiBackend, timeout_s: float) -> str | None:
    checked_at, problem = cache.get("at"), cache.get("problem")
    if isinstance(checked_at, float) and time.monotonic() - checked_at < GEMINI_HEALTH_TTL_S:
        return problem if isinstance(problem, str) else None
    try:
        await gemini.health(timeout_s)
        problem = None
    except VChatError as exc:
        problem = exc.message
    cache.update(at=time.monotonic(), problem=problem)
    return problem
