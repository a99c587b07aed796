"""gateway.media.frames and framecache (and the run_tool they stand on) with real ffmpeg: exact frames by seeking,
their times, the cache's bound, and cleanup on cancel."""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest

from gateway.errors import MediaTimeout
from gateway.media import frames as frames_module
from gateway.media.ffmpeg import STDERR_TAIL_LINES, run_tool
from gateway.media.frame_index import FrameIndex, build_index, lone_keyframes, snap_to_keyframes
from gateway.media.framecache import FrameCache
from gateway.media.frames import extract_frames, frame_name, plan_spans
from gateway.media.probe import Probe, ProbeLimits, probe
from gateway.media.sampling import select_frames, uniform_indices
from gateway.media.zoom import round_frames
from gateway.metrics import Metrics
from tests.support.clips import decoded_pts, frame_numbers, make_clip, make_numbered_clip

LIMITS = ProbeLimits(max_duration_s=4 * 3600.0, max_side=7680, timeout_s=60.0)
OPEN_GOP = "open-gop=1:keyint=30:bframes=3"
# 25 fps for 4 s, then frames 30 ms further apart each: every gap differs.
VFR = "N/25/TB+if(gt(N\\,100)\\,(N-100)*0.03/TB\\,0)"


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


def all_files(directory: Path) -> list[str]:
    """Every file under directory now; a folder removed while it is walked (an extraction finishing as a watcher
    looks) is skipped, not an error."""
    return sorted(str(Path(root, name).relative_to(directory)) for root, _, names in os.walk(directory)
                  for name in names)


async def until(condition: Callable[[], object], timeout_s: float = 30) -> None:
    """Poll condition until it holds or timeout_s passes (the caller asserts what it needs afterwards)."""
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110 - polling /proc, no event to wait on
        await asyncio.sleep(0.01)


async def exited(pid: int) -> None:
    """Return once pid has exited (a zombie counts), awaited on its pidfd; at once if it is already gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(fd, readable.set)
    try:
        await readable.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def survivors(*, token: str | None = None, pgid: int | None = None) -> list[int]:
    """live_pids once each of them has exited, or 60 s passed: a SIGKILLed process stops when the kernel next runs
    it, which on a loaded machine is not at once (the kill is what the callers check, not the scheduler). The wait
    is on each process's pidfd, so it ends the moment they are gone; the 60 s only bounds a failure."""
    waits = [asyncio.ensure_future(exited(pid)) for pid in live_pids(token=token, pgid=pgid)]
    if waits:
        _, pending = await asyncio.wait(waits, timeout=60)
        for wait in pending:
            wait.cancel()
    return live_pids(token=token, pgid=pgid)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a baseline JPEG's SOF0 segment."""
    at = data.index(b"\xff\xc0")
    return int.from_bytes(data[at + 7:at + 9], "big"), int.from_bytes(data[at + 5:at + 7], "big")


def video_dir(tmp_path: Path, clip: Path) -> Path:
    """A copy of clip laid out as a cached object (the cache writes frames/ beside video.mp4)."""
    folder = tmp_path / "obj"
    folder.mkdir(exist_ok=True)
    (folder / "video.mp4").write_bytes(clip.read_bytes())
    return folder / "video.mp4"


def cache(max_frames: int = 4096, workers: int = 2) -> FrameCache:
    return FrameCache(max_frames=max_frames, workers=workers, timeout_s=120, metrics=Metrics())


# --- the index: every frame, in presentation order, with its real time ------------------------------

@pytest.mark.parametrize("kind", ["vfr", "open_gop"])
async def test_index_lists_every_frame_at_its_decoded_time(kind: str) -> None:
    clip = (make_numbered_clip(20, 25, setpts=VFR, x264="bframes=2:keyint=40")
            if kind == "vfr" else make_numbered_clip(40, 25, x264=OPEN_GOP))
    index = await build_index(clip, await probe(clip, LIMITS), timeout_s=60)
    reference = decoded_pts(clip)
    assert len(index) == len(reference)
    assert [index.time(i) for i in range(len(index))] == pytest.approx(reference, abs=1e-6)
    assert len(index.keyframes) > 3 and index.keyframes[0] == 0
    assert FrameIndex.from_json(index.to_json()) == index


