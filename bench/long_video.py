"""Long videos: time to round 1's frames, seek-based vs the old full-grid decode vs a plain full decode, and a whole
3-round cold answer about a 60-min video vs a 1-min one on the tiny model.

    .venv/bin/python bench/long_video.py [--quick] [--no-answers] [--vllm URL]

Videos (testsrc2 1280x720 at 30 fps, H.264 ultrafast at 300 kbit/s, x264's default GOP of 250 frames) are generated
once under var/bench (the 60-min one takes a while on two cores); --quick leaves the 60-min video out. For each
video, on one machine in one run (interleaved per video, cold caches):

- seek: what round 1 does now: the frame index (one demux-only ffprobe pass), then the planned round-1 frames
  extracted by seeking (one ffmpeg per keyframe needed, in parallel on all cores);
- select: the alternative design, one ffmpeg decoding the whole video and keeping the same frames (select filter);
- grid: the old path, one full decode into a 4 fps JPEG grid at the planned size (the command it ran);
- null: `ffmpeg -i video -f null -`, a full decode with no output: the floor the old path could not beat.

Answers: a gateway (the tiny model on vLLM-CPU) asked a 3-round question about each video from a loopback origin,
cold (fresh media cache); the whole answer's time, 60-min over 1-min.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
from stack import local_stack  # noqa: E402

from gateway.media.ffmpeg import INPUT_GUARDS, input_url  # noqa: E402
from gateway.media.framecache import FrameCache  # noqa: E402
from gateway.media.frames import JPEG_QSCALE, build_index, seek_args  # noqa: E402
from gateway.media.plan import FrameLimits, FramePlan, plan_frames  # noqa: E402
from gateway.media.probe import Probe, ProbeLimits, probe  # noqa: E402
from gateway.media.sampling import KEY_TIME_SPARE_FRAMES, select_frames  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from tests.support.origin import Origin  # noqa: E402

CACHE = ROOT / "var" / "bench"
MINUTES = (1, 10, 60)
OLD_GRID_FPS = 4.0
QUESTION = "What moves in the video?\nA. nothing\nB. the bars\nC. a dog\nD. the sky"


def make_video(minutes: int) -> Path:
    """minutes of 720p30 testsrc2, H.264 ultrafast at a low bit rate, built once under var/bench."""
    out = CACHE / f"long-{minutes}min-720p30.mp4"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.mp4")
    print(f"generating {out.relative_to(ROOT)} (once)…", flush=True)
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
                    "-i", f"testsrc2=size=1280x720:rate=30:duration={minutes * 60}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "300k", "-pix_fmt", "yuv420p", str(tmp)],
                   check=True)
    tmp.rename(out)
    print(f"  {time.perf_counter() - started:.0f} s", flush=True)
    return out


def round1_plan(found: Probe, settings: Settings) -> FramePlan:
    """The plan the perception loop makes for a request with default options."""
    limits = FrameLimits(max_visual_tokens=settings.max_visual_tokens, min_pixels=settings.frame_min_pixels,
                         max_pixels=settings.frame_max_pixels, total_pixels=settings.frame_total_pixels,
                         max_frames=settings.max_frames, target_fps=settings.sample_fps)
    return plan_frames(found.video_info(), limits, spare_frames=KEY_TIME_SPARE_FRAMES)


def timed_run(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def grid_args(video: Path, found: Probe, plan: FramePlan, out: Path) -> list[str]:
    """The old gateway's one-pass grid command (gateway/media/frames.py before frames on demand)."""
    return ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", *INPUT_GUARDS, "-i", input_url(video),
            "-map", f"0:{found.video_index}", "-an", "-sn", "-dn",
            "-vf", f"fps=fps={OLD_GRID_FPS!r}:round=up,scale={plan.width}:{plan.height}:flags=bicubic",
            "-fps_mode", "passthrough", "-q:v", JPEG_QSCALE, "-f", "image2", "-frame_pts", "1",
            str(out) + "/%012d.jpg"]


async def seek_round1(video: Path, found: Probe, plan: FramePlan, work: Path) -> tuple[float, float, int, int]:
    """(index s, frames s, frames, ffmpeg runs) for round 1 from a cold cache, as the gateway does it."""
    folder = work / "obj"
    folder.mkdir()
    os.link(video, folder / "video.mp4")
    frames = FrameCache(max_frames=4096, workers=os.cpu_count() or 1, timeout_s=3600)
    started = time.perf_counter()
    index = await frames.index(folder / "video.mp4", found)
    indexed = time.perf_counter()
    selection = select_frames(len(index), found.fps, plan.nframes)
    got = await frames.frames(folder / "video.mp4", found, list(selection.indices), width=plan.width,
                              height=plan.height)
    done = time.perf_counter()
    runs = len({index.keyframe_of(i) for i in selection.indices})
    return indexed - started, done - indexed, len(got.jpegs), runs


