"""Training checkpoints: adapter weights, optimizer, step and RNG state, written atomically; resume from the latest."""

from __future__ import annotations

import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "state.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(RuntimeError):
    """Raised when --resume finds no checkpoint, or one made for a different run."""


@dataclass(frozen=True)
class Resumed:
    """What a checkpoint restores besides the weights and optimizer."""

    step: int
    losses: list[float]
    path: Path


def save(folder: Path, step: int, peft_model: Any, optimizer: Any, losses: list[float],
         fingerprint: dict[str, Any], keep: int) -> Path:
    """Write folder/step-NNNNNN (adapter, optimizer, RNG, step) via a temporary name; keep the newest ``keep``."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:06d}"
    tmp = folder / f".{final.name}.{secrets.token_hex(4)}.tmp"
    try:
        peft_model.save_pretrained(tmp / "adapter")
        state = {"step": step, "optimizer": optimizer.state_dict(), "losses": losses, "fingerprint": fingerprint,
                 "torch_rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
        torch.save(state, tmp / STATE_FILE)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in all_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def all_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in folder, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m[1]), p) for p in folder.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def restore(folder: Path, peft_model: Any, optimizer: Any, fingerprint: dict[str, Any]) -> Resumed:
    """Load the latest checkpoint into peft_model and optimizer; CheckpointError if none fits this run."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    found = all_checkpoints(folder)
    if not found:
        raise CheckpointError(f"--resume: no checkpoint in {folder}")
    path = found[-1]
    state = torch.load(path / STATE_FILE, weights_only=True, map_location="cpu")
    changed = {key: (state["fingerprint"].get(key), value) for key, value in fingerprint.items()
               if state["fingerprint"].get(key) != value}
    if changed:
        detail = ", ".join(f"{key}: {was!r} -> {now!r}" for key, (was, now) in changed.items())
        raise CheckpointError(f"--resume: {path} belongs to a different run ({detail})")
    device = next(p.device for p in peft_model.parameters())
    set_peft_model_state_dict(peft_model, load_file(str(path / "adapter" / "adapter_model.safetensors"),
                                                    device=str(device)))
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return Resumed(int(state["step"]), [float(x) for x in state["losses"]], path)
