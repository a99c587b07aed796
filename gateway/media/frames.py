"""The frame grid: one ffmpeg pass decodes a video into small JPEGs at a fixed rate; rounds pick from it."""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import NotAVideo
from gateway.media.ffmpeg import INPUT_GUARDS, input_url, run_tool
from gateway.media.probe import Probe

GRID_FILE = "grid.json"
# mjpeg's qscale: 2 is near-lossless, 5 shows blocking on text; 3 is about JPEG quality 90.
JPEG_QSCALE = "3"
# Names of frames when every frame is kept: their pts in this time base (finer than any frame rate).
EVERY_FRAME_TIME_BASE = 90_000


@dataclass(frozen=True, slots=True)
class FrameGrid:
    """JPEG frames (frame i is dir / frame_name(i)) and the time of each, in seconds from the video's start."""

    dir: Path
    times: tuple[float, ...]
    width: int
    height: int

    @classmethod
    def load(cls, out_dir: Path) -> FrameGrid:
        """The grid extract_grid left in out_dir (blocking: a small file read)."""
        data = json.loads((out_dir / GRID_FILE).read_text())
        return cls(out_dir, tuple(float(t) for t in data["times"]), int(data["width"]), int(data["height"]))

    def path(self, index: int) -> Path:
        return self.dir / frame_name(index)

    def pick(self, times_wanted: Sequence[float]) -> list[int]:
        """The index of the frame nearest each wanted time (the earlier one on a tie)."""
        if not self.times:
            raise ValueError("the grid has no frames")
        picked = []
        for wanted in times_wanted:
            after = bisect.bisect_left(self.times, wanted)
            if after == len(self.times) or (after > 0 and wanted - self.times[after - 1] <= self.times[after] - wanted):
                after -= 1
            picked.append(after)
        return picked


def frame_name(index: int) -> str:
    return f"{index:06d}.jpg"


def grid_args(video: Path, found: Probe, *, width: int, height: int, grid_fps: float, frames_dir: Path) -> list[str]:
    """The one-pass ffmpeg command: decode, keep grid_fps frames (all when the video has fewer), scale, JPEG.

    The fps filter with round=up keeps, for the slot at k / grid_fps, the last frame at or before that
    time (the default round=near takes the last one before (k + 0.5) / grid_fps, up to half a slot late).
    It runs before scale, so only kept frames are scaled. With -frame_pts each file is named by its pts:
    the slot number k, or with every frame kept, the pts in 1/EVERY_FRAME_TIME_BASE.
    """
    every_frame = found.fps <= grid_fps
    pattern = str(frames_dir.resolve()).replace("%", "%%") + "/%012d.jpg"
    scale = f"scale={width}:{height}:flags=bicubic"
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-v", "error", *INPUT_GUARDS, "-i", input_url(video),
        "-map", f"0:{found.video_index}", "-an", "-sn", "-dn",
        "-vf", scale if every_frame else f"fps=fps={grid_fps!r}:round=up,{scale}",
        "-fps_mode", "passthrough",
        *(["-enc_time_base", f"1/{EVERY_FRAME_TIME_BASE}"] if every_frame else []),
        "-q:v", JPEG_QSCALE, "-f", "image2", "-frame_pts", "1", pattern,
    ]


async def extract_grid(
    video: Path, found: Probe, *, width: int, height: int, grid_fps: float, out_dir: Path, timeout_s: float
) -> FrameGrid:
    """Decode video once into width x height JPEGs at grid_fps, written atomically as the directory out_dir.

    ffmpeg applies the display rotation while decoding, so width x height should follow found.display_size.

    Frames land in a temporary directory beside out_dir that is renamed into place with grid.json last;
    on failure or cancellation ffmpeg's process group is killed and the temporary directory removed. If
    out_dir appeared meanwhile (a concurrent extraction of the same video), that grid is returned.
    Raises NotAVideo when ffmpeg fails or decodes no frame, MediaTimeout after timeout_s.
    """
    if width <= 0 or height <= 0 or grid_fps <= 0:
        raise ValueError(f"invalid grid: {width}x{height} at {grid_fps} fps")
    tmp = out_dir.with_name(f".{out_dir.name}.{secrets.token_hex(6)}.tmp")
    args = grid_args(video, found, width=width, height=height, grid_fps=grid_fps, frames_dir=tmp)
    # mkdir inline, not in a thread: a cancelled thread could create the directory after it was cleaned up.
    os.mkdir(tmp)
    try:
        result = await run_tool(args, timeout_s=timeout_s)
    except BaseException:
        # Shielded so that a second cancellation cannot skip the cleanup.
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, tmp, True))
        raise
    tick = grid_fps if found.fps > grid_fps else EVERY_FRAME_TIME_BASE
    # Committing is quick and must not be cut off halfway: a cancellation waits for it, then propagates.
    committing = asyncio.ensure_future(
        asyncio.to_thread(_commit, tmp, out_dir, result.returncode == 0, tick, width, height)
    )
    try:
        return await asyncio.shield(committing)
    except asyncio.CancelledError:
        await asyncio.wait([committing])
        raise


def _commit(tmp: Path, out_dir: Path, ok: bool, tick: float, width: int, height: int) -> FrameGrid:
    """Name the frames 0..n-1, write grid.json, rename tmp to out_dir; remove tmp on any failure."""
    try:
        if not ok:
            raise NotAVideo("The video could not be decoded into frames; the file is damaged.")
        ticks = sorted(int(entry.name[:-4]) for entry in os.scandir(tmp) if entry.name.endswith(".jpg"))
        if not ticks:
            raise NotAVideo("No frame could be decoded from the video.")
        for index, pts in enumerate(ticks):
            os.rename(tmp / f"{pts:012d}.jpg", tmp / frame_name(index))
        times = tuple(pts / tick for pts in ticks)
        (tmp / GRID_FILE).write_text(json.dumps({"times": times, "width": width, "height": height}))
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not (out_dir / GRID_FILE).is_file():
                raise
            # Another extraction of the same video finished first; its grid is as good as ours.
            shutil.rmtree(tmp, ignore_errors=True)
            return FrameGrid.load(out_dir)
        return FrameGrid(out_dir, times, width, height)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


async def data_url(grid: FrameGrid, indices: Sequence[int]) -> str:
    """The frames at indices as vLLM's pre-sampled video: data:video/jpeg;base64,<f1>,<f2>,... (in a thread)."""
    if not indices:
        raise ValueError("no frames to encode")
    for index in indices:
        if not 0 <= index < len(grid.times):
            raise IndexError(f"frame {index} is not in a grid of {len(grid.times)} frames")
    return await asyncio.to_thread(_encode, grid, list(indices))


def _encode(grid: FrameGrid, indices: list[int]) -> str:
    frames = (base64.b64encode(grid.path(index).read_bytes()).decode("ascii") for index in indices)
    return "data:video/jpeg;base64," + ",".join(frames)
