"""gateway.media.frames (and the run_tool it stands on) with real ffmpeg: the grid, its times, its cleanup."""

from __future__ import annotations

import asyncio
import base64
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.errors import MediaTimeout
from gateway.media.ffmpeg import STDERR_TAIL_LINES, run_tool
from gateway.media.frames import GRID_FILE, FrameGrid, data_url, extract_grid, frame_name
from gateway.media.probe import Probe, ProbeLimits, probe
from tests.support.clips import make_clip

LIMITS = ProbeLimits(max_duration_s=3600.0, max_side=7680, timeout_s=60.0)


def live_pids(*, token: str | None = None, pgid: int | None = None) -> list[int]:
    """Live (not zombie) processes whose command line contains token, or that belong to process group pgid."""
    found = []
    for name in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and ((token and token.encode() in cmdline) or (pgid and int(fields[2]) == pgid)):
            found.append(int(name))
    return found


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def read(path: Path) -> bytes:
    return path.read_bytes()


def jpeg_size(path: Path) -> tuple[int, int]:
    """(width, height) from a baseline JPEG's SOF0 segment."""
    data = path.read_bytes()
    at = data.index(b"\xff\xc0")
    return int.from_bytes(data[at + 7:at + 9], "big"), int.from_bytes(data[at + 5:at + 7], "big")


def frame_numbers(grid: FrameGrid) -> list[int]:
    """Which source frame each grid JPEG shows, for videos whose frame N is a flat grey of luma 8N."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(grid.dir / "%06d.jpg"), "-vf", "scale=1:1",
                          "-f", "rawvideo", "-pix_fmt", "gray", "-"], check=True, capture_output=True).stdout
    return [round(value / 8) for value in raw]


@pytest.fixture(scope="module")
def numbered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s at 10 fps, lossless: frame N is flat grey of luma 8N, so a JPEG tells which frame it is."""
    path = tmp_path_factory.mktemp("numbered") / "numbered.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                    "color=black:size=64x64:rate=10:duration=3,format=gray,geq=lum='N*8'",
                    "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", str(path)], check=True, timeout=60)
    return path


async def grid_of(video: Path, out_dir: Path, grid_fps: float, size: tuple[int, int] = (32, 32)) -> FrameGrid:
    found = await probe(video, LIMITS)
    return await extract_grid(video, found, width=size[0], height=size[1], grid_fps=grid_fps, out_dir=out_dir,
                              timeout_s=60)


async def test_grid_count_size_and_times(tmp_path: Path) -> None:
    out = tmp_path / "grid"
    grid = await grid_of(make_clip(6.0, "320x240", 30), out, 2.0, (224, 168))
    assert grid == FrameGrid(out, tuple(k / 2 for k in range(12)), 224, 168)
    assert FrameGrid.load(out) == grid
    assert names(out) == sorted([GRID_FILE, *(frame_name(i) for i in range(12))])
    assert {jpeg_size(grid.path(i)) for i in range(12)} == {(224, 168)}
    assert names(tmp_path) == [out.name]


@pytest.mark.parametrize("grid_fps", [2.0, 3.0])
async def test_frame_k_shows_the_last_frame_at_or_before_k_over_fps(
    grid_fps: float, numbered: Path, tmp_path: Path
) -> None:
    grid = await grid_of(numbered, tmp_path / "grid", grid_fps)
    assert len(grid.times) in (math.ceil(3 * grid_fps) - 1, math.ceil(3 * grid_fps))
    assert grid.times == tuple(k / grid_fps for k in range(len(grid.times)))
    assert all(0 <= t < 3.0 for t in grid.times)
    # ffmpeg's default fps rounding (near) would show frame floor(10k/fps) + 2 here, up to half a slot late.
    assert frame_numbers(grid) == [math.floor(10 * t + 1e-9) for t in grid.times]


async def test_every_frame_when_the_video_is_slower_than_the_grid(numbered: Path, tmp_path: Path) -> None:
    grid = await grid_of(numbered, tmp_path / "grid", 25.0)
    assert frame_numbers(grid) == list(range(30))
    assert grid.times == pytest.approx([n / 10 for n in range(30)], abs=1e-4)


