"""Reads Prometheus endpoints (the gateway's, vLLM's) and waits on what they say, with a deadline for failures only."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families


def samples(url: str) -> dict[str, float]:
    """A Prometheus endpoint's samples summed over their labels, by ``name`` and by ``name{label=value}``."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=30).text):
        for sample in family.samples:
            found[sample.name] = found.get(sample.name, 0.0) + sample.value
            for key, value in sample.labels.items():
                name = f"{sample.name}{{{key}={value}}}"
                found[name] = found.get(name, 0.0) + sample.value
    return found


def wait_for(what: str, ready: Callable[[], bool], deadline_s: float = 120.0) -> float:
    """Poll until ``ready``; return the seconds it took. The deadline only bounds a failure."""
    started = time.monotonic()
    while not ready():
        assert time.monotonic() - started < deadline_s, f"waited {deadline_s:g} s for {what}"
        time.sleep(0.05)
    return time.monotonic() - started
