"""Adapters vLLM would refuse are refused here first, with the reason, and nothing is copied or loaded."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapters.registry import AdapterError, AdapterRegistry
from adapters.validate import validate
from tests.support.origin import Origin
from vllm_launch.stack import ROOT

BASE = "/models/videochat-r1.5"
GOOD_CONFIG: dict[str, Any] = {
    "peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "bias": "none",
    "use_dora": False, "modules_to_save": None, "base_model_name_or_path": BASE,
}


def safetensors(path: Path, names: list[str]) -> None:
    """A real (tiny) safetensors file: little-endian header length, JSON header, then the bytes."""
    header: dict[str, Any] = {}
    for index, name in enumerate(names):
        header[name] = {"dtype": "F32", "shape": [1], "data_offsets": [index * 4, index * 4 + 4]}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4 * len(names))


def adapter(root: Path, name: str = "good", weights: list[str] | None = None, **config: Any) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({**GOOD_CONFIG, **config}))
    safetensors(folder / "adapter_model.safetensors", weights or [
        "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_B.weight",
    ])
    return folder


def test_a_good_adapter_passes(tmp_path: Path) -> None:
    verdict = validate(adapter(tmp_path), base_models=("videochat-r1.5", BASE), max_rank=8)
    assert verdict.ok, verdict.problems
    assert verdict.info.rank == 8 and verdict.info.alpha == 16


@pytest.mark.parametrize(("config", "weights", "reason"), [
    ({"use_dora": True}, None, "DoRA"),
    ({"r": 7}, None, "rank r=7"),
    ({"r": 16}, None, "above the server's --max-lora-rank 8"),
    ({"modules_to_save": ["lm_head"]}, None, "modules_to_save"),
    ({"base_model_name_or_path": "Qwen/Qwen2-VL-2B-Instruct"}, None, "another base model"),
    ({"bias": "all"}, None, "bias"),
    ({"peft_type": "IA3"}, None, "LoRA adapters only"),
    ({"target_modules": []}, None, "target_modules"),
    ({}, ["base_model.model.lm_head.weight", "x.lora_A.weight"], "replaces whole modules"),
    ({}, ["x.q_proj.lora_A.weight", "x.q_proj.bias"], "bias weights"),
])
def test_adapters_vllm_refuses_are_refused_with_the_reason(tmp_path: Path, config: dict[str, Any],
                                                          weights: list[str] | None, reason: str) -> None:
    verdict = validate(adapter(tmp_path, weights=weights, **config), base_models=("videochat-r1.5", BASE),
                       max_rank=8)
    assert not verdict.ok
    assert any(reason in problem for problem in verdict.problems), verdict.problems


def test_broken_folders(tmp_path: Path) -> None:
    assert "is not a folder" in validate(tmp_path / "missing").problems[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "adapter_config.json is missing" in validate(empty).problems
    bad = adapter(tmp_path, "bad-json")
    (bad / "adapter_config.json").write_text("{nope")
    assert any("not valid JSON" in p for p in validate(bad).problems)
    no_weights = adapter(tmp_path, "no-weights")
    (no_weights / "adapter_model.safetensors").unlink()
    assert any("weights" in p for p in validate(no_weights).problems)
    garbage = adapter(tmp_path, "garbage")
    (garbage / "adapter_model.safetensors").write_bytes(b"\xff" * 3)
    assert any("unreadable" in p for p in validate(garbage).problems)
    assert any("name" in p for p in validate(adapter(tmp_path, "x+gemini")).problems)


def test_registry_add_is_atomic_and_refuses_before_copying(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "store", base_models=("videochat-r1.5", BASE), max_rank=8)
    with pytest.raises(AdapterError, match="DoRA"):
        registry.add(adapter(tmp_path / "src", "dora", use_dora=True))
    assert not (tmp_path / "store").exists() or os.listdir(tmp_path / "store") == []
    info = registry.add(adapter(tmp_path / "src", "good"))
    assert info.name == "good" and (tmp_path / "store" / "good" / "adapter_config.json").is_file()
    with pytest.raises(AdapterError) as taken:
        registry.add(adapter(tmp_path / "src2", "good"))
    assert taken.value.status == 409
    assert [i.name for i in registry.list()] == ["good"]
    registry.remove("good")
    assert registry.list() == [] and os.listdir(tmp_path / "store") == []
    with pytest.raises(AdapterError) as missing:
        registry.remove("good")
    assert missing.value.status == 404


def test_cli_refuses_without_touching_vllm(tmp_path: Path, origin: Origin) -> None:
    # The "replica" is an origin that counts hits: a refused adapter must not cause a single request.
    env = {**os.environ, "VCHAT_ADAPTERS_DIR": str(tmp_path / "store"), "VCHAT_MODEL": BASE,
           "VCHAT_MAX_LORA_RANK": "8", "VCHAT_VLLM_REPLICAS": origin.url("")}
    for config in ({"use_dora": True}, {"r": 7}, {"modules_to_save": ["embed_tokens"]},
                   {"base_model_name_or_path": "someone/else"}):
        src = adapter(tmp_path / "src", f"a{len(os.listdir(tmp_path / 'src')) if (tmp_path / 'src').exists() else 0}",
                      **config)
        result = subprocess.run([sys.executable, "-m", "vchat", "adapters", "add", str(src)], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert "refused" in result.stderr
    assert sum(origin.hits.values()) == 0
    assert not (tmp_path / "store").exists() or os.listdir(tmp_path / "store") == []
