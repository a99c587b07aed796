"""Runs ffmpeg and ffprobe as argument lists in their own process group, killed as a whole on timeout or cancel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import MediaTimeout

# ffmpeg prints its real complaint last; earlier lines are stream banners and repeated decoder warnings.
STDERR_TAIL_LINES = 12
STDERR_TAIL_CHARS = 2000

# Options every run on untrusted input gets: only local files may be opened (no http, no nested
# "concat:"/"subfile:" tricks), and only real video demuxers may parse them (no HLS or DASH playlists,
# no concat scripts, no image2 patterns), since a playlist can point at file:///etc/passwd.
VIDEO_DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,ogg"
INPUT_GUARDS = ("-protocol_whitelist", "file", "-format_whitelist", VIDEO_DEMUXERS)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a finished tool run produced; stderr is only the tail that explains a failure."""

    stdout: bytes
    stderr: str
    returncode: int


def input_url(path: Path) -> str:
    """The file: URL of path, so a name such as "http:x" or "concat:a|b" is never taken for a protocol."""
    return "file:" + str(path.resolve())


def stderr_tail(raw: bytes) -> str:
    """The last few non-empty lines of a tool's stderr, decoded leniently and bounded in size."""
    lines = [line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    return "\n".join(lines[-STDERR_TAIL_LINES:])[-STDERR_TAIL_CHARS:]


async def run_tool(args: list[str], *, timeout_s: float, stdin: bytes | None = None) -> ToolResult:
    """Run args (never through a shell), feeding stdin if given, and collect its output.

    The process starts a new session, so it and anything it spawns share one process group. On timeout
    the group is killed and MediaTimeout raised; on cancellation the group is killed and the
    cancellation re-raised. A non-zero exit is returned, not raised: callers know what it means.
    """
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout_s):
            stdout, stderr = await proc.communicate(stdin)
    except TimeoutError:
        await _kill_group(proc)
        tool = Path(args[0]).name
        raise MediaTimeout(f"Processing the video took longer than {timeout_s:g} s ({tool} was stopped).",
                           code="video_processing_timeout") from None
    except BaseException:
        await _kill_group(proc)
        raise
    return ToolResult(stdout, stderr_tail(stderr), proc.returncode if proc.returncode is not None else -1)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # Linux never hands out a pid that still names a live process group, so this cannot hit a stranger.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    # Reap it even if we are being cancelled again meanwhile; SIGKILL makes this wait short.
    await asyncio.shield(proc.wait())
