"""The settings of every vChat process: the one place that reads the environment (prefix ``VCHAT_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# vLLM's --max-lora-rank accepts only these values (REFERENCE.md §2).
ALLOWED_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class SharedSettings(BaseSettings):
    """The settings the gateway and the vLLM launcher (``vllm_launch.settings.LaunchSettings``) both read: each is
    defined and validated here once; the launcher adds only what needs its machine (the model directory exists)."""

    model_config = SettingsConfigDict(env_prefix="VCHAT_", env_file=None, extra="ignore", frozen=True)

    model: str | None = Field(
        None, description="Checkpoint to serve: a local directory or a hub id. Empty: the tiny test model."
    )
    served_model_name: str = Field(
        "videochat-r1.5", min_length=1, description="Model name vLLM serves the base model under."
    )
    vllm_api_key: SecretStr | None = Field(None, description="API key vLLM was started with, if any.")
    media_dir: Path = Field(
        Path("var/media"), description="Media cache directory (also vLLM's allowed local media path)."
    )
    adapters_dir: Path = Field(
        Path("var/adapters"), description="Adapter directory; each subfolder is loaded at start-up."
    )
    max_lora_rank: int = Field(16, description="Largest adapter rank vLLM accepts (`--max-lora-rank`).")

    @field_validator("model", mode="before")
    @classmethod
    def _empty_model_is_none(cls, value: object) -> object:
        return None if value in ("", "none", "off") else value

    @field_validator("max_lora_rank")
    @classmethod
    def _allowed_rank(cls, value: int) -> int:
        if value not in ALLOWED_LORA_RANKS:
            raise ValueError(f"must be one of {', '.join(map(str, ALLOWED_LORA_RANKS))}")
        return value


class Settings(SharedSettings):
    """Everything the gateway process needs; built once by the CLI and handed to ``create_app``."""

    host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the gateway listens on.")
    http_header_timeout_s: float = Field(
        10.0, gt=0, description="A connection that has not sent a request's full headers this long is closed.")
    http_keepalive_s: float = Field(5.0, gt=0, description="An idle keep-alive connection is closed after this.")
    http_max_connections: int = Field(
        1000, ge=1, description="Open connections beyond this get 503 (slow or idle ones are closed as above).")
    vllm_url: AnyHttpUrl | None = Field(
        AnyHttpUrl("http://127.0.0.1:8001"),
        description="Base URL of the vLLM OpenAI server (without /v1). Empty: no local model.",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated API keys; when set, every /v1 route needs `Authorization: Bearer <key>`.",
    )
    vllm_timeout_s: float = Field(30.0, gt=0, description="Timeout for one call to vLLM, in seconds.")
    ready_timeout_s: float = Field(3.0, gt=0, description="Timeout of the vLLM probe behind /ready.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description=(
        "Log level. The HTTP client libraries' own loggers stay at WARNING whatever it says: they write whole URLs, "
        "and a signed media URL's query string is a credential."))
    log_format: Literal["json", "text"] = Field("json", description="Log line format.")
    media_cache_bytes: int = Field(20 * 2**30, ge=2**20, description="Size bound of the media cache (LRU), bytes.")
    media_max_bytes: int = Field(
        1024 * 2**20, ge=1024, description="Largest video accepted (download, upload or data URL), bytes."
    )
    max_request_bytes: int = Field(
        1400 * 2**20, ge=2**16, description="Largest request body (JSON with data URLs, or an upload), bytes."
    )
    media_max_duration_s: float = Field(3 * 3600.0, gt=0, description="Longest video accepted, seconds.")
    media_max_side: int = Field(7680, ge=16, description="Largest frame width or height accepted, pixels.")
    media_fetch_timeout_s: float = Field(300.0, gt=0, description="Wall-clock limit for fetching one video.")
    media_idle_timeout_s: float = Field(20.0, gt=0, description="Longest pause between bytes while fetching.")
    media_max_redirects: int = Field(5, ge=0, le=20, description="Redirects followed when fetching a URL.")
    media_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated hosts, IPs or CIDRs that may be fetched although private or loopback.",
    )
    ffmpeg_timeout_s: float = Field(600.0, gt=0, description="Time limit for one ffmpeg/ffprobe/yt-dlp run.")
    subtitles_max_bytes: int = Field(
        2 * 2**20, ge=1024, description="Largest subtitle or caption file read, bytes (a longer one is cut there, with "
        "a warning).",
    )
    subtitles_max_lines: int = Field(
        20000, ge=1, description="Most subtitle lines kept per video (later ones are dropped, with a warning).",
    )
    caption_languages: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["en"], description="Comma-separated caption languages taken from video pages, "
        "in order of preference (\"en\" also takes en-US…); a page's own captions before automatic ones.",
    )
    transcribe: Literal["off", "when-needed", "always"] = Field(
        "off", description="Speech transcribed locally with faster-whisper (VCHAT_ASR_MODEL), once per video: never "
        "(off), only for videos without subtitles or captions (when-needed), or preferred to them (always).",
    )
    asr_model: Path | None = Field(
        None, description="Directory of a CTranslate2 Whisper model (faster-whisper's format, with tokenizer.json); "
        "needed unless VCHAT_TRANSCRIBE is off.",
    )
    asr_language: str | None = Field(
        None, description="Language code of the speech (e.g. en); empty: detected from the first 30 s.",
    )
    asr_timeout_s: float = Field(
        600.0, gt=0, description="Time limit for transcribing one video (the worker process is killed; the video "
        "stays usable, without a transcript).",
    )
    asr_max_memory_bytes: int = Field(
        4 * 2**30, ge=2**28, description="Address-space limit of the transcription worker process, bytes.",
    )
    asr_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the transcription worker runs: a GPU in float16 (cuda), the CPU in int8 (cpu), or "
        "the GPU when the machine has an NVIDIA driver (auto). The memory limit holds on the CPU only.",
    )
    asr_threads: int = Field(0, ge=0, le=64, description="CPU threads of the transcription worker; 0: CTranslate2's "
                             "default (4).")
    asr_max_new_tokens: int = Field(
        128, ge=1, le=220, description="Most tokens generated per 30 s of speech (bounds a model that runs away).",
    )

    # --- adapters ---
    vllm_replicas: Annotated[list[AnyHttpUrl], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated base URLs of every vLLM replica adapters are loaded into (default: the vLLM URL).",
    )
    vllm_replicas_dns: str | None = Field(
        None,
        description="host:port of a DNS name whose every address is a vLLM replica (a Kubernetes headless Service), "
        "resolved at each adapter load/unload; replaces the vLLM URL as the default replica list.",
    )
    admin_key: SecretStr | None = Field(
        None, description="Key for the /admin routes (adapters); they are off when empty."
    )

    # --- perception (VideoChat-R1.5's loop) ---
    default_iterations: int = Field(3, ge=1, le=16, description="Perception rounds when a request does not say.")
    max_iterations: int = Field(5, ge=1, le=16, description="Most perception rounds a request may ask for.")
    max_visual_tokens: int = Field(
        36864, ge=64, description="Visual-token limit per round: 512 frames at the smallest frame size fit (a "
        "smaller encoder cache vLLM reports is learned; vLLM's context is read from it and also limits frames).",
    )
    sample_fps: float = Field(2.0, gt=0, le=30, description="Frames per second sampled, as VideoChat-R1.5 does.")
    max_frames: int = Field(
        512, ge=4, le=512, description="Most frames per round, VideoChat-R1.5's 512 (requests may ask for up to 512).")
    frame_min_pixels: int = Field(128 * 28 * 28, ge=28 * 28, description="Smallest frame area sent, pixels.")
    frame_max_pixels: int = Field(768 * 28 * 28, ge=28 * 28, description="Largest frame area sent, pixels.")
    frame_total_pixels: int = Field(
        128 * 12 * 28 * 28, ge=28 * 28, description="Pixel budget shared by a round's frames (the model card's)."
    )
    frame_keyframe_snap: float = Field(
        0.25, ge=0, lt=0.5, description="A frame of a uniform selection (round 1, a glue round's frames outside its "
        "segments) may be replaced by a keyframe this share of the round's frame interval away, decoded alone (the "
        "time sent is the shown frame's). 0: exactly VideoChat-R1.5's frame indices.",
    )
    zoom: Literal["official", "dense"] = Field(
        "official", description="Glue rounds' sampling: official (frames in glued segments 1.5x denser, the round "
        "declared at its average fps, as the model was trained) or dense (past 10 min, half the frames inside the "
        "segments; denser, but the model reads their times wrong). Requests may choose (vchat.zoom).",
    )
    frame_cache_frames: int = Field(
        2048, ge=64, description="Extracted frames kept per video and size (least recently used go first).",
    )
    frame_workers: int = Field(
        0, ge=0, description="ffmpeg processes extracting frames at once, all requests together (0: one per core).",
    )
    subtitles: Literal["auto", "off"] = Field(
        "auto", description="Subtitles or captions of a video in each round's prompt, as VideoChat-R1.5's long-video "
        "evaluation does (auto), or never (off). Requests may choose (vchat.subtitles).",
    )
    subtitle_prompt_tokens: int = Field(
        8192, ge=0, description="Most prompt tokens a round's subtitle lines may take (counted as bytes, an upper "
        "bound); more lines are thinned evenly, with a warning.",
    )
    round_max_tokens: int = Field(2048, ge=16, description="Tokens one round may generate unless the client says.")
    round_timeout_s: float = Field(180.0, gt=0, description="Time limit for one perception round.")
    sse_keepalive_s: float = Field(
        2.0, gt=0, description="A streamed answer silent this long gets an SSE keep-alive comment (proxies keep "
        "the stream open; a client that left is noticed at once).",
    )
    max_active_jobs: int | None = Field(
        None, ge=1, description="Perception jobs running at once; empty: sized from vLLM's KV cache when vLLM first "
        "answers (jobs admitted while the tokens their largest rounds hold fit in it, at most 256; 16 until then).",
    )
    max_queued_jobs: int = Field(32, ge=0, description="Jobs waiting for a slot; beyond it requests get 429.")

    # --- Gemini (optional; merged with the local model, or alone) ---
    gemini_api_key: SecretStr | None = Field(
        None, description="Gemini API key; when set, Gemini-merged models and a Gemini-only model are offered."
    )
    gemini_model: str = Field("gemini-flash-latest", min_length=1, description="Gemini model the gateway calls.")
    gemini_model_id: str = Field(
        "gemini", min_length=1, description="Model name clients use for Gemini alone (listed in /v1/models)."
    )
    gemini_base_url: AnyHttpUrl | None = Field(None, description="Gemini endpoint override (tests, proxies).")
    gemini_timeout_s: float = Field(120.0, gt=0, description="Time limit for one Gemini call.")
    gemini_deadline_s: float = Field(
        300.0, gt=0, description="Time Gemini gets for one question, upload included; past it the local answer "
        "is returned with a warning.",
    )
    gemini_inline_max_bytes: int = Field(
        15_000_000, ge=0, description="Largest video sent to Gemini inline; larger ones go through its Files API."
    )
    gemini_upload_ready_timeout_s: float = Field(
        300.0, gt=0, description="Deadline for an uploaded video to become ACTIVE at Gemini."
    )
    gemini_video_fps: float | None = Field(None, gt=0, le=24, description="Frames per second Gemini samples.")
    gemini_media_resolution: Literal["low", "medium", "high"] | None = Field(
        None, description="Gemini's media resolution (low: about 100 tokens per second of video)."
    )
    gemini_max_retries: int = Field(3, ge=0, le=10, description="Retries for Gemini's 408/429/5xx answers.")
    merge_mode: Literal["gemini_context", "gemini_final", "side_by_side"] = Field(
        "gemini_context", description="How `+gemini` models merge the two answers (see README, Gemini)."
    )

    @field_validator("vllm_url", "gemini_base_url", "gemini_api_key", "admin_key", "asr_model", "asr_language",
                     mode="before")
    @classmethod
    def _empty_url_is_none(cls, value: object) -> object:
        return None if value in ("", "none", "off") else value

    @field_validator("vllm_url")
    @classmethod
    def _http_only(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if value is not None and value.scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("vllm_replicas_dns")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        """``host:port`` (or ``http(s)://host:port``) → ``http(s)://host:port``; empty → None."""
        if value is None or not value.strip():
            return None
        text = value.strip() if "://" in value else f"http://{value.strip()}"
        parts = urlsplit(text)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None or parts.path not in ("", "/"):
            raise ValueError("must be host:port, e.g. vllm-headless.vchat.svc.cluster.local:8001")
        return f"{parts.scheme}://{parts.netloc}"

    @model_validator(mode="after")
    def _asr_model_when_transcribing(self) -> Settings:
        if self.transcribe != "off" and self.asr_model is None:
            raise ValueError(f"VCHAT_TRANSCRIBE={self.transcribe} needs VCHAT_ASR_MODEL (a CTranslate2 Whisper model "
                             "directory)")
        return self

    @field_validator("api_keys", "media_allowed_hosts", "vllm_replicas", "caption_languages", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @property
    def replicas(self) -> list[str]:
        """The vLLM replicas' base URLs named here: the configured list, else (unless the replicas are found through
        DNS, ``vllm_replicas_dns``) the one vLLM URL."""
        if self.vllm_replicas:
            return [str(url).rstrip("/") for url in self.vllm_replicas]
        if self.vllm_replicas_dns:
            return []
        return [self.vllm_base] if self.vllm_base else []

    @property
    def base_model_names(self) -> tuple[str, ...]:
        """What adapters may name as their base: the served name and the checkpoint."""
        return (self.served_model_name, *([self.model] if self.model else []))

    @property
    def vllm_base(self) -> str | None:
        """vLLM's base URL without a trailing slash, or None when no local model is configured."""
        return str(self.vllm_url).rstrip("/") if self.vllm_url is not None else None
