"""Backpressure: perception jobs admitted while they fit (a job count, or the KV-cache tokens their rounds hold in
vLLM) and a bounded FIFO queue; beyond it, 429."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from gateway.backends.vllm import VllmBackend
from gateway.errors import RateLimited, VChatError
from gateway.metrics import Metrics

logger = logging.getLogger(__name__)

# Jobs at once until vLLM's KV cache is known (and for good if its /metrics never says).
AUTO_FLOOR = 16
# Never more jobs at once than vLLM's own default --max-num-seqs on a GPU, however few tokens they hold (beyond it
# jobs would only wait inside vLLM instead of here, where they are counted and bounded).
AUTO_CEILING = 256


@dataclass(eq=False)
class _Waiter:
    tokens: int
    admitted: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Admission:
    """Admits up to ``active`` jobs at once and, once ``by_tokens`` gave it vLLM's KV-cache size, only while the tokens
    they reserve fit in it; up to ``queued`` more wait in arrival order; anyone else gets 429.

    The queue is strictly FIFO: a job the free tokens cannot hold yet keeps everyone behind it waiting, so a large job
    is never starved by a stream of small ones. What that costs is bounded: a job reserves at most one context
    (40,960 of an H100's 1,011,072 KV tokens: 4 %), and that much at most sits unreserved while the head waits.
    A job larger than the whole cache runs when it is alone.
    """

    def __init__(self, active: int, queued: int, metrics: Metrics, retry_after_s: int = 2) -> None:
        self.active = active
        self.queued = queued
        self.retry_after_s = retry_after_s
        self.capacity: int | None = None  # vLLM's KV cache in tokens; None: jobs are admitted by count alone
        self._running = 0
        self._reserved = 0
        self._queue: deque[_Waiter] = deque()
        self._metrics = metrics
        metrics.jobs_limit.set(active)

    def grow_to(self, active: int) -> None:
        """Admit up to ``active`` jobs from now on (never fewer than today: running jobs keep their slots)."""
        self.active = max(self.active, active)
        self._metrics.jobs_limit.set(self.active)
        self._admit()

    def by_tokens(self, capacity: int, ceiling: int) -> None:
        """Admit jobs by the tokens they reserve in a KV cache of ``capacity`` tokens, at most ``ceiling`` at once."""
        self.capacity = capacity
        self._metrics.jobs_kv_tokens_capacity.set(capacity)
        self.grow_to(ceiling)

    @asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[None]:
        """Run the job inside; ``tokens``: the KV-cache tokens it may hold at once (its largest round)."""
        if not self._queue and self._fits(tokens):
            self._take(tokens)
        else:
            await self._wait(tokens)
        try:
            yield
        finally:
            self._leave(tokens)

    async def _wait(self, tokens: int) -> None:
        if len(self._queue) >= self.queued:
            raise RateLimited(
                f"The server is busy ({self._running} questions running, {len(self._queue)} waiting); retry shortly.",
                retry_after=self.retry_after_s,
            )
        waiter = _Waiter(tokens)
        self._queue.append(waiter)
        self._gauges()
        try:
            await waiter.admitted
        except asyncio.CancelledError:
            if waiter.admitted.cancelled():  # left while waiting: whoever was behind may fit now
                if waiter in self._queue:
                    self._queue.remove(waiter)
                self._admit()
            else:  # admitted in the same instant as cancelled: hand the slot back
                self._leave(tokens)
            raise

    def _fits(self, tokens: int) -> bool:
        if self._running >= self.active:
            return False
        return self.capacity is None or self._running == 0 or self._reserved + tokens <= self.capacity

    def _take(self, tokens: int) -> None:
        self._running += 1
        self._reserved += tokens
        self._gauges()

    def _leave(self, tokens: int) -> None:
        self._running -= 1
        self._reserved -= tokens
        self._admit()

    def _admit(self) -> None:
        """Admit waiters from the head while they fit; the first that does not stops the rest (FIFO)."""
        while self._queue:
            head = self._queue[0]
            if head.admitted.done():  # cancelled, not yet out of the queue
                self._queue.popleft()
                continue
            if not self._fits(head.tokens):
                break
            self._queue.popleft()
            self._take(head.tokens)
            head.admitted.set_result(None)
        self._gauges()

    def _gauges(self) -> None:
        self._metrics.jobs_active.set(self._running)
        self._metrics.jobs_queued.set(sum(not waiter.admitted.done() for waiter in self._queue))
        self._metrics.jobs_kv_tokens_reserved.set(self._reserved)


class AutoSize:
    """Sizes ``admission`` from vLLM's real capacity, the first time vLLM tells it: jobs are then admitted while the
    tokens their largest rounds hold fit in vLLM's KV cache (a job runs one round, one sequence, at a time), so that
    no admitted job waits on another's KV blocks, at most ``AUTO_CEILING`` at once. Until then (and if vLLM's /metrics
    never says) ``AUTO_FLOOR`` jobs run at once.

    Sizing by full-context sequences instead (KV tokens ÷ max_model_len) assumed every round fills the context: on an
    H100 (1,011,072 KV tokens, context 40,960) that admitted 24 jobs whose rounds held ~8,200 tokens each, and 32
    concurrent questions ran at 0.70x the throughput of the same requests sent to vLLM directly.
    """

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
                tokens = await self.vllm.kv_cache_tokens(context) if context else None
        except (VChatError, TimeoutError):
            return
        if tokens is None or context is None:
            return
        self.sized = True
        self.admission.by_tokens(tokens, AUTO_CEILING)
        logger.info("vLLM's KV cache holds %d tokens (%d sequences of %d): jobs admitted by the tokens their rounds "
                    "hold, at most %d at once", tokens, tokens // context, context, AUTO_CEILING)
