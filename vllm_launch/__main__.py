"""``python -m vllm_launch``: print vLLM's arguments (``--print-args``) or run vLLM, restarted when it dies, until
SIGINT/SIGTERM/SIGHUP stop it and its whole process group."""

from __future__ import annotations

import argparse
import json
import signal
import sys

from vchat_settings import load_settings
from vllm_launch.server import LaunchError
from vllm_launch.settings import LaunchSettings
from vllm_launch.stack import ROOT, prepare, server_for
from vllm_launch.supervise import RestartPolicy, StopFlag, Supervisor, interrupt_on_stop_signals


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m vllm_launch", description=__doc__)
    parser.add_argument("--print-args", action="store_true", help="print the vLLM arguments as JSON and exit")
    parser.add_argument("--no-install", action="store_true", help="do not install the vLLM stack")
    options = parser.parse_args()
    settings = load_settings(LaunchSettings, "vllm_launch")
    interrupt_on_stop_signals()  # while installing: nothing of ours runs yet, so plain KeyboardInterrupt will do
    try:
        launch = prepare(settings, install=not (options.no_install or options.print_args))
        if options.print_args:
            sys.stdout.write(json.dumps({"args": launch.command.args, "env": launch.command.env}, indent=2) + "\n")
            return
        server = server_for(launch, settings, ROOT / "var" / "log" / "vllm.log")
        stop = StopFlag().install()
        supervisor = Supervisor(server, RestartPolicy.from_settings(settings), stop, say=_say,
                                startup_timeout_s=settings.vllm_startup_timeout_s, grace_s=settings.vllm_stop_grace_s)
        supervisor.run(on_healthy=lambda start, waited: _say(
            f"vLLM {'healthy' if start == 1 else 'back'} at {server.base_url} after {waited:.0f} s"))
    except LaunchError as exc:
        sys.exit(f"vllm_launch: {exc}")
    except KeyboardInterrupt:
        sys.exit("vllm_launch: interrupted")
    if stop.signum is not None:
        _say(f"stopped ({signal.Signals(stop.signum).name})")


def _say(message: str) -> None:
    sys.stderr.write(f"vllm_launch: {message}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    main()
