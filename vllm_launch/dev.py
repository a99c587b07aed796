"""``make dev``: install what is missing, start vLLM and the gateway, print the URL; vLLM is restarted when it dies
(the gateway answers 503 meanwhile); Ctrl-C, SIGTERM or SIGHUP stop both, with every process they started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vchat_settings import Settings, load_settings
from vllm_launch.server import LaunchError, VllmServer, log_tail, stop_group
from vllm_launch.settings import LaunchSettings
from vllm_launch.stack import ROOT, TINY_WHISPER_DIR, ensure_tiny_whisper, prepare, server_for
from vllm_launch.supervise import RestartPolicy, StopFlag, Supervisor, interrupt_on_stop_signals

LOG_DIR = ROOT / "var" / "log"


def _say(message: str) -> None:
    sys.stderr.write(f"[vchat dev] {message}\n")
    sys.stderr.flush()


def _load() -> tuple[LaunchSettings, Settings]:
    launch_settings = load_settings(LaunchSettings, "vchat dev")
    os.environ.setdefault("VCHAT_VLLM_URL", f"http://{launch_settings.vllm_host}:{launch_settings.vllm_port}")
    if os.environ.get("VCHAT_TRANSCRIBE", "off") != "off" and not os.environ.get("VCHAT_ASR_MODEL"):
        # Speech asked for without a model: the tiny random-weight Whisper (built after the install, in main).
        os.environ["VCHAT_ASR_MODEL"] = str(TINY_WHISPER_DIR)
    return launch_settings, load_settings(Settings, "vchat dev")


def _start_gateway(log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "gateway"], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def main() -> None:
    launch_settings, settings = _load()
    interrupt_on_stop_signals()  # while installing: nothing of ours runs yet, so plain KeyboardInterrupt will do
    gateway: subprocess.Popen[bytes] | None = None
    vllm: VllmServer | None = None
    try:
        launch = prepare(launch_settings)
        if settings.asr_model == TINY_WHISPER_DIR and settings.transcribe != "off":
            _say(f"speech: the tiny random-weight Whisper ({ensure_tiny_whisper(Path(launch.python))})")
        _say(f"model: {launch.model} on {launch.device}")
        vllm = server_for(launch, launch_settings, LOG_DIR / "vllm.log")
        stop = StopFlag().install()
        supervisor = Supervisor(vllm, RestartPolicy.from_settings(launch_settings), stop, say=_say,
                                startup_timeout_s=launch_settings.vllm_startup_timeout_s,
                                grace_s=launch_settings.vllm_stop_grace_s)
        gateway = _start_gateway(LOG_DIR / "gateway.log")
        _say(f"gateway: http://{settings.host}:{settings.port}  (logs in {LOG_DIR})")
        _say(f"vLLM loading at {vllm.base_url}; /ready turns 200 when it is up …")

        def on_healthy(start: int, waited: float) -> None:
            if start == 1:
                _say(f"vLLM ready after {waited:.0f} s. Try: curl http://{settings.host}:{settings.port}/v1/models")
                _say("Ctrl-C stops both.")
            else:
                _say(f"vLLM back after {waited:.0f} s; the gateway serves again.")

        def gateway_alive() -> None:
            if gateway is not None and gateway.poll() is not None:
                raise LaunchError(f"the gateway exited ({gateway.returncode}):\n{log_tail(LOG_DIR / 'gateway.log')}")

        supervisor.run(on_healthy=on_healthy, check=gateway_alive)
        _say("stopping …")
    except LaunchError as exc:
        _say(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        _say("stopping …")
    finally:
        if gateway is not None:
            stop_group(gateway, launch_settings.vllm_stop_grace_s)
        if vllm is not None:
            vllm.stop(launch_settings.vllm_stop_grace_s)


if __name__ == "__main__":
    main()