def remux_to_ts(src: Path, dest: Path) -> Path:
    """src as MPEG-TS, whose timestamps start at 1.4 s (the muxer's default offset)."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-c", "copy", str(dest)], check=True)
    info = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-of", "json", str(dest)], check=True,
                          capture_output=True).stdout
    assert b'"start_time": "1.4' in info
    return dest


async def test_times_count_from_the_start_of_a_late_starting_stream(numbered: Path, tmp_path: Path) -> None:
    ts = remux_to_ts(numbered, tmp_path / "numbered.ts")
    grid = await grid_of(ts, tmp_path / "grid", 2.0)
    assert grid.times == (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)
    assert frame_numbers(grid) == [0, 5, 10, 15, 20, 25]


async def test_data_url_is_comma_separated_base64_jpegs(tmp_path: Path) -> None:
    grid = await grid_of(make_clip(6.0, "320x240", 30), tmp_path / "grid", 2.0, (56, 42))
    url = await data_url(grid, [0, 3, 3, 11])
    prefix = "data:video/jpeg;base64,"
    assert url.startswith(prefix)
    frames = [base64.b64decode(part, validate=True) for part in url.removeprefix(prefix).split(",")]
    assert len(frames) == 4 and frames[1] == frames[2] == read(grid.path(3))
    assert all(f.startswith(b"\xff\xd8\xff") and f.endswith(b"\xff\xd9") for f in frames)
    with pytest.raises(IndexError):
        await data_url(grid, [12])


def test_pick_takes_the_nearest_frame() -> None:
    grid = FrameGrid(Path("/nowhere"), (0.0, 0.5, 1.0, 1.5), 28, 28)
    assert grid.pick([-3.0, 0.2, 0.25, 0.26, 0.74, 1.4, 99.0]) == [0, 0, 0, 1, 1, 3, 3]


async def test_concurrent_extractions_share_one_directory(tmp_path: Path) -> None:
    clip, out = make_clip(6.0, "320x240", 30), tmp_path / "grid"
    first, second = await asyncio.gather(grid_of(clip, out, 2.0), grid_of(clip, out, 2.0))
    assert first == second
    assert names(tmp_path) == [out.name]


def frames_written(parent: Path, out: Path) -> bool:
    return any(any(tmp.iterdir()) for tmp in parent.glob(f".{out.name}.*.tmp"))


async def _extracting(tmp_path: Path, out: Path, timeout_s: float) -> tuple[asyncio.Task[FrameGrid], list[int]]:
    """Start extracting a 20 s clip; return once ffmpeg has written its first frames, with ffmpeg's pid."""
    clip = make_clip(20.0, "640x360", 30)
    found: Probe = await probe(clip, LIMITS)
    task = asyncio.create_task(extract_grid(clip, found, width=224, height=140, grid_fps=4.0, out_dir=out,
                                            timeout_s=timeout_s))
    for _ in range(1000):
        if frames_written(tmp_path, out) or task.done():
            break
        await asyncio.sleep(0.005)
    return task, live_pids(token=out.name)


async def test_cancel_mid_extract_leaves_no_process_and_no_directory(tmp_path: Path) -> None:
    task, pids = await _extracting(tmp_path, tmp_path / "grid-cancel", timeout_s=120)
    assert len(pids) == 1 and not task.done(), "ffmpeg should be mid-extract"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.killpg(pids[0], 0)
    assert names(tmp_path) == []


async def test_timeout_mid_extract_leaves_no_process_and_no_directory(tmp_path: Path) -> None:
    task, pids = await _extracting(tmp_path, tmp_path / "grid-timeout", timeout_s=0.3)
    with pytest.raises(MediaTimeout):
        await task
    with pytest.raises(ProcessLookupError):
        os.killpg(pids[0], 0)
    assert names(tmp_path) == []


# --- run_tool: the whole process group goes, whatever ends the wait ---------------------------------

SPAWNER = """
import os, subprocess, sys, time
child = subprocess.Popen(["sleep", "60"])
with open(sys.argv[1] + ".part", "w") as out:
    out.write(f"{os.getpgrp()} {child.pid}")
os.rename(sys.argv[1] + ".part", sys.argv[1])
time.sleep(60)
"""


def read_pids(pid_file: Path) -> list[int]:
    return [int(pid) for pid in pid_file.read_text().split()] if pid_file.exists() else []


async def _group_of(pid_file: Path) -> int:
    """The process group SPAWNER reports, once it reports it; checks its grandchild is in it and running."""
    for _ in range(1000):
        pids = read_pids(pid_file)
        if pids:
            break
        await asyncio.sleep(0.01)
    pgid, child = pids
    assert child in live_pids(pgid=pgid)
    return pgid


async def test_run_tool_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    task = asyncio.create_task(run_tool([sys.executable, "-c", SPAWNER, str(pid_file)], timeout_s=2.0))
    pgid = await _group_of(pid_file)
    started = time.monotonic()
    with pytest.raises(MediaTimeout, match="longer than 2 s"):
        await task
    # Promptly: had only the leader been killed, the grandchild would hold the pipes open for its 60 s.
    assert time.monotonic() - started < 10
    # The grandchild may linger as a zombie until init reaps it; nothing in the group is still running.
    assert live_pids(pgid=pgid) == []


async def test_run_tool_cancellation_kills_the_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    task = asyncio.create_task(run_tool([sys.executable, "-c", SPAWNER, str(pid_file)], timeout_s=60))
    pgid = await _group_of(pid_file)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 10
    assert live_pids(pgid=pgid) == []


async def test_run_tool_feeds_stdin_and_keeps_the_stderr_tail() -> None:
    script = "import sys\nfor i in range(100): print(f'line {i}', file=sys.stderr)\n" \
             "sys.stdout.buffer.write(sys.stdin.buffer.read()[::-1]); sys.exit(3)"
    result = await run_tool([sys.executable, "-c", script], timeout_s=30, stdin=b"abc")
    assert (result.stdout, result.returncode) == (b"cba", 3)
    assert result.stderr.splitlines() == [f"line {i}" for i in range(100 - STDERR_TAIL_LINES, 100)]


async def test_run_tool_never_uses_a_shell(tmp_path: Path) -> None:
    result = await run_tool(["echo", f"$(touch {tmp_path}/pwned)", ";", "id"], timeout_s=30)
    assert result.stdout.decode().startswith("$(touch") and names(tmp_path) == []