# --- exactness: the frame extracted is the frame asked for -------------------------------------------

@pytest.mark.parametrize("kind", ["vfr", "open_gop", "closed_gop_bframes"])
async def test_frames_are_exactly_the_frames_asked_for(kind: str, tmp_path: Path) -> None:
    if kind == "vfr":
        clip = make_numbered_clip(20, 25, setpts=VFR, x264="bframes=2:keyint=40")
    elif kind == "open_gop":
        clip = make_numbered_clip(40, 25, x264=OPEN_GOP)
    else:
        clip = make_numbered_clip(12, 30, x264="keyint=45:bframes=3")
    video = video_dir(tmp_path, clip)
    found = await probe(video, LIMITS)
    frames = cache()
    index = await frames.index(video, found)
    total = len(index)
    rng = random.Random(kind)
    # Uniform and glue-weighted picks as rounds make them, the last frame, and every frame around keyframes
    # (an open GOP's leading frames need the GOP before theirs).
    wanted = sorted({*select_frames(total, found.fps, 16).indices,
                     *select_frames(total, found.fps, 16, [(2.0, 3.5), (9.0, 9.6)]).indices,
                     *(k + d for k in index.keyframes for d in (-3, -2, -1, 0, 1) if 0 <= k + d < total),
                     *rng.sample(range(total), 20), total - 1})
    got = await frames.frames(video, found, wanted, width=56, height=28)
    assert frame_numbers(list(got.jpegs)) == wanted
    reference = decoded_pts(clip)
    assert got.times == pytest.approx([reference[i] for i in wanted], abs=1e-5)
    assert {jpeg_size(jpeg) for jpeg in got.jpegs} == {(56, 28)}


async def test_hundreds_of_frames_after_one_keyframe(tmp_path: Path) -> None:
    # One GOP of 300 frames, 150 of them wanted: one select expression of 150 terms (ffmpeg's evaluator
    # refuses a plain chain of about 100).
    video = video_dir(tmp_path, make_numbered_clip(12, 30, x264="keyint=300:scenecut=0"))
    found = await probe(video, LIMITS)
    wanted = list(range(0, 360, 2))
    got = await cache().frames(video, found, wanted, width=56, height=28)
    assert frame_numbers(list(got.jpegs)) == wanted


