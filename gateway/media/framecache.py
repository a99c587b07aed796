"""Frames kept on disk beside their video, per size and frame index: shared across rounds, bounded by LRU."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import InsufficientStorage
from gateway.media.frame_index import FrameIndex, build_index, snap_to_keyframes
from gateway.media.frames import extract_frames, frame_name
from gateway.media.probe import Probe
from gateway.media.space import full_disk_refused
from gateway.media.store import write_json_atomic
from gateway.metrics import Metrics

INDEX_FILE = "index.json"
# Frame indices of a few videos stay parsed in memory (an hour at 30 fps is ~1 MB of pts).
INDEXES_IN_MEMORY = 16


@dataclass(frozen=True, slots=True)
class Frames:
    """JPEG frames at one size, and each one's time in seconds (the pts of the frame shown) and index."""

    jpegs: tuple[bytes, ...]
    times: tuple[float, ...]
    width: int
    height: int
    indices: tuple[int, ...] = ()

    def data_url(self) -> str:
        """vLLM's pre-sampled video: data:video/jpeg;base64,<f1>,<f2>,... (blocking: base64 of the frames)."""
        if not self.jpegs:
            raise ValueError("no frames to encode")
        return "data:video/jpeg;base64," + ",".join(base64.b64encode(jpeg).decode("ascii") for jpeg in self.jpegs)


class FrameCache:
    """Frames of cached videos under <object>/frames/: index.json, and <W>x<H>/<index>.jpg.

    Each size directory keeps at most max_frames files; the least recently used go first, never ones the
    caller is about to read. Concurrent requests for the same frames share one extraction, which is
    cancelled (its processes killed) only when every request waiting on it has gone. Building an index and each
    extraction are timed as the media stages ``index`` and ``frames`` on ``metrics``.
    """

    def __init__(self, *, max_frames: int, workers: int, timeout_s: float, metrics: Metrics) -> None:
        self.max_frames = max_frames
        self.metrics = metrics
        self.cores = workers
        self.workers = asyncio.Semaphore(workers)
        self.timeout_s = timeout_s
        self._indexes: OrderedDict[Path, FrameIndex] = OrderedDict()
        self._flights: dict[tuple[Path, tuple[int, ...]], tuple[asyncio.Task[None], list[int]]] = {}

    async def index(self, video: Path, found: Probe) -> FrameIndex:
        """The video's frame index: from memory, from index.json, or built (frames.build_index; then saved)."""
        path = video.parent / "frames" / INDEX_FILE
        cached = self._indexes.get(path)
        if cached is None:
            cached = await asyncio.to_thread(_load_index, path)
            if cached is None:
                with self.metrics.media_stage("index"):
                    cached = await build_index(video, found, timeout_s=self.timeout_s)
                # Kept in memory when the disk is full: the index only saves a later build (logged as full).
                with contextlib.suppress(InsufficientStorage), full_disk_refused(path.parent):
                    await asyncio.to_thread(_save_index, path, cached)
            self._indexes[path] = cached
            while len(self._indexes) > INDEXES_IN_MEMORY:
                self._indexes.popitem(last=False)
        self._indexes.move_to_end(path)
        return cached

    async def frames(self, video: Path, found: Probe, wanted: Sequence[int], *, width: int, height: int,
                     snap_s: float = 0.0, keep: Sequence[tuple[int, int]] = ()) -> Frames:
        """The wanted frames (repeats allowed) at width x height, extracting the ones not on disk yet.

        snap_s > 0 first moves each frame outside the keep ranges to a keyframe within snap_s seconds
        (frames.snap_to_keyframes); the indices and times returned are those of the frames shown.
        Raises InsufficientStorage when they do not fit on the disk (nothing partial is left).
        """
        index = await self.index(video, found)
        wanted = snap_to_keyframes(index, wanted, snap_s, keep)
        size_dir = video.parent / "frames" / f"{width}x{height}"
        with full_disk_refused(size_dir):
            return await self._frames(video, found, index, wanted, size_dir, width, height)

    async def _frames(self, video: Path, found: Probe, index: FrameIndex, wanted: Sequence[int], size_dir: Path,
                      width: int, height: int) -> Frames:
        for attempt in range(3):
            missing = await asyncio.to_thread(_missing, size_dir, wanted)
            if missing:
                await self._shared((size_dir, tuple(missing)), functools.partial(
                    self._extract, video, found, index, missing, width=width, height=height, out_dir=size_dir))
            try:
                jpegs = await asyncio.to_thread(_read_and_trim, size_dir, list(wanted), self.max_frames)
            except FileNotFoundError:
                # Another request's trim dropped a frame between extracting and reading it: extract it again.
                if attempt == 2:
                    raise
                continue
            return Frames(jpegs, tuple(round(index.time(i), 6) for i in wanted), width, height, tuple(wanted))
        raise AssertionError("unreachable")

    async def _extract(self, video: Path, found: Probe, index: FrameIndex, missing: list[int], *, width: int,
                       height: int, out_dir: Path) -> None:
        # Timed inside the shared flight: requests waiting on one extraction observe it once.
        with self.metrics.media_stage("frames"):
            await extract_frames(video, found, index, missing, width=width, height=height, out_dir=out_dir,
                                 workers=self.workers, cores=self.cores, timeout_s=self.timeout_s)

    async def _shared(self, key: tuple[Path, tuple[int, ...]], work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        flight = self._flights.get(key)
        if flight is None:
            task = asyncio.create_task(work())
            flight = (task, [0])
            self._flights[key] = flight
            task.add_done_callback(lambda _: self._flights.pop(key, None))
        task, waiting = flight
        waiting[0] += 1
        try:
            await asyncio.shield(task)
        finally:
            waiting[0] -= 1
            if waiting[0] == 0 and not task.done():
                # The last request that wanted these frames left: stop extracting and wait until it has stopped.
                task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.shield(task)


def _load_index(path: Path) -> FrameIndex | None:
    try:
        return FrameIndex.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_index(path: Path, index: FrameIndex) -> None:
    path.parent.mkdir(exist_ok=True)
    write_json_atomic(path, index.to_json(), path.parent)


def _missing(size_dir: Path, wanted: Sequence[int]) -> list[int]:
    size_dir.mkdir(parents=True, exist_ok=True)
    return sorted({frame for frame in wanted if not (size_dir / frame_name(frame)).is_file()})


def _read_and_trim(size_dir: Path, wanted: list[int], max_frames: int) -> tuple[bytes, ...]:
    """Read the wanted frames (marking them used), then drop the least recently used beyond max_frames."""
    jpegs = []
    for frame in wanted:
        path = size_dir / frame_name(frame)
        jpegs.append(path.read_bytes())
        os.utime(path)
    names = [entry for entry in os.scandir(size_dir) if entry.name.endswith(".jpg")]
    if len(names) > max_frames:
        keep = {frame_name(frame) for frame in wanted}
        names.sort(key=lambda entry: entry.stat().st_mtime_ns)
        for entry in names[: len(names) - max_frames]:
            if entry.name not in keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
    return tuple(jpegs)
