"""The caller's deadline for one question, as each call, upload poll and retry sees it."""

from __future__ import annotations

import time

import tenacity
from tenacity.stop import stop_base


class Deadline:
    """A point in (monotonic) time ``seconds`` from now; calls ask it how long they may take."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._at - time.monotonic()

    def budget(self, cap: float | None = None) -> float:
        """Seconds the next call may take; TimeoutError once the deadline has passed."""
        left = self.remaining()
        if left <= 0:
            raise TimeoutError
        return left if cap is None else min(left, cap)


class StopAtDeadline(stop_base):
    """tenacity's stop condition: no retry whose wait would end past the deadline."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return retry_state.upcoming_sleep >= self.deadline.remaining()
