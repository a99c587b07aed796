"""What a full disk means here: ENOSPC (an OSError, or ffmpeg's complaint) logged with its filesystem and turned
into InsufficientStorage, the 507 that names the media folder's setting; and the file streamed bodies land in."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from gateway.errors import InsufficientStorage
from gateway.media.ffmpeg import ToolResult
from vchat_settings import SharedSettings

logger = logging.getLogger(__name__)

# ENOSPC is a full filesystem, EDQUOT a full quota on it: the same to a client, and the same remedy.
_FULL = (errno.ENOSPC, errno.EDQUOT)
# ffmpeg reports a failed write in libc's words for the errno (av_err2str is strerror).
_FULL_TEXTS = tuple(os.strerror(code) for code in _FULL)
# A tool that failed while its filesystem has less free than this ran out of room, whatever it printed: its
# muxers write through buffers of tens of KiB, so a write refused for room leaves less than this behind.
_NEARLY_FULL_BYTES = 1 << 20
# Room comes back by itself: other requests' temp files go when they finish and the cache evicts; a client
# retrying at once would only meet the same full disk.
RETRY_AFTER_S = 30

MEDIA_DIR_VAR = f"{SharedSettings.model_config.get('env_prefix', '')}media_dir".upper()

MakeRoom = Callable[[int], Awaitable[bool]]
"""Asks the media cache to free this many bytes (``MediaStore.make_room``); True when it evicted something."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused for want of room."""
    return isinstance(exc, OSError) and exc.errno in _FULL


def free_bytes(path: Path) -> int:
    """Bytes still free for writing on the filesystem that holds ``path`` (or its nearest existing parent)."""
    stats = os.statvfs(_existing(path))
    return stats.f_bavail * stats.f_frsize


def says_disk_full(stderr: str) -> bool:
    """Whether a tool's complaint is a write refused for want of room."""
    return any(text in stderr for text in _FULL_TEXTS)


def nearly_full(path: Path) -> bool:
    """Whether the filesystem holding ``path`` has too little room left for a tool's next write."""
    try:
        return free_bytes(path) < _NEARLY_FULL_BYTES
    except OSError:
        return False


def tool_ran_out(result: ToolResult, output: Path) -> bool:
    """Whether an ffmpeg run writing under ``output`` ran out of room. Ask before its partial output is removed:
    the room that output took is the evidence when ffmpeg's words are not there.

    Its words count whatever its exit status: ffmpeg 5.1 exits 0 when the disk refuses its trailer ("Error writing
    trailer of …: No space left on device", seen on a full tmpfs), leaving an MP4 without its index.
    """
    return says_disk_full(result.stderr) or (result.returncode != 0 and nearly_full(output))


def out_of_space(where: Path) -> InsufficientStorage:
    """The 507 for a write under ``where`` that found no room, logged with the filesystem it hit."""
    mount, free, total = _filesystem(where)
    logger.warning("no space left on device writing %s (filesystem %s: %d of %d bytes free)", where, mount, free,
                   total, extra={"filesystem": mount, "free_bytes": free, "total_bytes": total})
    # The path stays out of the message (it is the server's business); the setting is what an operator acts on.
    return InsufficientStorage(
        f"The server has no disk space left for this video: its media folder ({MEDIA_DIR_VAR}) is full. "
        "Try again later, or with a smaller video.",
        retry_after=RETRY_AFTER_S,
    )


@contextlib.contextmanager
def full_disk_refused(where: Path) -> Iterator[None]:
    """Turn ENOSPC raised inside into InsufficientStorage; every other error passes through as it is."""
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise out_of_space(where) from exc


class Spool:
    """An unbuffered file a streamed body (a download, an upload) is appended to.

    When the disk fills up it asks ``make_room`` once for what the body may still need and goes on from the first
    byte not written; the body cannot be asked for twice, so it is not started again. Unbuffered, because a
    buffered file that failed a write cannot tell which of its bytes reached the disk.
    """

    def __init__(self, out: io.FileIO, path: Path, expected: int, make_room: MakeRoom | None) -> None:
        self.out = out
        self.path = path
        self.expected = expected  # the body's announced (or largest allowed) size, for make_room
        self.size = 0
        self._make_room = make_room

    async def append(self, data: bytes, *, threaded: bool = False) -> None:
        """Write all of ``data`` (in a worker thread if ``threaded``); InsufficientStorage when it cannot fit."""
        view = memoryview(data)
        while view:
            try:
                written = await asyncio.to_thread(self.out.write, view) if threaded else self.out.write(view)
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                await self._room(exc)
                continue
            view = view[written:]
            self.size += written

    async def _room(self, exc: OSError) -> None:
        make_room, self._make_room = self._make_room, None  # once: a second full disk is the answer
        if make_room is None or not await make_room(max(self.expected - self.size, 1)):
            raise out_of_space(self.path) from exc


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _filesystem(path: Path) -> tuple[str, int, int]:
    """The mount point holding ``path``, its free and its total bytes (what a warning about a full disk says)."""
    mount = _existing(path).resolve()
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        stats = os.statvfs(mount)
    except OSError:
        return str(mount), -1, -1
    return str(mount), stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize
