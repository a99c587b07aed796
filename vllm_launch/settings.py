"""Settings of the vLLM launcher (prefix ``VCHAT_``): the single source of vLLM's command line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from vchat_settings import SharedSettings

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class LaunchSettings(SharedSettings):
    """How to run vLLM: which model, where, with which limits and adapters (the settings it shares with the
    gateway, model and served name, adapter and media folders, API key and LoRA rank, are
    ``vchat_settings.SharedSettings``)."""

    vllm_host: str = Field("127.0.0.1", description="Address vLLM listens on (keep it private).")
    vllm_port: int = Field(8001, ge=1, le=65535, description="Port vLLM listens on.")
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="`auto` picks `gpu` when `nvidia-smi` lists a GPU, else `cpu`."
    )
    dtype: str = Field("auto", description="vLLM `--dtype`; `auto` means bfloat16 on CPU, the model's own on GPU.")
    max_model_len: int | None = Field(
        None, ge=256, description="vLLM `--max-model-len`; empty: 8192 on CPU (the tiny test model), 40960 on GPU (a "
        "round of 512 frames at the smallest size, 36,864 visual tokens, plus its prompt and 2,048 reply tokens).",
    )
    max_loras: int = Field(4, ge=1, le=64, description="LoRA adapters active in one batch (`--max-loras`).")
    max_cpu_loras: int | None = Field(None, ge=1, description="Adapters kept in CPU memory (`--max-cpu-loras`).")
    limit_mm_per_prompt: dict[str, int] = Field(
        default_factory=lambda: {"image": 0, "video": 1},
        description="vLLM `--limit-mm-per-prompt` (JSON).",
    )
    vllm_python: Path | None = Field(
        None, description="Python of the vLLM environment; empty: `.venv-vllm/bin/python` if present."
    )
    vllm_version: str | None = Field(
        None, description="vLLM version the flags are built for; empty: read from the installed package."
    )
    cpu_kvcache_gb: int = Field(1, ge=1, description="KV cache size on CPU (`VLLM_CPU_KVCACHE_SPACE`, GiB).")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vLLM `--gpu-memory-utilization`.")
    vllm_startup_timeout_s: float = Field(900.0, gt=0, description="Deadline for vLLM's /health to answer 200.")
    vllm_extra_args: list[str] = Field(default_factory=list, description="Extra vLLM arguments (JSON list).")
    vllm_restart_max_failures: int = Field(
        5, ge=0, description="`make dev` / `python -m vllm_launch`: give up after this many fast vLLM failures in a "
        "row (0: never restart).",
    )
    vllm_restart_backoff_s: float = Field(2.0, gt=0, description="Wait before the first restart of a vLLM that died.")
    vllm_restart_backoff_max_s: float = Field(
        60.0, gt=0, description="Longest wait between restarts (the wait doubles after each fast failure)."
    )
    vllm_restart_reset_s: float = Field(
        300.0, gt=0, description="A vLLM healthy for this long before it dies was not a fast failure: the count and "
        "the wait start over.",
    )
    vllm_stop_grace_s: float = Field(
        15.0, gt=0, description="On stop, SIGTERM to vLLM's process group; SIGKILL to what is left after this long."
    )

    @field_validator("model")
    @classmethod
    def _model_exists(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        path = Path(value).expanduser()
        if path.exists():
            if not (path / "config.json").is_file():
                raise ValueError(f"'{value}' has no config.json: not a model directory")
            return str(path.resolve())
        if _HUB_ID.match(value) and not value.startswith((".", "/", "~")):
            return value
        raise ValueError(f"model path '{value}' does not exist")

    @field_validator("limit_mm_per_prompt", mode="before")
    @classmethod
    def _json_dict(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value
