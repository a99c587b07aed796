"""Writes the trained adapter as vLLM loads it (checked against vLLM's rules) plus its manifest, atomically."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.validate import validate

MANIFEST = "vchat-adapter.json"
CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"


class ExportError(RuntimeError):
    """Raised when the adapter would not load in vLLM; nothing is written then."""


def tensor_names(weights: Path) -> list[str]:
    """Tensor names in a safetensors file, read from its header (no torch)."""
    with weights.open("rb") as file:
        (size,) = struct.unpack("<Q", file.read(8))
        header: dict[str, Any] = json.loads(file.read(size))
    return [name for name in header if name != "__metadata__"]


def weight_problems(weights: Path) -> list[str]:
    """Tensors that are not LoRA A/B matrices of the language model."""
    names = tensor_names(weights)
    if not names:
        return ["the adapter has no weights"]
    stray = [n for n in names if "visual" in n or not n.endswith((".lora_A.weight", ".lora_B.weight"))]
    return [f"unexpected tensors (not language-model LoRA A/B): {stray[:3]}"] if stray else []


def manifest(*, name: str, base_path: Path, base_name: str, served_name: str, config: dict[str, Any],
             training: dict[str, Any], dataset_sha256: str, samples: int, steps: int, final_loss: float,
             trainer_version: str) -> dict[str, Any]:
    """The vchat-adapter.json document: what the adapter is for and how it was made."""
    return {
        "format": 1, "name": name, "base_model": base_name, "base_model_path": str(base_path),
        "served_model_name": served_name, "dataset_sha256": dataset_sha256, "samples": samples, "steps": steps,
        "final_loss": round(final_loss, 6), "r": config["r"], "lora_alpha": config["lora_alpha"],
        "target_modules": config["target_modules"], "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "trainer_version": trainer_version, "training": training,
    }


def export(peft_model: Any, out: Path, *, base_name: str, document: dict[str, Any]) -> Path:
    """Save peft_model's adapter to out with base_model_name_or_path and the manifest; all or nothing.

    Everything is written to a hidden temporary folder beside out and checked, then renamed into place
    (an existing out is swapped out and removed only after the rename). Raises ExportError.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.export-{secrets.token_hex(4)}"
    try:
        peft_model.save_pretrained(tmp)
        (tmp / "README.md").unlink(missing_ok=True)  # peft's model-card stub
        config = json.loads((tmp / CONFIG).read_text())
        config.update(base_model_name_or_path=base_name, modules_to_save=None, use_dora=False, bias="none")
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (tmp / MANIFEST).write_text(json.dumps(document, indent=2) + "\n")
        # The registry's rules (vLLM's), plus ours: nothing but language-model LoRA matrices.
        problems = [*validate(tmp, name=out.name).problems, *weight_problems(tmp / WEIGHTS)]
        if problems:
            raise ExportError("the adapter would not load in vLLM: " + "; ".join(problems))
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _swap_in(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
