"""Puts the pieces together for a local run: the vLLM environment, the model, and the launch itself."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from vllm_launch.command import VllmCommand, build_command, detect_device, detect_vllm_version
from vllm_launch.server import LaunchError, VllmServer
from vllm_launch.settings import LaunchSettings

ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL_DIR = ROOT / "var" / "tiny-model"
TINY_WHISPER_DIR = ROOT / "var" / "tiny-whisper"


@dataclass(frozen=True)
class Launch:
    """Everything needed to start vLLM here: which Python, which model, on what device, with what command."""

    python: str
    model: str
    device: str
    command: VllmCommand


def vllm_python(settings: LaunchSettings) -> Path:
    """The Python that runs vLLM: the configured one, else the project's ``.venv-vllm``."""
    return settings.vllm_python or ROOT / ".venv-vllm" / "bin" / "python"


def ensure_vllm_installed(settings: LaunchSettings, device: str) -> Path:
    """Install the vLLM stack for ``device`` unless the configured Python already has it."""
    python = vllm_python(settings)
    if settings.vllm_python is not None:
        if not python.exists():
            raise LaunchError(f"VCHAT_VLLM_PYTHON={python} does not exist")
        return python
    script = ROOT / "vllm_launch" / ("install_gpu.sh" if device == "gpu" else "install_cpu.sh")
    subprocess.run(["bash", str(script), str(python.parent.parent)], check=True)
    return python


def ensure_tiny_model(python: Path, out_dir: Path = TINY_MODEL_DIR) -> Path:
    """Build the tiny test model into ``out_dir`` once (it is seeded, so a rebuild gives the same files)."""
    if (out_dir / "config.json").is_file() and (out_dir / "model.safetensors").is_file():
        return out_dir
    subprocess.run([str(python), "-m", "testmodel.tiny_model", str(out_dir)], check=True, cwd=ROOT,
                   stdout=sys.stderr)
    return out_dir


def ensure_tiny_whisper(python: Path, out_dir: Path = TINY_WHISPER_DIR) -> Path:
    """Build the tiny random-weight Whisper (faster-whisper's format) into ``out_dir`` once: ``make dev``'s speech
    model when VCHAT_TRANSCRIBE is on without VCHAT_ASR_MODEL (seconds; seeded)."""
    if (out_dir / "model.bin").is_file():
        return out_dir
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    subprocess.run([str(python), "-m", "testmodel.tiny_whisper", str(tmp)], check=True, cwd=ROOT, stdout=sys.stderr)
    tmp.rename(out_dir)
    return out_dir


def prepare(settings: LaunchSettings, *, install: bool = True) -> Launch:
    """Resolve device, vLLM install and model into a ready-to-run launch."""
    device = detect_device() if settings.device == "auto" else settings.device
    python = ensure_vllm_installed(settings, device) if install else vllm_python(settings)
    model = settings.model or str(ensure_tiny_model(python))
    version = settings.vllm_version or detect_vllm_version(str(python))
    settings.media_dir.mkdir(parents=True, exist_ok=True)
    command = build_command(settings, model=model, device=device, vllm_version=version)
    return Launch(python=str(python), model=model, device=device, command=command)


def server_for(launch: Launch, settings: LaunchSettings, log_path: Path) -> VllmServer:
    """An unstarted server process for ``launch``."""
    return VllmServer(launch.command.argv(launch.python), launch.command.env,
                      host=settings.vllm_host, port=settings.vllm_port, log_path=log_path)
