"""``Services``: what the lifespan builds, handed to every request (and to a benchmark or a test) as one object."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.api.admission import Admission, AutoSize
from gateway.backends.gemini import GeminiBackend
from gateway.backends.vllm import VllmBackend
from gateway.errors import BackendUnavailable
from gateway.media.library import VideoLibrary
from gateway.metrics import Metrics
from gateway.perception.loop import PerceptionLoop
from vchat_settings import Settings


@dataclass(frozen=True)
class Services:
    """The long-lived clients and state of one running gateway; routes reach it through ``deps.ServicesDep``."""

    settings: Settings
    metrics: Metrics
    media: VideoLibrary
    admission: Admission
    vllm: VllmBackend | None = None
    perception: PerceptionLoop | None = None
    gemini: GeminiBackend | None = None
    auto_size: AutoSize | None = None
    gemini_health: dict[str, object] = field(default_factory=dict)  # /ready caches Gemini's state briefly

    def require_vllm(self) -> VllmBackend:
        """The vLLM backend, or 503 ``no_backend`` when none is configured."""
        if self.vllm is None:
            raise BackendUnavailable("No local model is configured (VCHAT_VLLM_URL is empty).", code="no_backend")
        return self.vllm
