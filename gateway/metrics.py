"""Prometheus metrics of one app instance, on a registry of its own (no process-wide globals)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

# The media library's stages of a video it has not seen: download and hash, probe of the source, the sanitized
# copy (ffmpeg's remux or re-encode, and the probe of what it wrote), the frame index, and each frame extraction.
MediaStage = Literal["fetch", "probe", "sanitize", "transcribe", "index", "frames"]
MEDIA_STAGES: tuple[MediaStage, ...] = ("fetch", "probe", "sanitize", "transcribe", "index", "frames")


@dataclass
class Metrics:
    """The gateway's metric families, registered on ``registry``."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        self.http_requests = Counter(
            "vchat_http_requests", "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"], registry=self.registry,
        )
        self.http_latency = Histogram(
            "vchat_http_request_duration_seconds", "Time to the end of the response, by route and method.",
            ["route", "method"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.rounds = Counter("vchat_perception_rounds", "Perception rounds run, by kind.", ["kind"],
                              registry=self.registry)
        self.round_frames = Histogram("vchat_round_frames", "Frames sent to vLLM per round.",
                                      buckets=(4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self.round_visual_tokens = Histogram(
            "vchat_round_visual_tokens", "Visual tokens per round.",
            buckets=(256, 512, 1024, 2048, 4096, 8192, 16384), registry=self.registry)
        self.vllm_call_seconds = Histogram("vchat_vllm_call_seconds", "Duration of one round's vLLM call.",
                                           buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.media_stage_seconds = Histogram(
            "vchat_media_stage_seconds", "Time spent in each stage of getting a new video and its frames: fetch, "
            "probe, sanitize, index, frames (cached videos and frames skip them).",
            ["stage"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        for stage in MEDIA_STAGES:  # every stage on /metrics from the start, at 0
            self.media_stage_seconds.labels(stage)
        self.jobs_active = Gauge("vchat_jobs_active", "Perception jobs running.", registry=self.registry)
        self.jobs_limit = Gauge(
            "vchat_jobs_limit", "Perception jobs admitted at once at most (VCHAT_MAX_ACTIVE_JOBS; else 16 until "
            "vLLM's KV cache is known, then 256 within it).", registry=self.registry)
        self.jobs_queued = Gauge("vchat_jobs_queued", "Perception jobs waiting for a slot.", registry=self.registry)
        self.jobs_kv_tokens_reserved = Gauge(
            "vchat_jobs_kv_tokens_reserved", "vLLM KV-cache tokens the running jobs' largest rounds may hold.",
            registry=self.registry)
        self.jobs_kv_tokens_capacity = Gauge(
            "vchat_jobs_kv_tokens_capacity", "vLLM's KV cache in tokens, that jobs are admitted within (0: admitted "
            "by count).", registry=self.registry)
        self.answers = Counter("vchat_answers", "Video answers, by outcome.", ["outcome"], registry=self.registry)
        self.background_prompts = Counter(
            "vchat_background_prompts", "Chat UIs' own prompts (titles, tags, follow-ups) answered as plain chat.",
            ["client", "task"], registry=self.registry,
        )
        self.backend_errors = Counter(
            "vchat_backend_errors", "Failed calls to a model backend, by backend and reason.",
            ["backend", "reason"], registry=self.registry,
        )

    @contextmanager
    def media_stage(self, stage: MediaStage) -> Iterator[None]:
        """Time the block as one ``stage`` of the media library (observed also when it fails: the time was spent)."""
        with self.media_stage_seconds.labels(stage).time():
            yield

    def media_stage_totals(self) -> dict[MediaStage, tuple[int, float]]:
        """Each media stage's (count, total seconds) so far: what ``/metrics`` shows, read without parsing it."""
        totals: dict[MediaStage, tuple[int, float]] = {}
        for stage in MEDIA_STAGES:
            labels: dict[str, str] = {"stage": stage}
            count = self.registry.get_sample_value("vchat_media_stage_seconds_count", labels)
            total = self.registry.get_sample_value("vchat_media_stage_seconds_sum", labels)
            totals[stage] = (int(count or 0), total or 0.0)
        return totals
