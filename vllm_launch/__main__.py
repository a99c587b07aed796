"""``python -m vllm_launch``: print vLLM's arguments (``--print-args``) or start it and wait for health."""

from __future__ import annotations

import argparse
import json
import sys
import time

from pydantic import ValidationError

from vllm_launch.server import LaunchError
from vllm_launch.settings import LaunchSettings
from vllm_launch.stack import ROOT, prepare, server_for


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m vllm_launch", description=__doc__)
    parser.add_argument("--print-args", action="store_true", help="print the vLLM arguments as JSON and exit")
    parser.add_argument("--no-install", action="store_true", help="do not install the vLLM stack")
    options = parser.parse_args()
    try:
        settings = LaunchSettings()
    except ValidationError as exc:
        from gateway.cli import settings_error_line

        sys.exit(f"vllm_launch: {settings_error_line(exc, LaunchSettings)}")
    try:
        launch = prepare(settings, install=not (options.no_install or options.print_args))
        if options.print_args:
            sys.stdout.write(json.dumps({"args": launch.command.args, "env": launch.command.env}, indent=2) + "\n")
            return
        server = server_for(launch, settings, ROOT / "var" / "log" / "vllm.log")
        with server:
            waited = server.wait_healthy(settings.vllm_startup_timeout_s)
            sys.stderr.write(f"vLLM healthy at {server.base_url} after {waited:.0f} s (log: {server.log_path})\n")
            while server.process is not None and server.process.poll() is None:
                time.sleep(1)
    except LaunchError as exc:
        sys.exit(f"vllm_launch: {exc}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
