"""Which answerers a model name (and ``vchat.merge``) selects: a local model (base or adapter), Gemini, or both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.api.services import Services
from gateway.errors import BackendUnavailable, InvalidRequest, ModelNotFound, excerpt
from gateway.perception.merge import MergeMode

GEMINI_SUFFIX = "+gemini"


@dataclass(frozen=True)
class ModelRoute:
    """What answers a request for ``name``."""

    name: str
    local: str | None  # the vLLM model (base or adapter); None: Gemini alone
    gemini: bool
    mode: MergeMode | None  # set when both answer
    local_down: str | None = None  # why the local model is out (then Gemini answers alone, with a warning)


async def route_model(services: Services, name: str, merge: MergeMode | Literal["off"] | None) -> ModelRoute:
    """Resolve ``name``: ``<local>``, ``<local>+gemini`` or the Gemini-only id; 404 ``model_not_found`` otherwise.
    ``merge`` is the request's ``vchat.merge``."""
    settings, vllm, gemini = services.settings, services.vllm, services.gemini
    if gemini is not None and name == settings.gemini_model_id:
        return ModelRoute(name, None, True, None)
    mode: MergeMode | None = None if merge is None or merge == "off" else merge
    local = name
    if name.endswith(GEMINI_SUFFIX) and gemini is not None:
        local = name[: -len(GEMINI_SUFFIX)]
        if merge is None:
            mode = settings.merge_mode
    if mode is not None and gemini is None:
        raise InvalidRequest("Gemini is not configured on this gateway (VCHAT_GEMINI_API_KEY).",
                             param="vchat.merge", code="gemini_not_configured")
    if vllm is None:
        if mode is not None:
            return ModelRoute(name, None, True, mode, "no local model is configured")
        raise ModelNotFound(f"The model {excerpt(name)} does not exist: no local model is configured.", param="model")
    try:
        served = await vllm.model_ids()
        if local not in served:  # perhaps an adapter loaded a moment ago
            served = await vllm.model_ids(max_age_s=0)
    except BackendUnavailable as exc:
        if mode is not None:
            return ModelRoute(name, None, True, mode, exc.message)
        raise
    if local not in served:
        listed = ", ".join(served + ([f"{m}{GEMINI_SUFFIX}" for m in served] if gemini else []))
        raise ModelNotFound(f"The model {excerpt(name)} does not exist. Available models: {listed}.", param="model")
    return ModelRoute(name, local, mode is not None, mode)

