"""The launcher supervises vLLM: a vLLM that dies is restarted with back-off, too many fast failures end the run, and
SIGINT/SIGTERM/SIGHUP stop vLLM's whole process group — proven on the real launcher (``python -m vllm_launch``,
``python -m vllm_launch.dev`` with the real gateway) driving ``tests/support/fake_vllm.py``, in seconds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, marked_pids
from vllm_launch.stack import ROOT
from vllm_launch.supervise import RestartPolicy

FAKE_VLLM = ROOT / "tests" / "support" / "fake_vllm.py"


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(what: str, condition: Callable[[], object], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Start:
    pid: int
    child: int
    at: float


@dataclass
class FakeStack:
    """A launcher environment whose vLLM is the fake; ``state`` steers the fake, ``starts()`` is what it did."""

    env: dict[str, str]
    state: Path
    port: int
    mark: str
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def launch(self, *module: str, **env: str) -> subprocess.Popen[bytes]:
        # As a shell's `cmd &` does: SIGINT ignored, so only the launcher's own handler can make Ctrl-C work.
        self.process = subprocess.Popen(
            [sys.executable, "-m", *module], cwd=ROOT, env={**self.env, **env}, stdin=subprocess.DEVNULL,
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        return self.process

    def starts(self) -> list[Start]:
        path = self.state / "starts"
        lines = path.read_text().splitlines() if path.exists() else []
        return [Start(int(pid), int(child), float(at)) for pid, child, at in (line.split() for line in lines)]

    def wait_starts(self, count: int, timeout_s: float = 20.0) -> list[Start]:
        wait_for(f"start {count} of the fake vLLM", lambda: len(self.starts()) >= count, timeout_s)
        return self.starts()

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_said(self, text: str, count: int = 1, timeout_s: float = 20.0) -> None:
        """Until the launcher has said ``text`` ``count`` times (it saw vLLM healthy, say: not just the test)."""
        wait_for(f"the launcher to say {text!r} ×{count}", lambda: self.output().count(text) >= count, timeout_s)

    def pids(self) -> list[int]:
        return [pid for start in self.starts() for pid in (start.pid, start.child)]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeStack]:
    state = tmp_path / "fake-vllm"
    state.mkdir()
    python = tmp_path / "vllm-python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_VLLM}" "$@"\n')
    python.chmod(0o755)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    port, mark = free_port(), f"supervise-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "VCHAT_VLLM_PYTHON": str(python), "VCHAT_MODEL": str(model), "VCHAT_VLLM_VERSION": "0.32.0",
           "VCHAT_DEVICE": "cpu", "VCHAT_VLLM_PORT": str(port), "VCHAT_MEDIA_DIR": str(tmp_path / "media"),
           "VCHAT_ADAPTERS_DIR": str(tmp_path / "adapters"), "FAKE_VLLM_DIR": str(state),
           "VCHAT_VLLM_RESTART_BACKOFF_S": "0.5", "VCHAT_VLLM_STOP_GRACE_S": "3", "VCHAT_TEST_SESSION": mark}
    env.pop("VCHAT_VLLM_URL", None)
    stack = FakeStack(env, state, port, mark, tmp_path / "launcher.log")
    try:
        yield stack
    finally:
        if stack.process is not None and stack.process.poll() is None:
            os.killpg(stack.process.pid, signal.SIGKILL)
            stack.process.wait()
        for pid in stack.pids():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def assert_all_gone(stack: FakeStack) -> None:
    wait_for("every process to be gone", lambda: not marked_pids(stack.mark), 10)
    assert [pid for pid in stack.pids() if alive(pid)] == []
    assert not port_taken(stack.port), "something still holds vLLM's port"


def test_restart_delays_double_up_to_their_cap() -> None:
    policy = RestartPolicy(max_failures=10, backoff_s=2, backoff_max_s=60, reset_s=300)
    assert [policy.delay_s(n) for n in range(7)] == [2, 2, 4, 8, 16, 32, 60]


@pytest.mark.timing
def test_a_killed_vllm_is_restarted_with_doubling_back_off(fake: FakeStack) -> None:
    launcher = fake.launch("vllm_launch", "--no-install")
    first = fake.wait_starts(1)[0]
    fake.wait_said("vLLM healthy at")

    killed_at = time.time()
    os.kill(first.pid, signal.SIGKILL)  # the API server only: its "engine core" child lives on, holding the port
    second = fake.wait_starts(2)[1]
    assert not alive(first.child), "the dead vLLM's child must be stopped before the restart"
    assert second.at - killed_at >= 0.5, "the first restart waits VCHAT_VLLM_RESTART_BACKOFF_S"
    fake.wait_said("vLLM back at")

    killed_at = time.time()
    os.kill(second.pid, signal.SIGKILL)
    third = fake.wait_starts(3)[2]
    assert third.at - killed_at >= 1.0, "a second fast failure in a row waits twice as long"
    fake.wait_said("vLLM back at", 2)
    assert launcher.poll() is None

    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=15) == 0, fake.output()
    assert_all_gone(fake)
    output = fake.output()
    assert "vLLM was killed by SIGKILL" in output and "restarting it in 0.5 s" in output, output
    assert "restarting it in 1 s" in output and "vLLM back at" in output, output


def test_too_many_fast_failures_end_the_run_with_a_clear_line(fake: FakeStack) -> None:
    launcher = fake.launch("vllm_launch", "--no-install", VCHAT_VLLM_RESTART_MAX_FAILURES="3",
                           VCHAT_VLLM_RESTART_BACKOFF_S="0.2")
    first = fake.wait_starts(1)[0]
    fake.wait_said("vLLM healthy at")
    (fake.state / "mode").write_text("fail")  # from now on every start fails at once
    os.kill(first.pid, signal.SIGKILL)

    assert launcher.wait(timeout=30) != 0
    output = fake.output()
    assert "giving up after 3 fast failures in a row (VCHAT_VLLM_RESTART_MAX_FAILURES=3" in output, output
    assert "failing at start, as told" in output, "the give-up line carries vLLM's log tail"
    assert output.count("vLLM starting (pid") == 3, output
    assert_all_gone(fake)


def test_a_vllm_that_never_became_healthy_is_not_restarted(fake: FakeStack) -> None:
    (fake.state / "mode").write_text("fail")
    launcher = fake.launch("vllm_launch", "--no-install")
    assert launcher.wait(timeout=30) != 0
    output = fake.output()
    assert "vLLM exited with code 3 before it was healthy; not restarting it" in output, output
    assert output.count("vLLM starting (pid") == 1, output
    assert_all_gone(fake)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_to_the_launcher_stops_vllm_and_its_children(fake: FakeStack, sig: signal.Signals) -> None:
    launcher = fake.launch("vllm_launch", "--no-install")
    start = fake.wait_starts(1)[0]
    wait_for("health", fake.healthy)
    assert alive(start.pid) and alive(start.child)

    os.kill(launcher.pid, sig)  # the launcher alone, not its group: it must pass the stop on itself
    assert launcher.wait(timeout=15) == 0, fake.output()
    assert f"stopped ({sig.name})" in fake.output()
    assert_all_gone(fake)


def test_a_vllm_that_ignores_sigterm_is_killed_after_the_grace_period(fake: FakeStack) -> None:
    (fake.state / "ignore-term").touch()
    launcher = fake.launch("vllm_launch", "--no-install", VCHAT_VLLM_STOP_GRACE_S="1")
    fake.wait_starts(1)
    wait_for("health", fake.healthy)

    asked = time.monotonic()
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=15) == 0, fake.output()
    assert 1.0 <= time.monotonic() - asked < 10
    assert_all_gone(fake)


def test_dev_stack_keeps_the_gateway_up_while_vllm_restarts(fake: FakeStack) -> None:
    """`make dev`'s runner with the real gateway: vLLM killed → 503 with Retry-After → vLLM back → 200; SIGTERM
    to the runner stops the gateway, vLLM and vLLM's child."""
    gateway_port = free_port()
    runner = fake.launch("vllm_launch.dev", VCHAT_PORT=str(gateway_port), VCHAT_VLLM_RESTART_BACKOFF_S="2")
    ready_url = f"http://127.0.0.1:{gateway_port}/ready"

    def ready_status() -> int:
        try:
            return httpx.get(ready_url, timeout=5).status_code
        except httpx.TransportError:
            return 0

    wait_for("the gateway to be ready", lambda: ready_status() == 200, 60)
    fake.wait_said("vLLM ready after")
    gateway_pids = set(marked_pids(fake.mark)) - set(fake.pids())
    first = fake.starts()[0]

    os.kill(first.pid, signal.SIGKILL)
    wait_for("the gateway to notice", lambda: ready_status() == 503, 10)
    down = httpx.get(ready_url, timeout=5)
    assert down.status_code == 503 and int(down.headers["Retry-After"]) > 0
    error = down.json()["error"]
    assert error["type"] == "service_unavailable" and error["code"] == "backend_unavailable"
    assert set(error) == {"message", "type", "param", "code"}
    chat = httpx.post(f"http://127.0.0.1:{gateway_port}/v1/chat/completions", timeout=10,
                      json={"model": "videochat-r1.5", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 503 and "Retry-After" in chat.headers, chat.text
    assert chat.json()["error"]["type"] == "service_unavailable"

    wait_for("vLLM to be restarted and the gateway ready again", lambda: ready_status() == 200, 30)
    assert len(fake.starts()) == 2
    assert gateway_pids <= set(marked_pids(fake.mark)), "the gateway itself was never restarted"
    fake.wait_said("vLLM back after")

    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=30) == 0, fake.output()
    assert_all_gone(fake)
    assert not port_taken(gateway_port)
