"""``/admin/adapters``: add, list and remove LoRA adapters at run time (every vLLM replica), behind the admin key."""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from adapters.registry import AdapterError, AdapterRegistry
from adapters.replicas import ReplicaResult, load_everywhere, unload_everywhere
from adapters.validate import AdapterInfo
from gateway.api.deps import ServicesDep
from gateway.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    VChatError,
    excerpt,
)
from vchat_settings import Settings


def require_admin(request: Request, services: ServicesDep) -> None:
    settings = services.settings
    if settings.admin_key is None:
        raise PermissionDenied("The admin routes are off (set VCHAT_ADMIN_KEY).", code="admin_disabled")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                             settings.admin_key.get_secret_value().encode()):
        raise AuthenticationFailed("Invalid or missing admin key.")


router = APIRouter(tags=["admin"], dependencies=[Depends(require_admin)])


class AddAdapter(BaseModel):
    model_config = ConfigDict(extra="ignore")

    path: str = Field(min_length=1, description="Folder of the exported adapter, as the gateway sees it.")
    name: str | None = Field(None, description="Model name to serve it under (default: the folder's name).")
    replace: bool = False


def _registry(settings: Settings) -> AdapterRegistry:
    return AdapterRegistry(settings.adapters_dir, base_models=settings.base_model_names,
                           max_rank=settings.max_lora_rank)


def _card(info: AdapterInfo) -> dict[str, Any]:
    return {"id": info.name, "object": "adapter", "rank": info.rank, "alpha": info.alpha,
            "target_modules": list(info.target_modules), "base_model": info.base_model, "manifest": info.manifest}


def _replicas(results: list[ReplicaResult]) -> list[dict[str, Any]]:
    return [{"url": r.url, "ok": r.ok, "detail": r.detail} for r in results]


def _translate(exc: AdapterError) -> VChatError:
    if exc.status == 404:
        return NotFound(exc.message, param="name", code=exc.code)
    if exc.status == 409:
        return Conflict(exc.message, param="name", code=exc.code)
    return InvalidRequest(exc.message, param="path", code=exc.code)


@router.get("/admin/adapters")
async def list_adapters(services: ServicesDep) -> JSONResponse:
    settings = services.settings
    infos = await asyncio.to_thread(_registry(settings).list)
    return JSONResponse({"object": "list", "data": [_card(info) for info in infos]})


@router.post("/admin/adapters")
async def add_adapter(body: AddAdapter, services: ServicesDep) -> JSONResponse:
    settings = services.settings
    """Validate (vLLM's rules, before vLLM is touched), copy into the adapters volume, load into every replica."""
    try:
        info = await asyncio.to_thread(_registry(settings).add, Path(body.path), body.name, replace=body.replace)
    except AdapterError as exc:
        raise _translate(exc) from exc
    key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
    results = await load_everywhere(settings.replicas, info.name, str(info.path.resolve()),
                                    dns=settings.vllm_replicas_dns, api_key=key)
    if not all(r.ok for r in results):
        failed = ", ".join(f"{r.url} ({r.detail})" for r in results if not r.ok)
        raise BackendUnavailable(f"Adapter '{info.name}' was added but not loaded everywhere: {failed}.",
                                 code="adapter_not_loaded", retry_after=5)
    return JSONResponse({**_card(info), "replicas": _replicas(results)}, status_code=201)


@router.delete("/admin/adapters/{name}")
async def remove_adapter(name: str, services: ServicesDep) -> JSONResponse:
    settings = services.settings
    registry = _registry(settings)
    if await asyncio.to_thread(registry.get, name) is None:
        raise NotFound(f"No adapter named {excerpt(name)}.", param="name", code="adapter_not_found")
    key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
    results = await unload_everywhere(settings.replicas, name, dns=settings.vllm_replicas_dns, api_key=key)
    try:
        await asyncio.to_thread(registry.remove, name)
    except AdapterError as exc:
        raise _translate(exc) from exc
    return JSONResponse({"id": name, "object": "adapter", "deleted": True, "replicas": _replicas(results)})
