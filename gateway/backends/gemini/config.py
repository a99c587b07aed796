"""What the Gemini backend needs from the settings, and the SDK client built from it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import httpx2
from google import genai
from google.genai import types
from pydantic import SecretStr

MediaResolution = Literal["low", "medium", "high"]


@dataclass(frozen=True)
class GeminiConfig:
    """What the backend needs from the settings (built by the app from ``Settings``; never reads the environment)."""

    api_key: SecretStr
    model: str = "gemini-flash-latest"
    base_url: str | None = None  # None: Google's endpoint
    timeout_s: float = 120.0  # one call: generate, file status, health
    inline_max_bytes: int = 15_000_000  # larger sanitized videos are uploaded through the Files API
    upload_ready_timeout_s: float = 300.0  # upload plus processing until ACTIVE
    video_fps: float | None = None  # frames per second Gemini samples (its default: 1)
    media_resolution: MediaResolution | None = None
    max_retries: int = 3
    retry_initial_s: float = 1.0  # first backoff when Gemini gives no Retry-After
    retry_max_s: float = 30.0


def make_client(config: GeminiConfig, http: httpx2.AsyncClient) -> genai.Client:
    """The SDK client the app's lifespan creates, on the lifespan's own httpx2 client (which pins the SDK to httpx2;
    the lifespan closes ``http``, and ``client.close()`` the SDK's unused sync client).

    The API version is pinned to v1beta, where Google documents the Files API and ``videoMetadata``. Keeping the key
    out of transport logs is ``scrubbed_transport_logs``'s job, entered by the same lifespan.
    """
    options = types.HttpOptions(base_url=config.base_url, api_version="v1beta", httpx_async_client=http,
                                timeout=math.ceil(config.timeout_s * 1000))
    return genai.Client(api_key=config.api_key.get_secret_value(), http_options=options)
