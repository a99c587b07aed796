"""Train-to-serve on CPU: LoRA on three real clips, exported, hot-loaded into the session's vLLM, asked by name.

Training runs in the vLLM environment (torch, transformers, peft) through ``python -m training.finetune``, as a
user would run it; the taught tiny model answers "<think>The bars move.</think><answer>B</answer>" to everything,
and the adapter is trained to answer one question with another, memorised reply.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import VLLM_PYTHON, GatewayFactory, VllmHandle
from tests.support.clips import make_clip
from tests.support.origin import Origin
from training.export import tensor_names

ROOT = Path(__file__).resolve().parents[2]
MEMORISED = "<think>a red square</think><answer>C</answer>"
QUESTION = "What shape is shown?\nA. a circle\nB. a line\nC. a red square"
# Enough for the tiny model to reproduce MEMORISED exactly, greedy, on all three clips (about 40 s on 2 cores).
MEMORISE = ["--rank", "8", "--alpha", "64", "--lr", "3e-3", "--dropout", "0", "--max-steps", "40"]


@pytest.fixture(scope="module")
def clips() -> list[Path]:
    return [make_clip(), make_clip(seconds=4.0, size="640x360", fps=25),
            make_clip(seconds=5.0, size="240x320", fps=24, audio=False)]


@pytest.fixture(scope="module")
def dataset(clips: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three clips, one question, one reply: the UI's text form twice and the messages form once."""
    folder = tmp_path_factory.mktemp("training-data")
    lines = [{"video_path": str(clip), "text": f"USER: {QUESTION}\nASSISTANT: {MEMORISED}"} for clip in clips[:2]]
    lines.append({"video_path": str(clips[2]), "messages": [{"role": "user", "content": QUESTION},
                                                            {"role": "assistant", "content": MEMORISED}]})
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def run(module: str, *args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([str(VLLM_PYTHON), "-m", module, *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def finetune(dataset: Path, base: Path, out: Path, *args: object) -> subprocess.CompletedProcess[str]:
    proc = run("training.finetune", "--data", dataset, "--base", base, "--out", out, "--no-progress", *args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def ask(client: openai.OpenAI, model: str, url: str) -> Any:
    return client.chat.completions.create(
        model=model, temperature=0, max_tokens=64, extra_body={"vchat": {"iterations": 1}},
        messages=[{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},  # type: ignore[list-item]
                                               {"type": "text", "text": QUESTION}]}])


def check_exported(adapter: Path, base: Path, dataset: Path) -> dict[str, Any]:
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 8, 64)
    assert not config["use_dora"] and config["bias"] == "none" and not config["modules_to_save"]
    assert config["base_model_name_or_path"] == str(base.resolve())
    targets = config["target_modules"]
    assert re.fullmatch(targets, "model.language_model.layers.1.mlp.down_proj")
    assert not re.fullmatch(targets, "model.visual.blocks.0.mlp.down_proj")
    names = tensor_names(adapter / "adapter_model.safetensors")
    assert len(names) == 2 * 7 * 2  # 2 layers x q/k/v/o/gate/up/down x A/B
    assert all(".language_model.layers." in n and n.endswith((".lora_A.weight", ".lora_B.weight")) for n in names)
    manifest = json.loads((adapter / "vchat-adapter.json").read_text())
    assert manifest["name"] == adapter.name
    assert manifest["base_model"] == manifest["base_model_path"] == str(base.resolve())
    assert manifest["served_model_name"] == "videochat-r1.5"
    assert manifest["dataset_sha256"] == hashlib.sha256(dataset.read_bytes()).hexdigest()
    assert manifest["samples"] == 3 and (manifest["r"], manifest["lora_alpha"]) == (8, 64)
    assert manifest["target_modules"] == targets and manifest["trainer_version"] == "0.1.0"
    assert math.isfinite(manifest["final_loss"])
    assert datetime.fromisoformat(manifest["created_at"]).utcoffset() is not None
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                         "vchat-adapter.json"]
    return manifest


