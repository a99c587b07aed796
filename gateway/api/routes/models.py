"""``GET /v1/models``: what a client can put in ``model``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway.api.deps import SettingsDep, VllmDep

router = APIRouter(tags=["models"])


class ModelCard(BaseModel):
    """One entry of the OpenAI model list; adapters name their base model in ``parent``.

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
async def list_models(vllm: VllmDep, settings: SettingsDep) -> JSONResponse:
    """The base model and every LoRA adapter vLLM reports, base first."""
    served = await vllm.list_models()
    cards = [
        ModelCard(
            id=model.id, created=model.created, owned_by="vchat",
            parent=model.parent, max_model_len=model.max_model_len,
        )
        for model in served
    ]
    cards.sort(key=lambda card: (card.id != settings.served_model_name, card.parent is None, card.id))
    # Serialised here rather than re-validated by FastAPI against response_model (kept for the OpenAPI docs).
    return JSONResponse(ModelList(data=cards).model_dump(exclude_none=True))
