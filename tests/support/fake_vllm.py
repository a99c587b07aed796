"""A stand-in for vLLM's OpenAI server in the launcher's tests: answers ``/health`` and ``/v1/models`` and, like
vLLM, keeps a child process (the "engine core") in its process group that holds the listening socket too.

It is run as the launcher's vLLM Python (``VCHAT_VLLM_PYTHON`` names a wrapper that execs this file), so it gets
vLLM's real command line (``-m vllm.entrypoints.openai.api_server --host H --port P --served-model-name N …``) and
reads only the flags it needs. The directory ``$FAKE_VLLM_DIR`` steers it, and records what it did:

- ``starts`` (written): one line per start, ``<pid> <child pid> <unix time>``, once it listens;
- ``mode`` (read at start): ``serve`` (the default), ``fail`` (exit 3 at once, as a bad flag does);
- ``ignore-term`` (read at start): when present, the server and its child ignore SIGTERM, so only SIGKILL stops them;
- ``startup_s`` (read at start): seconds to wait before listening (as vLLM loads its model), default 0.2.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _flag(argv: list[str], name: str, default: str) -> str:
    return argv[argv.index(name) + 1] if name in argv else default


def main(argv: list[str]) -> None:
    state = Path(os.environ["FAKE_VLLM_DIR"])
    host, port = _flag(argv, "--host", "127.0.0.1"), int(_flag(argv, "--port", "8001"))
    served = _flag(argv, "--served-model-name", "videochat-r1.5")
    mode = (state / "mode").read_text().strip() if (state / "mode").exists() else "serve"
    if mode == "fail":
        sys.stderr.write("fake vLLM: failing at start, as told\n")
        sys.exit(3)
    ignore_term = (state / "ignore-term").exists()
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    startup = float((state / "startup_s").read_text()) if (state / "startup_s").exists() else 0.2
    time.sleep(startup)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {})
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [
                    {"id": served, "object": "model", "created": 0, "owned_by": "vllm", "root": served,
                     "parent": None, "max_model_len": 8192}]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler, bind_and_activate=False)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.server_bind()
    server.server_activate()
    # The "engine core": inherits the listening socket, so while it lives the port stays taken.
    child_code = "import signal, time\n" + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
    child = subprocess.Popen([sys.executable, "-c", child_code + "while True: time.sleep(1)"],
                             pass_fds=(server.socket.fileno(),))
    with (state / "starts").open("a") as starts:
        starts.write(f"{os.getpid()} {child.pid} {time.time()}\n")
    sys.stderr.write(f"fake vLLM {os.getpid()} serving {served} on {host}:{port}\n")
    sys.stderr.flush()
    if not ignore_term:
        def terminate(signum: int, frame: object) -> None:
            child.terminate()
            child.wait()
            os._exit(0)

        signal.signal(signal.SIGTERM, terminate)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
