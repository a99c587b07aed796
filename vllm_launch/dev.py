"""``make dev``: install what is missing, start vLLM and the gateway, print the URL; Ctrl-C stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from gateway.cli import settings_error_line
from gateway.settings import Settings
from vllm_launch.server import LaunchError, VllmServer, log_tail
from vllm_launch.settings import LaunchSettings
from vllm_launch.stack import ROOT, prepare, server_for

LOG_DIR = ROOT / "var" / "log"


def _say(message: str) -> None:
    sys.stderr.write(f"[vchat dev] {message}\n")
    sys.stderr.flush()


def _load() -> tuple[LaunchSettings, Settings]:
    try:
        launch_settings = LaunchSettings()
    except ValidationError as exc:
        sys.exit(f"vchat dev: {settings_error_line(exc, LaunchSettings)}")
    os.environ.setdefault("VCHAT_VLLM_URL", f"http://{launch_settings.vllm_host}:{launch_settings.vllm_port}")
    try:
        gateway_settings = Settings()
    except ValidationError as exc:
        sys.exit(f"vchat dev: {settings_error_line(exc, Settings)}")
    return launch_settings, gateway_settings


def _start_gateway(log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "gateway"], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    launch_settings, settings = _load()
    # Explicitly, because a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    gateway: subprocess.Popen[bytes] | None = None
    vllm: VllmServer | None = None
    try:
        launch = prepare(launch_settings)
        _say(f"model: {launch.model} on {launch.device}")
        vllm = server_for(launch, launch_settings, LOG_DIR / "vllm.log")
        vllm.start()
        gateway = _start_gateway(LOG_DIR / "gateway.log")
        _say(f"gateway: http://{settings.host}:{settings.port}  (logs in {LOG_DIR})")
        _say(f"vLLM loading at {vllm.base_url}; /ready turns 200 when it is up …")
        waited = vllm.wait_healthy(launch_settings.vllm_startup_timeout_s)
        _say(f"vLLM ready after {waited:.0f} s. Try: curl http://{settings.host}:{settings.port}/v1/models")
        _say("Ctrl-C stops both.")
        while True:
            if gateway.poll() is not None:
                raise LaunchError(f"the gateway exited ({gateway.returncode}):\n"
                                  f"{log_tail(LOG_DIR / 'gateway.log')}")
            if vllm.process is None or vllm.process.poll() is not None:
                raise LaunchError(f"vLLM exited:\n{log_tail(vllm.log_path)}")
            time.sleep(1)
    except LaunchError as exc:
        _say(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        _say("stopping …")
    finally:
        _stop(gateway)
        if vllm is not None:
            vllm.stop()


if __name__ == "__main__":
    main()
