"""The on-disk media cache: content-addressed objects, a URL index, atomic writes, LRU size bound, single flight."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from gateway.errors import InsufficientStorage
from gateway.media import space

logger = logging.getLogger(__name__)

T = TypeVar("T")


def url_key(url: str) -> str:
    """The index key of a URL (its SHA-256), so the index never holds URLs as file names."""
    return hashlib.sha256(url.encode()).hexdigest()


@dataclass(frozen=True)
class StoredObject:
    """One cached video: its directory (``video.mp4``, ``facts.json``, extracted frames) and content id."""

    id: str
    dir: Path

    @property
    def video(self) -> Path:
        return self.dir / "video.mp4"

    @property
    def facts_path(self) -> Path:
        return self.dir / "facts.json"


class MediaStore:
    """A directory of content-addressed video objects, bounded in size, safe against crashes and races.

    Layout: ``objects/<sha256 of the source bytes>/`` (complete objects only — each is built in ``tmp/`` and
    renamed into place), ``urls/<sha256 of the URL>.json`` (URL → object id), ``tmp/`` (work in progress,
    wiped at start-up, so a crash never leaves a half-written entry visible).
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.objects = root / "objects"
        self.urls = root / "urls"
        self.tmp = root / "tmp"
        self._flights: dict[str, asyncio.Future[Any]] = {}
        self._pins: dict[str, int] = {}
        self._evict_lock = asyncio.Lock()
        self._evicting: asyncio.Task[None] | None = None
        self._evict_again = False
        self._closed = False

    def open(self) -> None:
        """Create the layout and drop anything a crashed run left in ``tmp/``."""
        for folder in (self.objects, self.urls):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        # Frames are extracted beside their object (frames/<size>/.extract-<token>.tmp); a crash can leave one.
        for leftover in self.objects.glob("*/frames/*/.extract-*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)
        for partial in self.objects.glob("*/frames/.index.json.*"):
            partial.unlink(missing_ok=True)

    # --- temp space -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def temp_dir(self) -> AsyncIterator[Path]:
        """A fresh directory under ``tmp/``, removed on exit whatever happens (in a thread: it may hold a GiB)."""
        path = self.tmp / uuid.uuid4().hex
        with space.full_disk_refused(self.tmp):
            await asyncio.to_thread(path.mkdir)
        try:
            yield path
        finally:
            await _in_thread_to_the_end(shutil.rmtree, path, True)

    # --- objects ----------------------------------------------------------------------------------

    async def get(self, object_id: str) -> StoredObject | None:
        """The complete object with this id, marked as just used, or None."""
        return await asyncio.to_thread(self.find, object_id)

    def find(self, object_id: str) -> StoredObject | None:
        """``get``, blocking: for code already running in a worker thread."""
        if not _is_hex(object_id):
            return None
        folder = self.objects / object_id
        if not (folder / "video.mp4").is_file():
            return None
        _touch(folder)
        return StoredObject(object_id, folder)

    def commit(self, object_id: str, built_dir: Path) -> StoredObject:
        """Move a fully built directory into place atomically; if another build won the race, keep theirs."""
        target = self.objects / object_id
        try:
            os.rename(built_dir, target)
        except OSError:
            if not (target / "video.mp4").is_file():
                raise
            shutil.rmtree(built_dir, ignore_errors=True)
        _touch(target)
        return StoredObject(object_id, target)

    def remember_url(self, url: str, object_id: str, **extra: object) -> None:
        """Point ``url`` at an object (atomically replacing any older entry)."""
        record = {"object": object_id, "saved_at": time.time(), **extra}
        write_json_atomic(self.urls / f"{url_key(url)}.json", record, self.tmp)

    def lookup_url(self, url: str) -> tuple[StoredObject, dict[str, object]] | None:
        """The object a URL was fetched into, if it is still cached (blocking: call it in a thread)."""
        try:
            record = json.loads((self.urls / f"{url_key(url)}.json").read_text())
        except (OSError, ValueError):
            return None
        stored = self.find(str(record.get("object", "")))
        return (stored, record) if stored is not None else None

    # --- single flight ----------------------------------------------------------------------------

    async def single_flight(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` once for concurrent callers with the same key; all of them get its result or error.

        The work runs as its own task, so one caller going away does not cancel it for the others.
        """
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(work())
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._land(key, done))
        return cast(T, await asyncio.shield(flight))

    def _land(self, key: str, flight: asyncio.Future[Any]) -> None:
        self._flights.pop(key, None)
        if not flight.cancelled():
            flight.exception()  # retrieved here, so a flight whose callers all left is not reported as lost

    # --- pins and eviction ------------------------------------------------------------------------

    async def delete(self, object_id: str) -> bool:
        """Remove one object now (rename first, so no reader sees it half-deleted)."""
        folder = self.objects / object_id
        if not _is_hex(object_id) or not folder.is_dir():
            return False
        doomed = self.tmp / f"delete-{object_id}-{uuid.uuid4().hex[:6]}"
        try:
            await asyncio.to_thread(os.rename, folder, doomed)
        except OSError:
            return False
        await asyncio.to_thread(shutil.rmtree, doomed, True)
        return True

    @contextlib.asynccontextmanager
    async def pinned(self, object_id: str) -> AsyncIterator[None]:
        """Keep an object from being evicted while a request uses it."""
        self._pins[object_id] = self._pins.get(object_id, 0) + 1
        try:
            yield
        finally:
            self._pins[object_id] -= 1
            if self._pins[object_id] == 0:
                del self._pins[object_id]

    def schedule_eviction(self) -> None:
        """Trim the cache in the background: one run at a time, owned here (``aclose`` waits for it); a request
        during a run makes it run once more."""
        if self._closed:
            return
        if self._evicting is not None and not self._evicting.done():
            self._evict_again = True
            return
        self._evicting = asyncio.create_task(self._evict_in_background(), name="media-cache-eviction")

    async def _evict_in_background(self) -> None:
        while True:
            self._evict_again = False
            try:
                await self.evict()
            except OSError:
                # The disk said no (a file in use, a permission): the next store retries; the loop must not die.
                logger.exception("media cache eviction failed")
            if not self._evict_again or self._closed:
                return

    async def aclose(self) -> None:
        """Stop background eviction. A run already deleting in its thread cannot be stopped, so it is waited for:
        nothing touches the cache directory once this returns."""
        self._closed = True
        if self._evicting is not None:
            await asyncio.gather(self._evicting, return_exceptions=True)

    async def evict(self) -> list[str]:
        """Delete least-recently-used objects (never pinned ones) until the cache fits its bound."""
        async with self._evict_lock:
            return await asyncio.to_thread(self._evict_sync, lambda total: total <= self.max_bytes)

    async def make_room(self, needed: int) -> bool:
        """Delete least-recently-used objects (never pinned ones) until the media folder's filesystem has ``needed``
        bytes free or nothing is left to delete; True if anything was deleted. For a write that found the disk full:
        the cache's own bound cannot know how small the disk is, or what else fills it."""
        async with self._evict_lock:
            evicted = await asyncio.to_thread(self._evict_sync, lambda _: space.free_bytes(self.root) >= needed)
        if evicted:
            logger.warning("media folder full: evicted %d cached videos to make room for %d bytes", len(evicted),
                           needed, extra={"evicted": len(evicted), "needed_bytes": needed})
        return bool(evicted)

    async def with_room(self, work: Callable[[], Awaitable[T]], needed: int) -> T:
        """``work()``; when it finds the disk full, ``make_room(needed)`` and run it once more. Its second
        InsufficientStorage, or the first when nothing could be evicted, is the caller's."""
        try:
            return await work()
        except InsufficientStorage:
            if not await self.make_room(needed):
                raise
        return await work()

    def _evict_sync(self, enough: Callable[[int], bool]) -> list[str]:
        entries = []
        total = 0
        for folder in self.objects.iterdir():
            size = _dir_size(folder)
            total += size
            entries.append((_used_at(folder), folder, size))
        evicted = []
        for _, folder, size in sorted(entries):
            if enough(total):
                break
            if folder.name in self._pins:
                continue
            # Rename first so readers never see a half-deleted object.
            doomed = self.tmp / f"evict-{folder.name}-{uuid.uuid4().hex[:6]}"
            try:
                os.rename(folder, doomed)
            except OSError:
                continue
            shutil.rmtree(doomed, ignore_errors=True)
            total -= size
            evicted.append(folder.name)
        if evicted:
            logger.info("media cache evicted %d objects", len(evicted), extra={"cache_bytes": total})
        return evicted


async def _in_thread_to_the_end(work: Callable[..., T], *args: object) -> T:
    """``work(*args)`` in a worker thread, and not abandoned half-done: if the caller is cancelled meanwhile, the
    work still starts and finishes (a cancelled ``to_thread`` that had not started yet would never run)."""
    job = asyncio.get_running_loop().run_in_executor(None, functools.partial(work, *args))
    return await asyncio.shield(job)


def write_json_atomic(path: Path, data: object, tmp_dir: Path) -> None:
    """Write JSON to a temp file in ``tmp_dir`` (same filesystem), fsync, then rename over ``path``.

    Raises InsufficientStorage when the disk is full (the old file, if any, is left as it was).
    """
    tmp = tmp_dir / f".{path.name}.{uuid.uuid4().hex}"
    try:
        with space.full_disk_refused(tmp_dir):
            with tmp.open("w") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _is_hex(text: str) -> bool:
    return len(text) == 64 and all(ch in "0123456789abcdef" for ch in text)


def _touch(folder: Path) -> None:
    marker = folder / ".used"
    with contextlib.suppress(OSError):
        marker.touch()


def _used_at(folder: Path) -> float:
    try:
        return (folder / ".used").stat().st_mtime
    except OSError:
        return 0.0


def _dir_size(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
