"""``python -m vllm_launch.render [compose|k8s|env|all] [--check]``: writes what the deployment files derive from
code — vLLM's command line (``build_command``) and the gateway's settings — into docker-compose.yml and k8s/
between ``# >>> vllm_launch.render: <block>`` / ``# <<< vllm_launch.render`` markers, and writes .env.example.
``--check`` writes nothing and fails when a file differs, so a flag edited in one place only fails CI.

The deployment's own choices (image tags, container paths, the model) are the constants in ``deployment.py``;
everything else is the settings classes' defaults (``envvars.py``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from vllm_launch.deployment import (
    CPU,
    GPU,
    REQUIRED_SECRETS,
    ROOT,
    SECRET_NAME,
    VLLM_DEPLOY_ENV,
    VLLM_SERVICE,
    VllmTarget,
    vllm_url,
)
from vllm_launch.envvars import compose_gateway_env, env_example, gateway_config, secret_variables

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


# --- YAML ---------------------------------------------------------------------------------------------------

class _BlockDumper(yaml.SafeDumper):
    """The deployment files' style: block style with sequences indented under their key, plain keys, and every
    string value double-quoted, so that "4", "true" or "0.9" stays a string for any reader."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def represent_mapping(self, tag: str, mapping: Any, flow_style: bool | None = None) -> yaml.MappingNode:
        node = super().represent_mapping(tag, mapping, flow_style)
        for key, _ in node.value:
            key.style = None  # plain where YAML allows it, quoted where it does not
        return node


def _double_quoted(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')


_BlockDumper.add_representer(str, _double_quoted)


def to_yaml(value: Any, indent: int = 0) -> list[str]:
    """``value`` (nested dicts, lists and scalars) as block-style YAML lines, indented by ``indent`` spaces."""
    text = yaml.dump(value, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False,
                     width=sys.maxsize)  # never fold a long value onto a second line
    return [" " * indent + line for line in text.splitlines()]


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
