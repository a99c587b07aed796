"""One Gemini call under a per-attempt timeout, retried for 408/429/5xx and transport errors while the deadline
allows, waiting what Gemini's ``Retry-After`` asks or an exponential backoff with jitter."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx2
import tenacity
from google.genai import errors as genai_errors

from gateway.backends.gemini.config import GeminiConfig
from gateway.backends.gemini.deadline import Deadline, StopAtDeadline
from gateway.backends.gemini.errors import retry_after_s, summary
from gateway.backends.gemini.scrub import scrub

logger = logging.getLogger("gateway.backends.gemini")  # the package's one logger, named as before its split

T = TypeVar("T")

_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


async def retrying(call: Callable[[], Awaitable[T]], deadline: Deadline, config: GeminiConfig, *,
                   cap: float | None) -> T:
    """``call`` with each attempt bounded by the deadline and by ``cap`` seconds (None: the deadline alone)."""

    async def attempt() -> T:
        async with asyncio.timeout(deadline.budget(cap)):
            return await call()

    def wait(retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hinted = retry_after_s(exc) if isinstance(exc, genai_errors.APIError) else None
        if hinted is not None:
            return hinted
        backoff = min(config.retry_max_s, config.retry_initial_s * 2.0 ** (retry_state.attempt_number - 1))
        return backoff * random.uniform(0.5, 1.0)

    def log_retry(retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        logger.info("gemini call failed; retrying", extra={
            "gemini_error": scrub(summary(exc), config.api_key.get_secret_value()),
            "attempt": retry_state.attempt_number, "retry_in_s": round(retry_state.upcoming_sleep, 3)})

    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(_retryable),
        stop=tenacity.stop_any(tenacity.stop_after_attempt(config.max_retries + 1), StopAtDeadline(deadline)),
        wait=wait, before_sleep=log_retry, reraise=True)
    return await retrying(attempt)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, genai_errors.APIError):
        return exc.code in _RETRYABLE
    return isinstance(exc, TimeoutError | httpx2.TransportError)