@pytest.mark.parametrize("x264", ["keyint=30:scenecut=0", OPEN_GOP])
async def test_lone_keyframes_are_decoded_alone(x264: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every third keyframe of a 40 s clip: no other frame wanted in their GOPs, so one keyframe-only run per core
    # (-skip_frame nokey) decodes them; on an open GOP that run stalls and each keyframe is sought alone instead.
    video = video_dir(tmp_path, make_numbered_clip(40, 25, x264=x264))
    found = await probe(video, LIMITS)
    index = await cache().index(video, found)
    wanted = list(index.keyframes[::3])
    assert lone_keyframes(index, wanted) == wanted
    runs: list[list[str]] = []
    real_run_tool = frames_module.run_tool

    async def recording(args: list[str], **kwargs: object) -> object:
        runs.append(args)
        return await real_run_tool(args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(frames_module, "run_tool", recording)
    got = await cache().frames(video, found, wanted, width=56, height=28)
    assert frame_numbers(list(got.jpegs)) == wanted
    assert got.times == pytest.approx([decoded_pts(video)[i] for i in wanted], abs=1e-5)
    assert runs and "nokey" in runs[0]
    if x264 == OPEN_GOP:
        assert any("nokey" not in run for run in runs)
    else:
        assert all("nokey" in run for run in runs)


def test_snapping_moves_frames_to_near_keyframes_only() -> None:
    index = regular_index(3000, 60)  # 30 fps, a keyframe every 2 s
    # Frames 2 s apart: 62 and 118 are 2 frames from a keyframe, 90 is 1 s from both; within 0.1 s only.
    assert snap_to_keyframes(index, [62, 90, 118, 118], 0.1) == [60, 90, 120, 120]
    assert snap_to_keyframes(index, [62, 90, 118], 0.0) == [62, 90, 118]
    # Inside a kept range nothing moves, and nothing moves into one.
    assert snap_to_keyframes(index, [62, 118, 178], 0.1, keep=[(100, 125)]) == [60, 118, 180]
    assert snap_to_keyframes(index, [62, 118], 0.1, keep=[(55, 61)]) == [62, 120]
    # Never past or onto another wanted frame: order and count hold.
    assert snap_to_keyframes(index, [59, 61], 0.1) == [60, 61]
    assert snap_to_keyframes(index, [58, 59, 130], 0.5) == [58, 60, 120]


def regular_index(frames: int, gop: int) -> FrameIndex:
    """An index of a constant-rate video (pts 0, 512, …) with a keyframe every gop frames."""
    return FrameIndex(tuple(range(0, 512 * frames, 512)), tuple(range(0, frames, gop)), Fraction(1, 15360), 0.0)


def test_far_apart_frames_are_seeked_to_one_keyframe_each() -> None:
    index = regular_index(108_000, 250)  # an hour at 30 fps
    wanted = [n * 1687 + 10 for n in range(64)]  # 64 frames of the hour: keyframes 1687 frames apart
    spans = plan_spans(index, wanted, cores=2, gap=frames_module.merge_gap(1280, 720))
    assert spans == [(index.keyframe_of(frame), [frame]) for frame in wanted]


def test_dense_frames_of_a_long_video_decode_on_in_one_span_per_core() -> None:
    # 512 frames of the hour (about one per keyframe): seeking to each of 432 keyframes would open 432 decoders;
    # decoding on from frame to frame costs less.
    index = regular_index(108_000, 250)
    wanted = uniform_indices(108_000, 512)
    for cores in (1, 2, 16):
        spans = plan_spans(index, wanted, cores=cores, gap=frames_module.merge_gap(1280, 720))
        assert len(spans) == cores
        assert [frame for _, frames in spans for frame in frames] == wanted  # all of them, in order, once
        starts = [keyframe for keyframe, _ in spans]
        assert starts[0] == 0 and all(index.keyframe_of(frames[0]) == keyframe for keyframe, frames in spans)
        extents = [frames[-1] - keyframe + 1 for keyframe, frames in spans]
        assert max(extents) - min(extents) <= 2 * 250 + 2 * 211  # split evenly, at keyframe groups


def test_a_gap_just_wider_than_the_merge_limit_is_seeked_over() -> None:
    index = regular_index(3000, 250)
    gap = 120
    # From the last wanted frame of the first GOP to keyframe 250: exactly the limit, then one frame more.
    assert plan_spans(index, [250 - gap, 255], cores=1, gap=gap) == [(0, [250 - gap, 255])]
    assert plan_spans(index, [250 - gap - 1, 255], cores=1, gap=gap) == [(0, [250 - gap - 1]), (250, [255])]


def test_the_merge_limit_goes_with_the_picture_size() -> None:
    assert frames_module.merge_gap(1280, 720) == frames_module.MERGE_GAP_FRAMES_720P
    assert frames_module.merge_gap(1920, 1080) < frames_module.merge_gap(1280, 720) < frames_module.merge_gap(640, 360)


def test_every_input_is_read_only_to_its_last_wanted_frame() -> None:
    # ffmpeg 5.1 with several inputs now and then decoded one to the end of the video after its output was
    # complete; each input is bounded (-t, counted from its first frame) to what its frames need.
    index = regular_index(108_000, 250)
    found = Probe(duration_s=3600.0, fps=30.0, width=1280, height=720, rotation=0, vcodec="h264", pix_fmt="yuv420p",
                  frame_count=108_000, has_audio=False, acodec=None, format_name="mp4", bytes=1, video_index=0)
    args = frames_module.batch_args(Path("v.mp4"), found, index, [(0, [10, 20], Path("a")), (2500, [2600], Path("b"))],
                                    width=56, height=28, threads=1)
    reads = [float(args[i + 1]) for i, arg in enumerate(args) if arg == "-t"]
    slack = frames_module.READ_SLACK_S
    # Counted from the keyframe before (a seek landing a GOP early still gets there); the first has none before.
    assert reads == pytest.approx([20 / 30 + slack, (2600 - 2250) / 30 + slack])


def count_tool_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every ffmpeg/ffprobe command the frame cache runs from now on, in order (the real tool still runs)."""
    runs: list[list[str]] = []
    real = frames_module.run_tool

    async def counting(args: list[str], **kwargs: float) -> object:
        runs.append(args)
        return await real(args, **kwargs)

    monkeypatch.setattr(frames_module, "run_tool", counting)
    return runs


def seeks(runs: list[list[str]]) -> int:
    """Inputs opened by these ffmpeg runs: one per keyframe decoded from."""
    return sum(args.count("-i") for args in runs if args[0] == "ffmpeg")


async def test_repeats_and_order_are_kept_and_frames_are_reused(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    video = video_dir(tmp_path, make_numbered_clip(12, 30, x264="keyint=60"))
    found = await probe(video, LIMITS)
    runs = count_tool_runs(monkeypatch)
    frames = cache()
    first = await frames.frames(video, found, [5, 100, 100, 301, 7], width=56, height=28)
    assert frame_numbers(list(first.jpegs)) == [5, 100, 100, 301, 7]
    ffmpeg_runs = [a for a in runs if a[0] == "ffmpeg"]
    # Frames 5 and 7 share keyframe 0, and 100's keyframe (60) is near enough to decode on to; 301 is seeked to
    # (not 300: a keyframe wanted alone is decoded alone, see test_lone_keyframes_are_decoded_alone).
    assert seeks(ffmpeg_runs) == 2
    assert len(ffmpeg_runs) == 2  # one run per core
    # A later round (or question, with a fresh cache over the same directory) reuses what is on disk.
    again = await cache().frames(video, found, [7, 301], width=56, height=28)
    # No tool runs again: the frames are on disk, the index was read from the MP4's tables (and saved).
    assert again.jpegs == (first.jpegs[4], first.jpegs[3]) and len(runs) == len(ffmpeg_runs)
    assert sorted(p.name for p in (video.parent / "frames" / "56x28").iterdir()) == [
        frame_name(i) for i in (5, 7, 100, 301)]


async def test_concurrent_requests_for_the_same_frames_extract_once(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    video = video_dir(tmp_path, make_numbered_clip(12, 30, x264="keyint=60"))
    found = await probe(video, LIMITS)
    frames = cache()
    await frames.index(video, found)
    runs = count_tool_runs(monkeypatch)
    wanted = [1, 90, 181, 270]  # no keyframe among them (a lone keyframe is decoded alone)
    results = await asyncio.gather(*(frames.frames(video, found, wanted, width=56, height=28) for _ in range(5)))
    # One extraction for the five: two spans (one per core), each one input decoding on through its keyframes.
    assert seeks(runs) == 2 and len(runs) == 2 and len({r.jpegs for r in results}) == 1


# --- bounded work -------------------------------------------------------------------------------------

def memory_kib(field: str) -> int:
    """VmRSS or VmHWM (peak RSS) of this process, the one the frame cache runs in, in KiB."""
    match = re.search(rf"^{field}:\s+(\d+) kB$", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match, field
    return int(match.group(1))


def restart_peak_memory() -> int:
    """Restart this process's VmHWM from its current RSS (Linux's clear_refs "5"); return that RSS in KiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return memory_kib("VmRSS")


async def test_a_three_hour_video_stays_within_the_bound(tmp_path: Path) -> None:
    clip = make_clip(3 * 3600.0, "64x36", 1, audio=False, extra=("-preset", "ultrafast", "-g", "250"))
    video = video_dir(tmp_path, clip)
    found = await probe(video, LIMITS)
    cap, per_round, workers = 96, 64, 2
    frames = cache(max_frames=cap, workers=workers)
    total = len(await frames.index(video, found))
    assert total == 3 * 3600
    # Watched while the rounds run, not only between them: files on disk (the temporary ones too) and ffmpeg runs.
    peak_files = peak_runs = 0
    watching = True

    async def watch() -> None:
        nonlocal peak_files, peak_runs
        while watching:
            peak_files = max(peak_files, len(all_files(video.parent / "frames")))
            peak_runs = max(peak_runs, len(live_pids(token=str(video.parent / "frames"))))
            await asyncio.sleep(0.005)

    # Memory is measured too, from here: frames of 640x360 (about 15 KB each) make one round's frames a megabyte,
    # well above the allocator's noise.
    before_kib = restart_peak_memory()
    watcher = asyncio.create_task(watch())
    spans = [(), ((600.0, 660.0),), ((3000.0, 3100.0), (9000.0, 9050.0)), ((100.0, 130.0),), ()]
    round_bytes = []
    for round_spans in spans:
        selection = round_frames(total, found.fps, per_round, round_spans)  # as the perception loop picks them
        got = await frames.frames(video, found, list(selection.indices), width=640, height=360)
        assert len(got.jpegs) == len(selection.indices) <= per_round + 4
        round_bytes.append(sum(len(jpeg) for jpeg in got.jpegs))
        on_disk = all_files(video.parent / "frames")
        assert len(on_disk) <= cap + 1  # between rounds: the cap and index.json
        assert not any(".tmp" in name for name in on_disk)
    watching = False
    await watcher
    grown = (memory_kib("VmHWM") - before_kib) * 1024
    assert peak_files <= cap + per_round + 4 + 1  # during a round: the cap, that round's new frames, the index
    assert 0 < peak_runs <= workers
    # In memory, at the peak: a round's frames and their copies on the way (about 3x one round when measured), not
    # the five rounds' (5x) nor the video's (10800 frames, some 150 MB at this size).
    assert grown <= 6 * max(round_bytes), (grown, round_bytes)


# --- cancel and timeout: every process gone, no partial file ------------------------------------------

async def _extracting(tmp_path: Path) -> tuple[asyncio.Task[None], Path, list[int]]:
    """Start extracting frames spread over a 240 s 640x360 clip; return once several ffmpeg runs are going.

    The last frame of every GOP is wanted, so the spans cover the whole clip: each of the two runs decodes two
    minutes (over a second), time enough to be seen and cancelled mid-way."""
    video = video_dir(tmp_path, make_clip(240.0, "640x360", 30, audio=False, extra=("-g", "300")))
    found: Probe = await probe(video, LIMITS)
    index = await build_index(video, found, timeout_s=60)
    out = video.parent / "frames" / "448x252"
    out.mkdir(parents=True)
    wanted = [k - 1 for k in index.keyframes[1:]]
    task = asyncio.create_task(extract_frames(video, found, index, wanted, width=448, height=252, out_dir=out,
                                              workers=asyncio.Semaphore(4), cores=2, timeout_s=120))
    await until(lambda: task.done() or len(live_pids(token=str(out))) >= 2)
    return task, out, live_pids(token=str(out))


async def test_cancel_mid_extraction_leaves_no_process_and_no_partial_file(tmp_path: Path) -> None:
    task, out, pids = await _extracting(tmp_path)
    assert len(pids) >= 2 and not task.done(), "several ffmpeg runs should be extracting"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await survivors(token=str(out)) == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    assert not any(".tmp" in name for name in all_files(out))
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


@pytest.mark.timing
async def test_timeout_mid_extraction_leaves_no_process_and_no_partial_file(tmp_path: Path) -> None:
    # The runs are held, not outpaced: once indexed, the video is swapped for a FIFO nobody writes to, so each
    # ffmpeg blocks opening its input and the 0.5 s timeout fires however fast or loaded the machine is.
    video = video_dir(tmp_path, make_clip(60.0, "640x360", 30, audio=False, extra=("-g", "300")))
    found = await probe(video, LIMITS)
    index = await build_index(video, found, timeout_s=60)
    video.unlink()
    os.mkfifo(video)
    out = video.parent / "frames" / "448x252"
    out.mkdir(parents=True)
    wanted = [k - 1 for k in index.keyframes[1:]]
    with pytest.raises(MediaTimeout, match=r"longer than 0\.5 s \(ffmpeg was stopped\)"):
        await extract_frames(video, found, index, wanted, width=448, height=252, out_dir=out,
                             workers=asyncio.Semaphore(4), cores=2, timeout_s=0.5)
    assert await survivors(token=str(out)) == []
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # the runs' temporary folder too


async def test_a_request_leaving_cancels_the_extraction_only_when_no_other_waits(tmp_path: Path) -> None:
    video = video_dir(tmp_path, make_clip(60.0, "640x360", 30, audio=False, extra=("-g", "300")))
    found = await probe(video, LIMITS)
    frames = cache()
    index = await frames.index(video, found)
    wanted = [k - 1 for k in index.keyframes[1:]]
    out = video.parent / "frames" / "448x252"
    first = asyncio.create_task(frames.frames(video, found, wanted, width=448, height=252))
    second = asyncio.create_task(frames.frames(video, found, wanted, width=448, height=252))
    await until(lambda: live_pids(token=str(out)))
    first.cancel()
    got = await second  # the other request still gets every frame
    assert len(got.jpegs) == len(wanted)
    third = asyncio.create_task(frames.frames(video, found, [1, 2, 3, 301, 601, 901], width=224, height=126))
    other = video.parent / "frames" / "224x126"
    await until(lambda: live_pids(token=str(other)))
    third.cancel()
    with pytest.raises(asyncio.CancelledError):
        await third
    assert await survivors(token=str(other)) == []
    assert [p.name for p in other.iterdir() if p.name.startswith(".")] == []


# --- run_tool: the whole process group goes, whatever ends the wait ---------------------------------

SPAWNER = """
import os, socket, subprocess, sys, time
child = subprocess.Popen(["sleep", "600"])
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as report:
    report.sendall(f"{os.getpgrp()} {child.pid}".encode())
time.sleep(600)
"""


async def spawning(timeout_s: float) -> tuple[asyncio.Task[object], int]:
    """run_tool running SPAWNER, and the process group SPAWNER reports (checked to hold its running grandchild).

    The report comes over a loopback socket, awaited rather than polled for: a Python starting on a busy machine
    can take seconds, and nothing here guesses how many."""
    reported: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def report(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reported.set_result(await reader.read())
        writer.close()

    async with await asyncio.start_server(report, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        task = asyncio.create_task(run_tool([sys.executable, "-c", SPAWNER, str(port)], timeout_s=timeout_s))
        await asyncio.wait([reported, task], return_when=asyncio.FIRST_COMPLETED)
        assert reported.done(), f"the spawner ended before reporting its process group: {task}"
    pgid, child = (int(pid) for pid in reported.result().split())
    assert child in live_pids(pgid=pgid)
    return task, pgid


@pytest.mark.timing
async def test_run_tool_timeout_kills_the_whole_group() -> None:
    task, pgid = await spawning(timeout_s=2.0)
    started = time.monotonic()
    with pytest.raises(MediaTimeout, match="longer than 2 s"):
        await task
    # Promptly: had only the leader been killed, the grandchild would hold the pipes open for its 600 s.
    assert time.monotonic() - started < 10
    # The grandchild may linger as a zombie until init reaps it; nothing in the group is still running.
    assert await survivors(pgid=pgid) == []


async def test_run_tool_cancellation_kills_the_whole_group() -> None:
    task, pgid = await spawning(timeout_s=60)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 10  # a bound on a failure (a grandchild holding the pipes), not a wait
    assert await survivors(pgid=pgid) == []


async def test_run_tool_feeds_stdin_and_keeps_the_stderr_tail() -> None:
    script = "import sys\nfor i in range(100): print(f'line {i}', file=sys.stderr)\n" \
             "sys.stdout.buffer.write(sys.stdin.buffer.read()[::-1]); sys.exit(3)"
    result = await run_tool([sys.executable, "-c", script], timeout_s=30, stdin=b"abc")
    assert (result.stdout, result.returncode) == (b"cba", 3)
    assert result.stderr.splitlines() == [f"line {i}" for i in range(100 - STDERR_TAIL_LINES, 100)]


async def test_run_tool_never_uses_a_shell(tmp_path: Path) -> None:
    result = await run_tool(["echo", f"$(touch {tmp_path}/pwned)", ";", "id"], timeout_s=30)
    assert result.stdout.decode().startswith("$(touch") and names(tmp_path) == []
