"""`make dev`'s runner serves /v1/models from a real vLLM, and Ctrl-C (SIGINT) stops everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port, marked_pids
from vllm_launch.stack import ROOT


def test_dev_runner_serves_models_and_stops_cleanly_on_ctrl_c(tiny_model: Path, tmp_path: Path) -> None:
    port, vllm_port = free_port(), free_port()
    mark = f"dev-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "VCHAT_PORT": str(port), "VCHAT_VLLM_PORT": str(vllm_port), "VCHAT_MODEL": str(tiny_model),
           "VCHAT_DEVICE": "cpu", "VCHAT_MEDIA_DIR": str(tmp_path / "media"),
           "VCHAT_ADAPTERS_DIR": str(tmp_path / "adapters"), "VCHAT_TEST_SESSION": mark}
    env.pop("VCHAT_VLLM_URL", None)
    runner = subprocess.Popen([sys.executable, "-m", "vllm_launch.dev"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        models = None
        while time.monotonic() < deadline and runner.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
                if response.status_code == 200:
                    models = response.json()
                    break
                assert response.status_code == 503  # the gateway is up before vLLM: a clean 503 meanwhile
            except httpx.TransportError:
                pass
            time.sleep(2)
        assert models is not None, f"dev runner never served models (exit {runner.poll()})"
        assert models["data"][0]["id"] == "videochat-r1.5"
        assert marked_pids(mark), "the runner's processes should carry the marker"

        runner.send_signal(signal.SIGINT)
        output, _ = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    assert runner.returncode == 0, output
    assert "http://127.0.0.1" in output and "stopping" in output
    deadline = time.monotonic() + 10
    while marked_pids(mark) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert marked_pids(mark) == [], "processes left behind after Ctrl-C"
