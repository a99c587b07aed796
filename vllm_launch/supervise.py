"""Keeps one vLLM server running for ``make dev`` and ``python -m vllm_launch``: restarts it with exponential back-off
when it dies, gives up after too many fast failures, and stops its whole process group on SIGINT/SIGTERM/SIGHUP."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from vllm_launch.server import LaunchError, VllmServer, log_tail
from vllm_launch.settings import LaunchSettings

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a vLLM that died, and when to stop trying (``VCHAT_VLLM_RESTART_*``)."""

    max_failures: int
    backoff_s: float
    backoff_max_s: float
    reset_s: float

    @classmethod
    def from_settings(cls, settings: LaunchSettings) -> RestartPolicy:
        return cls(settings.vllm_restart_max_failures, settings.vllm_restart_backoff_s,
                   settings.vllm_restart_backoff_max_s, settings.vllm_restart_reset_s)

    def delay_s(self, failures: int) -> float:
        """The wait before the restart that follows ``failures`` fast failures in a row (0 after a slow one)."""
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** max(failures - 1, 0)))


def interrupt_on_stop_signals() -> None:
    """Make the stop signals raise ``KeyboardInterrupt`` (SIGINT too: a shell that starts us in the background
    leaves it ignored). Only for stretches where no child of ours could be left behind by the exception."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_interrupt)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class StopFlag:
    """Set by the stop signals. The handler only records the signal: raising from it (KeyboardInterrupt) could land
    between vLLM's fork and the line that records its pid, and leave a vLLM nobody stops."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def install(self) -> StopFlag:
        # Explicitly, SIGINT too (see interrupt_on_stop_signals).
        for sig in STOP_SIGNALS:
            signal.signal(sig, self)
        return self

    @property
    def is_set(self) -> bool:
        return self.signum is not None

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early when a stop signal arrives; return whether one did."""
        deadline = time.monotonic() + seconds
        while not self.is_set and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
        return self.is_set


class Supervisor:
    """Runs ``server`` until a stop signal: start, wait for health, watch; when vLLM exits, stop what is left of its
    process group (the engine core may outlive the API server and keep the port), wait, start again.

    A vLLM that never became healthy is not restarted (a bad flag or a broken install does not heal by waiting);
    one that dies (or does not come back) within ``reset_s`` of becoming healthy is a fast failure, and
    ``max_failures`` of them in a row end the run with ``LaunchError``.
    """

    def __init__(self, server: VllmServer, policy: RestartPolicy, stop: StopFlag, *, startup_timeout_s: float,
                 grace_s: float, say: Callable[[str], None], poll_s: float = 1.0) -> None:
        self.server = server
        self.policy = policy
        self.stop = stop
        self.startup_timeout_s = startup_timeout_s
        self.grace_s = grace_s
        self.say = say
        self.poll_s = poll_s
        self.starts = 0

    def run(self, on_healthy: Callable[[int, float], None] | None = None,
            check: Callable[[], None] | None = None) -> None:
        """Block until a stop signal (return) or giving up (``LaunchError``). ``on_healthy(start, seconds)`` is
        called each time vLLM becomes healthy (start 1 is the first); ``check`` runs every poll and may raise."""
        failures = 0
        ever_healthy = False
        try:
            while not self.stop.is_set:
                healthy_for = self._run_once(on_healthy, check)
                if healthy_for is None:  # stopped by a signal
                    return
                code = self.server.process.returncode if self.server.process is not None else None
                self.server.stop(self.grace_s)  # whatever is left of its process group
                if not ever_healthy and healthy_for < 0:
                    raise LaunchError(f"vLLM {_exit_words(code)} before it was healthy; not restarting it. Last "
                                      f"lines of {self.server.log_path}:\n{log_tail(self.server.log_path)}")
                ever_healthy = True
                failures = failures + 1 if healthy_for < self.policy.reset_s else 0
                if self.policy.max_failures == 0:
                    raise LaunchError(f"vLLM {_exit_words(code)}; restarts are off (VCHAT_VLLM_RESTART_MAX_FAILURES=0)."
                                      f" Last lines of {self.server.log_path}:\n{log_tail(self.server.log_path)}")
                if failures >= self.policy.max_failures:
                    raise LaunchError(
                        f"vLLM {_exit_words(code)}; giving up after {failures} fast failures in a row "
                        f"(VCHAT_VLLM_RESTART_MAX_FAILURES={self.policy.max_failures}; a fast failure dies within "
                        f"{self.policy.reset_s:g} s of being healthy). Last lines of {self.server.log_path}:\n"
                        f"{log_tail(self.server.log_path)}")
                delay = self.policy.delay_s(failures)
                self.say(f"vLLM {_exit_words(code)} (healthy for {max(healthy_for, 0):.0f} s, fast failures in a "
                         f"row: {failures}/{self.policy.max_failures}); restarting it in {delay:g} s")
                if self.stop.sleep(delay):
                    return
        finally:
            self.server.stop(self.grace_s)

    def _run_once(self, on_healthy: Callable[[int, float], None] | None,
                  check: Callable[[], None] | None) -> float | None:
        """Start vLLM and watch it until it exits: the seconds it was healthy (-1: never), None on a stop signal."""
        started = time.monotonic()
        self.starts += 1
        try:
            self.server.start()
        except LaunchError as exc:
            if self.starts == 1:
                raise
            self.say(str(exc))
            return -1.0
        assert self.server.process is not None
        self.say(f"vLLM starting (pid {self.server.process.pid}, log: {self.server.log_path})")
        healthy_at: float | None = None
        while not self.stop.is_set:
            if self.server.process.poll() is not None:
                return -1.0 if healthy_at is None else time.monotonic() - healthy_at
            if healthy_at is None:
                if self.server.healthy():
                    healthy_at = time.monotonic()
                    if on_healthy is not None:
                        on_healthy(self.starts, healthy_at - started)
                elif time.monotonic() - started > self.startup_timeout_s:
                    self.say(f"vLLM was not healthy after {self.startup_timeout_s:g} s")
                    return -1.0
            if check is not None:
                check()
            self.stop.sleep(self.poll_s)
        return None


def _exit_words(code: int | None) -> str:
    if code is None:
        return "stopped"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
