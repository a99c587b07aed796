"""Starts vLLM in its own process group, waits for ``/health`` with a deadline, and stops it cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType


class LaunchError(RuntimeError):
    """Raised when vLLM cannot be started or does not become healthy; the message carries its log tail."""


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of ``path`` (empty when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def port_in_use(host: str, port: int) -> bool:
    """Whether something already accepts connections at ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class VllmServer:
    """One vLLM server process (and all its children, via its own session / process group)."""

    def __init__(self, argv: list[str], env: Mapping[str, str], *, host: str, port: int, log_path: Path) -> None:
        self.argv = argv
        self.env = dict(env)
        self.host = host
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Spawn vLLM; raise ``LaunchError`` when the port is taken."""
        if port_in_use(self.host, self.port):
            raise LaunchError(f"cannot start vLLM: {self.host}:{self.port} is already in use")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **self.env}, start_new_session=True,
            )

    def wait_healthy(self, timeout_s: float, poll_s: float = 1.0) -> float:
        """Block until ``/health`` answers 200; return the seconds waited. Raise ``LaunchError`` with the
        log tail when the process exits or the deadline passes first."""
        assert self.process is not None, "start() first"
        started = time.monotonic()
        while True:
            code = self.process.poll()
            if code is not None:
                raise LaunchError(f"vLLM exited with code {code} before it was healthy. Last lines of "
                                  f"{self.log_path}:\n{log_tail(self.log_path)}")
            if self.healthy():
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                self.stop()
                raise LaunchError(f"vLLM was not healthy after {timeout_s:g} s. Last lines of "
                                  f"{self.log_path}:\n{log_tail(self.log_path)}")
            time.sleep(poll_s)

    def healthy(self, timeout_s: float = 2.0) -> bool:
        """Whether ``/health`` answers 200 right now."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=timeout_s) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after ``grace_s``. Also what to call after
        vLLM's main process died: its children (the engine core) may still be running, holding memory and the port."""
        if self.process is None:
            return
        stop_group(self.process, grace_s)
        self.process = None

    def __enter__(self) -> VllmServer:
        self.start()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()


def stop_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the process group ``process`` leads (started with ``start_new_session``), SIGKILL what is left after
    ``grace_s``, and reap ``process``; return once no member of the group is alive."""
    pgid = process.pid  # start_new_session makes the child its group's leader
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _group_alive(pgid):
            process.poll()
            time.sleep(0.1)
        if not _group_alive(pgid):
            break
    process.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader still counts; it is reaped by poll()/wait().
    return any(_pgid_of(pid) == pgid for pid in _pids())


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _pgid_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[2])
