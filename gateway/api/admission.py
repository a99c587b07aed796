"""Backpressure: a bounded number of perception jobs at once and a bounded queue; beyond it, 429."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.backends.vllm import VllmBackend
from gateway.errors import RateLimited, VChatError
from gateway.metrics import Metrics

logger = logging.getLogger(__name__)

# Automatic sizing: never fewer jobs than before vLLM answered, never more than vLLM's own default --max-num-seqs on
# a GPU (beyond it jobs would only wait inside vLLM instead of here, where they are counted and bounded).
AUTO_FLOOR = 16
AUTO_CEILING = 256


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
        metrics.jobs_limit.set(active)

    def grow_to(self, active: int) -> None:
        """Admit up to ``active`` jobs from now on (never fewer than today: running jobs keep their slots)."""
        for _ in range(active - self.active):
            self._slots.release()
        self.active = max(self.active, active)
        self._metrics.jobs_limit.set(self.active)

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


class AutoSize:
    """Sizes ``admission`` from vLLM's real capacity, the first time vLLM tells it: as many jobs as its KV cache holds
    full-context sequences at once (a job runs one round, one sequence, at a time), so that no admitted job waits on
    another's KV blocks, between ``AUTO_FLOOR`` and ``AUTO_CEILING``. Until then (and if vLLM's /metrics never says)
    ``AUTO_FLOOR`` jobs run at once."""

    def __init__(self, admission: Admission, vllm: VllmBackend, retry_s: float = 30.0,
                 look_timeout_s: float = 5.0) -> None:
        self.admission, self.vllm, self.retry_s, self.look_timeout_s = admission, vllm, retry_s, look_timeout_s
        self.sized = False
        self._next_try = 0.0

    async def ensure(self, model: str) -> None:
        """Size once; a failed look is tried again at most every ``retry_s`` (it never fails the request)."""
        if self.sized or time.monotonic() < self._next_try:
            return
        self._next_try = time.monotonic() + self.retry_s
        try:
            # A bounded look: a question never waits long on it (a vLLM behind a proxy may answer /metrics slowly).
            async with asyncio.timeout(self.look_timeout_s):
                context = await self.vllm.max_model_len(model)
                sequences = await self.vllm.kv_concurrency(context) if context else None
        except (VChatError, TimeoutError):
            return
        if sequences is None:
            return
        self.sized = True
        self.admission.grow_to(min(max(sequences, AUTO_FLOOR), AUTO_CEILING))
        logger.info("vLLM's KV cache holds %d sequences of %d tokens: %d perception jobs at once",
                    sequences, context, self.admission.active)
