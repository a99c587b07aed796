"""The rules vLLM applies to a LoRA adapter, checked before vLLM is touched, each failure in plain words."""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

# vLLM's --max-lora-rank accepts only these ranks, so adapters must use one of them too.
ALLOWED_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Weights of these modules mean the adapter replaces embeddings or the output head (modules_to_save).
_FULL_MODULES = ("embed_tokens", "lm_head")


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter folder says about itself."""

    name: str
    path: Path
    rank: int | None
    alpha: float | None
    target_modules: tuple[str, ...]
    base_model: str | None
    manifest: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    info: AdapterInfo
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_name(name: str) -> str | None:
    if not _NAME.match(name):
        return (f"the adapter name '{name}' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                "or digit")
    if name.endswith("+gemini"):
        return "adapter names may not end in '+gemini' (that suffix selects a merged model)"
    return None


def validate(path: Path, *, name: str | None = None, base_models: tuple[str, ...] = (),
             max_rank: int | None = None) -> Verdict:
    """Check an adapter folder against vLLM's rules; ``base_models``: the names/paths the served base goes by."""
    name = name or path.name
    problems: list[str] = []
    if (bad := check_name(name)) is not None:
        problems.append(bad)
    config: dict[str, object] = {}
    config_path = path / "adapter_config.json"
    if not path.is_dir():
        problems.append(f"'{path}' is not a folder")
    elif not config_path.is_file():
        problems.append("adapter_config.json is missing")
    else:
        try:
            loaded = json.loads(config_path.read_text())
            config = loaded if isinstance(loaded, dict) else {}
            if not isinstance(loaded, dict):
                problems.append("adapter_config.json is not a JSON object")
        except (OSError, ValueError) as exc:
            problems.append(f"adapter_config.json is not valid JSON ({exc})")
    rank = config.get("r")
    alpha = config.get("lora_alpha")
    targets = config.get("target_modules")
    base = config.get("base_model_name_or_path")
    if config:
        problems += _config_problems(config, rank, alpha, targets, base, base_models, max_rank)
    if path.is_dir():
        problems += _weight_problems(path)
    manifest: dict[str, object] = {}
    if (path / "vchat-adapter.json").is_file():
        try:
            manifest = json.loads((path / "vchat-adapter.json").read_text())
        except (OSError, ValueError):
            problems.append("vchat-adapter.json is not valid JSON")
    info = AdapterInfo(
        name=name, path=path, rank=rank if isinstance(rank, int) else None,
        alpha=float(alpha) if isinstance(alpha, int | float) else None,
        target_modules=tuple(targets) if isinstance(targets, list) else (str(targets),) if targets else (),
        base_model=str(base) if base else None, manifest=manifest,
    )
    return Verdict(info, tuple(problems))


def _config_problems(config: dict[str, object], rank: object, alpha: object, targets: object, base: object,
                     base_models: tuple[str, ...], max_rank: int | None) -> list[str]:
    problems = []
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}; vLLM serves LoRA adapters only")
    if not isinstance(rank, int) or rank not in ALLOWED_RANKS:
        problems.append(f"rank r={rank!r} is not one vLLM accepts ({', '.join(map(str, ALLOWED_RANKS))})")
    elif max_rank is not None and rank > max_rank:
        problems.append(f"rank r={rank} is above the server's --max-lora-rank {max_rank}")
    if not isinstance(alpha, int | float):
        problems.append("lora_alpha is missing")
    if not targets:
        problems.append("target_modules is missing")
    if config.get("use_dora"):
        problems.append("DoRA adapters (use_dora: true) are not supported by vLLM")
    if config.get("bias", "none") not in ("none", None):
        problems.append(f"bias={config.get('bias')!r}: vLLM needs bias 'none'")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save={config.get('modules_to_save')!r}: vLLM cannot serve adapters that "
                        "replace whole modules")
    if not base:
        problems.append("base_model_name_or_path is missing")
    elif base_models and not _same_base(str(base), base_models):
        problems.append(f"it was trained on another base model ({base}); this server serves "
                        f"{' / '.join(base_models)}")
    return problems


def _same_base(base: str, base_models: tuple[str, ...]) -> bool:
    wanted = {b.rstrip("/") for b in base_models} | {Path(b).name for b in base_models if "/" in b}
    return base.rstrip("/") in wanted or Path(base.rstrip("/")).name in wanted


def _weight_problems(path: Path) -> list[str]:
    weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
    if weights is None:
        return ["the weights (adapter_model.safetensors) are missing"]
    if weights.suffix != ".safetensors":
        return []
    try:
        keys = _safetensors_keys(weights)
    except (OSError, ValueError) as exc:
        return [f"{weights.name} is unreadable ({exc})"]
    problems = []
    if not any("lora_A" in key for key in keys):
        problems.append(f"{weights.name} holds no LoRA weights")
    full = sorted({m for key in keys for m in _FULL_MODULES if m in key and "lora_" not in key})
    if full:
        problems.append(f"{weights.name} replaces whole modules ({', '.join(full)}); vLLM cannot serve that")
    if any(key.endswith(".bias") for key in keys):
        problems.append(f"{weights.name} holds bias weights; vLLM needs bias 'none'")
    return problems


def _safetensors_keys(path: Path) -> list[str]:
    """Tensor names from a safetensors header (8-byte little-endian length, then JSON) — no torch needed."""
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise ValueError("too short")
        (length,) = struct.unpack("<Q", raw)
        if length > 100 * 2**20:
            raise ValueError("header too large")
        header = json.loads(handle.read(length))
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    return [key for key in header if key != "__metadata__"]