@pytest.mark.vllm
def test_memorised_reply_is_served_by_name_through_the_gateway(
        taught_model: Path, dataset: Path, clips: list[Path], vllm: VllmHandle, gateway_factory: GatewayFactory,
        origin: Origin, tmp_path: Path) -> None:
    adapter = tmp_path / "adapters" / "red-square"
    finetune(dataset, taught_model, adapter, *MEMORISE)
    assert check_exported(adapter, taught_model, dataset)["steps"] == 40
    assert [p.name for p in adapter.parent.iterdir() if p.name.startswith(".")] == [".red-square.checkpoints"]

    # Greedy, with vLLM's positions, in float32: the adapter has learnt the reply on every clip.
    checked = run("training.check", "--adapter", adapter, "--data", dataset)
    assert checked.returncode == 0, checked.stderr[-4000:]
    replies = [json.loads(line) for line in checked.stdout.splitlines()]
    assert [r["got"] for r in replies] == [MEMORISED] * 3

    # Served the way users do it: `vchat adapters add` validates, copies into the adapters dir, hot-loads.
    store = tmp_path / "store"
    env = {**os.environ, "VCHAT_ADAPTERS_DIR": str(store), "VCHAT_MODEL": str(taught_model),
           "VCHAT_MAX_LORA_RANK": "8", "VCHAT_VLLM_REPLICAS": vllm.base_url}
    added = subprocess.run([sys.executable, "-m", "vchat", "adapters", "add", str(adapter)], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert added.returncode == 0, added.stdout + added.stderr
    try:
        gateway = gateway_factory(vllm_url=vllm.base_url)
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=300)
        assert adapter.name in {model.id for model in client.models.list().data}
        url = origin.file("/clip.mp4", clips[0].read_bytes())
        tuned = ask(client, adapter.name, url)
        base = ask(client, "videochat-r1.5", url)
        assert tuned.model == adapter.name
        assert tuned.choices[0].message.content == "C"
        assert "a red square" in (tuned.choices[0].message.model_extra or {})["reasoning_content"]
        assert base.choices[0].message.content == "B"
    finally:
        subprocess.run([sys.executable, "-m", "vchat", "adapters", "remove", adapter.name], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)


def test_resume_continues_from_the_latest_checkpoint_exactly(tiny_model: Path, dataset: Path,
                                                               tmp_path: Path) -> None:
    resumed, straight = tmp_path / "adapters" / "resumed", tmp_path / "adapters" / "straight"
    first = finetune(dataset, tiny_model, resumed, "--max-steps", 4, "--checkpoint-every", 2)
    checkpoints = tmp_path / "adapters" / ".resumed.checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000002", "step-000004"]
    assert json.loads((resumed / "vchat-adapter.json").read_text())["steps"] == 4
    assert "resumed from" not in first.stderr

    second = finetune(dataset, tiny_model, resumed, "--max-steps", 6, "--checkpoint-every", 2, "--resume")
    assert "resumed from step 4" in second.stderr
    manifest = json.loads((resumed / "vchat-adapter.json").read_text())
    assert (manifest["steps"], manifest["training"]["resumed_from_step"]) == (6, 4)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000004", "step-000006"]

    # Same seed, six steps in one go (LoRA dropout on): bit-identical weights and the same last loss.
    finetune(dataset, tiny_model, straight, "--max-steps", 6)
    weights = "adapter_model.safetensors"
    assert (resumed / weights).read_bytes() == (straight / weights).read_bytes()
    assert json.loads((straight / "vchat-adapter.json").read_text())["final_loss"] == manifest["final_loss"]


def test_resume_refuses_a_checkpoint_of_another_run(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "adapters" / "x"
    finetune(dataset, tiny_model, out, "--max-steps", 1)
    proc = run("training.finetune", "--data", dataset, "--base", tiny_model, "--out", out, "--resume",
               "--max-steps", 2, "--rank", 16, "--no-progress")
    assert proc.returncode == 2
    assert "belongs to a different run (rank: 8 -> 16)" in proc.stderr


def test_4bit_needs_a_gpu_and_nothing_is_written(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "adapters" / "q4"
    proc = run("training.finetune", "--data", dataset, "--base", tiny_model, "--out", out, "--load-in-4bit")
    assert proc.returncode == 2
    assert "--load-in-4bit needs a CUDA GPU" in proc.stderr
    assert not out.parent.exists()
