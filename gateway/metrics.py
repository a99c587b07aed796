"""Prometheus metrics of one app instance, on a registry of its own (no process-wide globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


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
        self.backend_errors = Counter(
            "vchat_backend_errors", "Failed calls to a model backend, by backend and reason.",
            ["backend", "reason"], registry=self.registry,
        )
