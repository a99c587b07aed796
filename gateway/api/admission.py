"""Backpressure: a bounded number of perception jobs at once and a bounded queue; beyond it, 429."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.errors import RateLimited
from gateway.metrics import Metrics


class Admission:
    """Admits up to ``active`` jobs at once; up to ``queued`` more wait in order; anyone else gets 429."""

    def __init__(self, active: int, queued: int, metrics: Metrics, retry_after_s: int = 2) -> None:
        self.active = active
        self.queued = queued
        self.retry_after_s = retry_after_s
        self._slots = asyncio.Semaphore(active)
        self._running = 0
        self._waiting = 0
        self._metrics = metrics

    @property
    def full(self) -> bool:
        return self._running + self._waiting >= self.active + self.queued

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.full:
            raise RateLimited(
                f"The server is busy ({self._running} questions running, {self._waiting} waiting); retry shortly.",
                retry_after=self.retry_after_s,
            )
        self._waiting += 1
        self._metrics.jobs_queued.set(self._waiting)
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
            self._metrics.jobs_queued.set(self._waiting)
        self._running += 1
        self._metrics.jobs_active.set(self._running)
        try:
            yield
        finally:
            self._running -= 1
            self._metrics.jobs_active.set(self._running)
            self._slots.release()
