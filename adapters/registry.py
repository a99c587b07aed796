"""Adapters in a directory (a shared volume in compose and Kubernetes): list, add (validate + atomic copy), remove."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from adapters.validate import AdapterInfo, Verdict, check_name, validate


class AdapterError(Exception):
    """Raised when an adapter cannot be added or removed; the message says why in plain words."""

    def __init__(self, message: str, *, status: int = 400, code: str = "invalid_adapter") -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


class AdapterRegistry:
    """``root/<name>/`` is one adapter; half-copied adapters live in ``root/.incoming-*`` until renamed in."""

    def __init__(self, root: Path, *, base_models: tuple[str, ...] = (), max_rank: int | None = None) -> None:
        self.root = root
        self.base_models = base_models
        self.max_rank = max_rank

    def check(self, path: Path, name: str | None = None) -> Verdict:
        return validate(path, name=name, base_models=self.base_models, max_rank=self.max_rank)

    def list(self) -> list[AdapterInfo]:
        if not self.root.is_dir():
            return []
        return [self.check(folder).info for folder in sorted(self.root.iterdir())
                if folder.is_dir() and not folder.name.startswith(".")]

    def get(self, name: str) -> AdapterInfo | None:
        if check_name(name) is not None:
            return None
        folder = self.root / name
        return self.check(folder).info if folder.is_dir() else None

    def add(self, source: Path, name: str | None = None, *, replace: bool = False) -> AdapterInfo:
        """Validate ``source`` and copy it in as ``name`` (atomically: a temp folder renamed into place)."""
        name = name or source.name
        verdict = self.check(source, name)
        if not verdict.ok:
            raise AdapterError(f"Adapter '{name}' refused: " + "; ".join(verdict.problems) + ".")
        target = self.root / name
        if target.exists() and not replace:
            raise AdapterError(f"An adapter named '{name}' already exists.", status=409, code="adapter_exists")
        self.root.mkdir(parents=True, exist_ok=True)
        incoming = self.root / f".incoming-{name}-{uuid.uuid4().hex[:8]}"
        try:
            shutil.copytree(source, incoming, ignore=shutil.ignore_patterns("checkpoint-*", "optimizer*"))
            if target.exists():
                self._discard(target)
            os.rename(incoming, target)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        return self.check(target).info

    def remove(self, name: str) -> AdapterInfo:
        info = self.get(name)
        if info is None:
            raise AdapterError(f"No adapter named '{name}'.", status=404, code="adapter_not_found")
        self._discard(self.root / name)
        return info

    def _discard(self, folder: Path) -> None:
        doomed = self.root / f".removed-{folder.name}-{uuid.uuid4().hex[:8]}"
        os.rename(folder, doomed)  # gone from listings at once; the bytes follow
        shutil.rmtree(doomed, ignore_errors=True)
