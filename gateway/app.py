"""``create_app(settings)``: builds the FastAPI app; the lifespan opens and closes the backend clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypedDict

import httpx2
from fastapi import FastAPI

from gateway.api.admission import AUTO_FLOOR, Admission, AutoSize
from gateway.api.auth import ApiKeyMiddleware
from gateway.api.handlers import install_error_handlers
from gateway.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from gateway.api.routes import admin, chat, files, health, metrics, models, videos, web
from gateway.api.services import Services
from gateway.backends.gemini import GeminiBackend, GeminiConfig, make_client, scrubbed_transport_logs
from gateway.backends.vllm import VllmBackend
from gateway.media.library import open_library
from gateway.metrics import Metrics
from gateway.perception.loop import PerceptionLoop, RoundModel
from vchat_settings import Settings


class State(TypedDict):
    """What the lifespan hands to every request as ``request.state``: one typed object."""

    services: Services


def gemini_config(settings: Settings) -> GeminiConfig:
    """The Gemini backend's view of the settings."""
    assert settings.gemini_api_key is not None
    return GeminiConfig(
        api_key=settings.gemini_api_key, model=settings.gemini_model,
        base_url=str(settings.gemini_base_url).rstrip("/") if settings.gemini_base_url else None,
        timeout_s=settings.gemini_timeout_s, inline_max_bytes=settings.gemini_inline_max_bytes,
        upload_ready_timeout_s=settings.gemini_upload_ready_timeout_s, video_fps=settings.gemini_video_fps,
        media_resolution=settings.gemini_media_resolution, max_retries=settings.gemini_max_retries,
    )


def _itself(vllm: VllmBackend) -> RoundModel:
    return vllm


def create_app(settings: Settings, *, vllm_transport: httpx2.AsyncBaseTransport | None = None,
               round_model: Callable[[VllmBackend], RoundModel] = _itself) -> FastAPI:
    """Build the gateway. ``vllm_transport`` lets a test stand in for vLLM's network (failure shapes only);
    ``round_model`` gives the perception loop what runs its rounds, given the vLLM backend (the backend itself; a
    benchmark wraps it to record each round's call)."""
    app_metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        async with AsyncExitStack() as stack:
            media = await stack.enter_async_context(open_library(settings, app_metrics))
            vllm = perception = None
            if settings.vllm_base is not None:
                limits = httpx2.Limits(max_connections=256, max_keepalive_connections=64)
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(transport=vllm_transport, limits=limits, trust_env=False))
                api_key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
                vllm = VllmBackend(http, settings.vllm_base, api_key, settings.vllm_timeout_s)
                perception = PerceptionLoop(round_model(vllm), media, settings, app_metrics)
            gemini = None
            if settings.gemini_api_key is not None:
                config = gemini_config(settings)
                stack.enter_context(scrubbed_transport_logs(config.api_key.get_secret_value()))
                gemini_http = await stack.enter_async_context(httpx2.AsyncClient(trust_env=False))
                client = make_client(config, gemini_http)
                stack.callback(client.close)
                gemini = GeminiBackend(client, config)
                stack.push_async_callback(gemini.aclose)
            admission = Admission(settings.max_active_jobs or AUTO_FLOOR, settings.max_queued_jobs, app_metrics)
            auto_size = AutoSize(admission, vllm) if vllm is not None and settings.max_active_jobs is None else None
            yield State(services=Services(settings, app_metrics, media, admission, vllm=vllm, perception=perception,
                                          gemini=gemini, auto_size=auto_size))

    app = FastAPI(
        title="vChat gateway",
        summary="Video question answering with an OpenAI-compatible API.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Outermost last: request context, then the key check, then the body limit, so no body is read for a stranger.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys)
    app.add_middleware(RequestContextMiddleware, metrics=app_metrics)

    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(web.router)  # the page at / (public; it sends the key on its /v1 calls)
    app.include_router(admin.router)
    for router in (models.router, chat.router, files.router, videos.router):  # /v1/…: ApiKeyMiddleware guards them
        app.include_router(router)
    return app
