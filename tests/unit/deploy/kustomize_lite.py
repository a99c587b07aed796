"""The subset of kustomize that k8s/ uses — resources, namespace, images, JSON 6902 patches — in Python, so the
manifests render without kubectl. Anything else in a kustomization is refused, not ignored; a test checks that
this renders exactly what ``kubectl kustomize`` does whenever kubectl is installed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
                  "CustomResourceDefinition", "PriorityClass"}
POD_SPEC_PATHS = {"Deployment": ("spec", "template", "spec"), "StatefulSet": ("spec", "template", "spec"),
                  "DaemonSet": ("spec", "template", "spec"), "Job": ("spec", "template", "spec"),
                  "Pod": ("spec",)}


class Unsupported(Exception):
    """Raised when a kustomization uses a feature this subset does not implement."""


def build(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize directory`` would print (in no particular order)."""
    kustomization = _load_kustomization(directory)
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise Unsupported(f"{directory}: kustomization fields {sorted(unknown)} are not implemented")
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects += build(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    for patch in kustomization.get("patches", []):
        _patch(directory, objects, patch)
    for image in kustomization.get("images", []):
        for obj in objects:
            _set_image(obj, image)
    return objects


def _load_kustomization(directory: Path) -> dict[str, Any]:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (directory / name).is_file():
            return dict(yaml.safe_load((directory / name).read_text()))
    raise FileNotFoundError(f"no kustomization in {directory}")


def _matches(obj: dict[str, Any], target: dict[str, Any]) -> bool:
    unknown = set(target) - {"kind", "name", "namespace", "group", "version"}
    if unknown:
        raise Unsupported(f"patch target fields {sorted(unknown)} are not implemented")
    group, _, version = obj["apiVersion"].rpartition("/")
    actual = {"kind": obj["kind"], "name": obj["metadata"]["name"], "group": group, "version": version,
              "namespace": obj["metadata"].get("namespace")}
    return all(actual[key] == value for key, value in target.items())


def _patch(directory: Path, objects: list[dict[str, Any]], patch: dict[str, Any]) -> None:
    text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
    operations = yaml.safe_load(text)
    if not isinstance(operations, list):
        raise Unsupported("strategic-merge patches are not implemented; use JSON 6902 operations")
    hits = [obj for obj in objects if _matches(obj, patch.get("target", {}))]
    if not hits:
        raise ValueError(f"patch target {patch.get('target')} matches nothing")
    for obj in hits:
        for operation in operations:
            _apply(obj, operation)


def _pointer(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.lstrip("/").split("/")]


def _apply(obj: dict[str, Any], operation: dict[str, Any]) -> None:
    *parents, last = _pointer(operation["path"])
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    op = operation["op"]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(node, list):
        if op == "add":
            node.insert(len(node) if last == "-" else int(last), value)
        elif op == "replace":
            node[int(last)] = value
        elif op == "remove":
            del node[int(last)]
        else:
            raise Unsupported(f"JSON patch op {op!r} is not implemented")
        return
    if op in ("add", "replace"):
        if op == "replace" and last not in node:
            raise ValueError(f"replace of a missing path {operation['path']}")
        node[last] = value
    elif op == "remove":
        del node[last]
    else:
        raise Unsupported(f"JSON patch op {op!r} is not implemented")


def _set_image(obj: dict[str, Any], image: dict[str, Any]) -> None:
    spec: Any = obj
    for key in POD_SPEC_PATHS.get(obj["kind"], ()):
        spec = spec.get(key, {}) if isinstance(spec, dict) else {}
    if obj["kind"] not in POD_SPEC_PATHS:
        return
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        name, tag = _split(container["image"])
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{name}@{image['digest']}"
        else:
            tag = image.get("newTag", tag)
            container["image"] = f"{name}:{tag}" if tag else name


def _split(reference: str) -> tuple[str, str | None]:
    """(name, tag) of an image reference; a registry port is not a tag."""
    name = reference.partition("@")[0]
    head, sep, tag = name.rpartition(":")
    if sep and "/" not in tag:
        return head, tag
    return name, None