async def select_args(video: Path, found: Probe, plan: FramePlan, out: Path) -> list[str]:
    """One ffmpeg over the whole video keeping round 1's frames: the seek command's filter, without the seek."""
    index = await build_index(video, found, timeout_s=3600)
    wanted = sorted(set(select_frames(len(index), found.fps, plan.nframes).indices))
    # From keyframe 0 there is no seek: one decode from the start, stopping after the last wanted frame.
    return seek_args(video, found, index, 0, wanted, width=plan.width, height=plan.height,
                     threads=os.cpu_count() or 1, out_dir=out)


async def frames_bench(minutes: list[int]) -> dict[int, dict[str, float]]:
    settings = Settings(vllm_url=None)
    results: dict[int, dict[str, float]] = {}
    for length in minutes:
        video = make_video(length)
        found = await probe(video, ProbeLimits(max_duration_s=4 * 3600, max_side=8192, timeout_s=600))
        plan = round1_plan(found, settings)
        with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
            work = Path(scratch)
            null_s = timed_run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(video), "-f", "null", "-"])
            (work / "seek").mkdir()
            index_s, seek_s, count, runs = await seek_round1(video, found, plan, work / "seek")
            (work / "grid").mkdir()
            grid_s = timed_run(grid_args(video, found, plan, work / "grid"))
            (work / "select").mkdir()
            select_s = timed_run(await select_args(video, found, plan, work / "select"))
        results[length] = {"null": null_s, "grid": grid_s, "select": select_s, "index": index_s,
                           "seek": index_s + seek_s, "frames": count, "runs": runs}
        print(f"  {length:>3} min: {found.frame_count} frames, round 1 = {count} frames of {plan.width}x"
              f"{plan.height} from {runs} keyframes; measured", flush=True)
    return results


def answers_bench(minutes: list[int], vllm: str | None) -> dict[int, float]:
    """Seconds for a whole 3-round cold answer about each video through a gateway on the tiny model."""
    origin = Origin().start()
    seconds: dict[int, float] = {}
    env = {"VCHAT_MEDIA_ALLOWED_HOSTS": "127.0.0.1", "VCHAT_MEDIA_MAX_BYTES": str(4 << 30)}
    try:
        with local_stack(vllm, None, env) as stack, httpx2.Client(timeout=1800) as http:
            warm = origin.file("/warm.mp4", make_video(1).read_bytes())
            for url in (warm, warm):  # vLLM and the gateway warmed on a clip that is not measured
                ask(http, stack.gateway_url, url)
            for length in minutes:
                url = origin.file(f"/cold-{length}.mp4", make_video(length).read_bytes())
                started = time.perf_counter()
                ask(http, stack.gateway_url, url)
                seconds[length] = time.perf_counter() - started
    finally:
        origin.stop()
    return seconds


def ask(http: httpx2.Client, gateway: str, url: str) -> None:
    response = http.post(f"{gateway}/v1/chat/completions", json={
        "model": "videochat-r1.5", "temperature": 0, "max_tokens": 64, "vchat": {"iterations": 3},
        "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                  {"type": "text", "text": QUESTION}]}]})
    response.raise_for_status()
    rounds = response.json()["perception"]["rounds"]
    assert len(rounds) == 3, rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="leave out the 60-min video")
    parser.add_argument("--no-answers", action="store_true", help="only time round 1's frames (no vLLM)")
    parser.add_argument("--vllm", help="a running vLLM-CPU with the tiny model (else one is started)")
    options = parser.parse_args()
    minutes = [m for m in MINUTES if not (options.quick and m == 60)]
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed")
    print(f"round-1 frames, cold, {os.cpu_count()} cores (shared machine: timings are noisy)", flush=True)
    results = asyncio.run(frames_bench(minutes))
    print()
    print(f"{'video':>7} {'null s':>8} {'grid s':>8} {'select s':>9} {'seek s':>7} {'(index)':>8}   "
          f"{'seek/null':>9} {'grid/null':>9} {'select/null':>11} {'seek/grid':>9}")
    for length, r in results.items():
        print(f"{length:>4} min {r['null']:8.2f} {r['grid']:8.2f} {r['select']:9.2f} {r['seek']:7.2f} "
              f"{r['index']:8.2f}   {r['seek'] / r['null']:9.3f} {r['grid'] / r['null']:9.2f} "
              f"{r['select'] / r['null']:11.2f} {r['seek'] / r['grid']:9.3f}")
    print("target: seek/null <= 0.1 for the 60-min video")
    if options.no_answers:
        return
    print()
    answers = answers_bench(minutes, options.vllm)
    base = answers[1]
    print("whole 3-round cold answer, tiny model on vLLM-CPU (fetch, sanitize, index, frames, 3 rounds)")
    for length, seconds in answers.items():
        print(f"{length:>4} min {seconds:8.2f} s   x{seconds / base:5.2f} of the 1-min answer")
    print("target: the 60-min answer <= 1.5x the 1-min answer")


if __name__ == "__main__":
    main()
