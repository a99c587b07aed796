"""``GET /v1/models``: what a client can put in ``model``."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway.api.deps import ServicesDep
from gateway.api.routing import GEMINI_SUFFIX
from gateway.backends.vllm import ServedModel
from gateway.errors import BackendUnavailable

router = APIRouter(tags=["models"])


class ModelCard(BaseModel):
    """One entry of the OpenAI model list; adapters (and merged variants) name their base in ``parent``.

    vLLM's ``root`` (a filesystem path on the server) is deliberately not passed on.
    """

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    parent: str | None = None
    max_model_len: int | None = None


class ModelList(BaseModel):
    """The OpenAI list envelope."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get("/v1/models", response_model=ModelList, response_model_exclude_none=True)
async def list_models(services: ServicesDep) -> JSONResponse:
    """The base model and every LoRA adapter vLLM reports (base first); with a Gemini key, each one's ``+gemini``
    variant and the Gemini-only model. If vLLM is down but Gemini is configured, the Gemini entries alone."""
    settings, vllm, gemini = services.settings, services.vllm, services.gemini
    served: list[ServedModel] = []
    if vllm is None and gemini is None:
        raise BackendUnavailable("No model backend is configured.", code="no_backend", retry_after=5)
    if vllm is not None:
        try:
            served = await vllm.list_models()
        except BackendUnavailable:
            if gemini is None:
                raise
    cards = [
        ModelCard(id=model.id, created=model.created, owned_by="vchat", parent=model.parent,
                  max_model_len=model.max_model_len)
        for model in served
    ]
    cards.sort(key=lambda card: (card.id != settings.served_model_name, card.parent is not None, card.id))
    if gemini is not None:
        now = int(time.time())
        cards += [ModelCard(id=f"{card.id}{GEMINI_SUFFIX}", created=card.created, owned_by="vchat", parent=card.id)
                  for card in list(cards)]
        cards.append(ModelCard(id=settings.gemini_model_id, created=now, owned_by="google"))
    # Serialised here rather than re-validated by FastAPI against response_model (kept for the OpenAPI docs).
    return JSONResponse(ModelList(data=cards).model_dump(exclude_none=True))
