"""Builds vLLM's server arguments and environment from ``LaunchSettings`` — the one source of truth
that the dev runner, the tests, docker compose and Kubernetes all use."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from vllm_launch.settings import LaunchSettings

# The first vLLM release that refuses per-request media_io_kwargs / mm_processor_kwargs unless the
# server opts in with --trust-request-mm-kwargs (older releases have no such flag).
TRUST_MM_KWARGS_SINCE = (0, 31)
# vLLM's context when VCHAT_MAX_MODEL_LEN is empty. On a GPU it must hold VideoChat-R1.5's own frame count: 512 frames
# at the smallest frame size are 36,864 visual tokens (the gateway's VCHAT_MAX_VISUAL_TOKENS), plus the prompt and a
# 2,048-token reply. The tiny CPU model keeps vLLM-CPU's memory small.
DEFAULT_CONTEXT = {"cpu": 8192, "gpu": 40960}
# vLLM's multimodal processor cache (GiB of host memory): its default, about 30 videos of VideoChat-R1.5's frames.
MM_PROCESSOR_CACHE_GB = 4


@dataclass(frozen=True)
class VllmCommand:
    """A complete vLLM launch: the server arguments (after the program) and extra environment."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, python: str) -> list[str]:
        """The full command line for a Python that has vLLM installed."""
        return [python, "-m", "vllm.entrypoints.openai.api_server", *self.args]


def detect_device() -> str:
    """``gpu`` when ``nvidia-smi`` lists at least one GPU, else ``cpu``."""
    if shutil.which("nvidia-smi") is None:
        return "cpu"
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "cpu"
    return "gpu" if out.returncode == 0 and "GPU" in out.stdout else "cpu"


def detect_vllm_version(python: str) -> str | None:
    """The version of vLLM installed for ``python`` (distribution ``vllm`` or ``vllm-cpu``), if any."""
    probe = (
        "import importlib.metadata as m\n"
        "for name in ('vllm', 'vllm-cpu'):\n"
        "    try:\n        print(m.version(name)); break\n"
        "    except m.PackageNotFoundError:\n        pass\n"
    )
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def lora_modules(adapters_dir: Path, base_model_name: str) -> list[str]:
    """One ``--lora-modules`` JSON value per adapter folder (a folder holding ``adapter_config.json``)."""
    if not adapters_dir.is_dir():
        return []
    modules = []
    for folder in sorted(adapters_dir.iterdir()):
        # Dot-folders are work in progress (an export or a copy being renamed into place).
        if not folder.name.startswith(".") and (folder / "adapter_config.json").is_file():
            modules.append(json.dumps(
                {"name": folder.name, "path": str(folder.resolve()), "base_model_name": base_model_name},
                separators=(",", ":"),
            ))
    return modules


def build_command(settings: LaunchSettings, *, model: str, device: str, vllm_version: str | None) -> VllmCommand:
    """vLLM's arguments and environment for ``model`` on ``device`` (``cpu`` or ``gpu``)."""
    dtype = settings.dtype
    if dtype == "auto" and device == "cpu":
        dtype = "bfloat16"
    context = settings.max_model_len or DEFAULT_CONTEXT[device]
    args = [
        "--model", model,
        "--served-model-name", settings.served_model_name,
        "--host", settings.vllm_host,
        "--port", str(settings.vllm_port),
        "--dtype", dtype,
        "--max-model-len", str(context),
        "--enable-lora",
        "--max-loras", str(settings.max_loras),
        "--max-lora-rank", str(settings.max_lora_rank),
        "--limit-mm-per-prompt", json.dumps(settings.limit_mm_per_prompt, separators=(",", ":")),
        "--allowed-local-media-path", str(settings.media_dir.resolve()),
    ]
    if settings.max_cpu_loras is not None:
        args += ["--max-cpu-loras", str(settings.max_cpu_loras)]
    modules = lora_modules(settings.adapters_dir, settings.served_model_name)
    if modules:
        args += ["--lora-modules", *modules]
    if vllm_version is None or _version_tuple(vllm_version) >= TRUST_MM_KWARGS_SINCE:
        # The gateway is vLLM's only client and builds these kwargs itself from an allow-list.
        args.append("--trust-request-mm-kwargs")
    # vLLM sizes its encoder cache (the visual tokens one request may bring) as max_num_batched_tokens, or the model's
    # largest video by its own processor if that is larger (vllm/config/scheduler.py, v1/core/encoder_cache_manager.py).
    # Neither is the context the gateway plans for: vLLM-CPU's default is 2048 batched tokens (about 30 frames a round
    # where the tiny model's context holds 80), and on a GPU at the 7B shape the cache held 8,960 tokens (measured on
    # an H100 with vLLM 0.26.0, 2026-12-07): 144 frames of an hour-long video instead of the 512 its context holds, and
    # the first such question refused and retried. A budget of the whole context lets a round hold what the context
    # holds, prefills it in one step, and is known before the first question.
    args += ["--max-num-batched-tokens", str(context)]
    if device == "gpu":
        args += ["--gpu-memory-utilization", str(settings.gpu_memory_utilization)]
        # Said, not left to vLLM's defaults (the same today; a benchmark turns them off): a follow-up question about a
        # video sends round 1's frames again, byte for byte under the same uuid, and these caches make it cheap.
        # The prefix cache keeps the KV of the template and the video (its blocks are keyed by the video's uuid); the
        # processor cache keeps the processed frames of recent videos in host memory (about 0.14 GB for 120 frames of
        # 420x224; both API and engine processes hold one); the encoder cache (GPU, sized by vLLM: the largest video
        # the context holds, about one video) keeps the vision tower's output for a video still in it.
        args += ["--enable-prefix-caching", "--mm-processor-cache-gb", str(MM_PROCESSOR_CACHE_GB)]
    if settings.vllm_api_key is not None:
        args += ["--api-key", settings.vllm_api_key.get_secret_value()]
    args += settings.vllm_extra_args

    env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    if device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(settings.cpu_kvcache_gb)
    return VllmCommand(args=args, env=env)
