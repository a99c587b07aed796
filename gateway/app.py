"""``create_app(settings)``: builds the FastAPI app; the lifespan opens and closes the backend clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

import httpx2
from fastapi import Depends, FastAPI

from gateway.api.deps import require_api_key
from gateway.api.handlers import install_error_handlers
from gateway.api.middleware import RequestContextMiddleware
from gateway.api.routes import chat, health, metrics, models
from gateway.backends.vllm import VllmBackend
from gateway.metrics import Metrics
from gateway.settings import Settings


class State(TypedDict):
    """What the lifespan hands to every request as ``request.state``."""

    vllm: VllmBackend | None


def create_app(settings: Settings, *, vllm_transport: httpx2.AsyncBaseTransport | None = None) -> FastAPI:
    """Build the gateway. ``vllm_transport`` lets a test stand in for vLLM's network (failure shapes only)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        if settings.vllm_base is None:
            yield State(vllm=None)
            return
        limits = httpx2.Limits(max_connections=256, max_keepalive_connections=64)
        async with httpx2.AsyncClient(transport=vllm_transport, limits=limits, trust_env=False) as http:
            api_key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
            yield State(vllm=VllmBackend(http, settings.vllm_base, api_key, settings.vllm_timeout_s))

    app = FastAPI(
        title="vChat gateway",
        summary="Video question answering with an OpenAI-compatible API.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)

    app.include_router(health.router)
    app.include_router(metrics.router)
    for router in (models.router, chat.router):
        app.include_router(router, dependencies=[Depends(require_api_key)])
    return app
