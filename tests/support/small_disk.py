"""A folder on a small filesystem, for full-disk tests: a tmpfs of ``size`` bytes mounted for the test where the
machine allows it (root), else an ordinary folder where ENOSPC is injected at the gateway's write seams once the
folder holds ``size`` bytes. Never a skip: a machine that cannot mount still runs every full-disk test."""

from __future__ import annotations

import errno
import io
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from gateway.media import frames, sanitize, space
from gateway.media.ffmpeg import ToolResult, run_tool

Mode = Literal["tmpfs", "injected"]
_ENOSPC = os.strerror(errno.ENOSPC)


@dataclass(frozen=True)
class SmallDisk:
    """The folder, its size, and how the size is enforced."""

    path: Path
    size: int
    mode: Mode

    def used(self) -> int:
        """Bytes in the files under the folder."""
        return _used(self.path)

    def files(self) -> list[str]:
        """Every file under the folder, relative to it (what a failed request must not have left)."""
        return sorted(str(Path(top, name).relative_to(self.path)) for top, _, names in os.walk(self.path)
                      for name in names)


@contextmanager
def small_disk(path: Path, size: int, monkeypatch: pytest.MonkeyPatch, *, inject: bool = False) -> Iterator[SmallDisk]:
    """``path`` (created) as a filesystem of ``size`` bytes: a tmpfs unless ``inject`` or mounting is refused."""
    path.mkdir(parents=True)
    if not inject and _mount(path, size):
        try:
            yield SmallDisk(path, size, "tmpfs")
        finally:
            # Lazily if something still holds it open: the test's result is decided, the mount must not outlive it.
            if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(path)], check=True, capture_output=True)
        return
    disk = SmallDisk(path, size, "injected")
    _inject(disk, monkeypatch)
    yield disk


def _mount(path: Path, size: int) -> bool:
    if os.geteuid() != 0:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                            capture_output=True)
    return result.returncode == 0


def _used(root: Path) -> int:
    total = 0
    for top, _, names in os.walk(root):
        for name in names:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except FileNotFoundError:
                continue
    return total


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


class _QuotaFile:
    """A file under the folder that writes only while the folder has room, short writes included (as a disk)."""

    def __init__(self, out: io.FileIO, disk: SmallDisk) -> None:
        self._out = out
        self._disk = disk

    def write(self, data: memoryview) -> int:
        room = self._disk.size - self._disk.used()
        if room <= 0:
            raise OSError(errno.ENOSPC, _ENOSPC)
        return self._out.write(data[:room])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)


def _inject(disk: SmallDisk, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC at the seams a full disk reaches: streamed bodies (Spool), ffmpeg's outputs, the free-space check."""
    real_free = space.free_bytes
    real_spool_init = space.Spool.__init__

    def free_bytes(path: Path) -> int:
        return max(disk.size - disk.used(), 0) if _inside(path, disk.path) else real_free(path)

    def spool_init(self: space.Spool, out: io.FileIO, path: Path, *args: Any) -> None:
        real_spool_init(self, _QuotaFile(out, disk) if _inside(path, disk.path) else out, path, *args)  # type: ignore[arg-type]

    async def quota_run_tool(args: list[str], *, timeout_s: float, stdin: bytes | None = None) -> ToolResult:
        result = await run_tool(args, timeout_s=timeout_s, stdin=stdin)
        if disk.used() > disk.size:
            # What ffmpeg prints when the disk refuses a write; its partial output is its caller's to remove.
            return ToolResult(result.stdout, f"av_interleaved_write_frame(): {_ENOSPC}", 1)
        return result

    monkeypatch.setattr(space, "free_bytes", free_bytes)
    monkeypatch.setattr(space.Spool, "__init__", spool_init)
    monkeypatch.setattr(sanitize, "run_tool", quota_run_tool)
    monkeypatch.setattr(frames, "run_tool", quota_run_tool)
