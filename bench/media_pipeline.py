"""The media pipeline on a 60 s 1080p30 H.264 clip with audio, served from loopback: cold URL → frames ready vs a
plain full decode, a warm second question, and eight concurrent first requests for one URL.

    .venv/bin/python bench/media_pipeline.py [--cold-runs 3] [--warm-runs 50] [--concurrent 8]

The VideoLibrary is built directly, as ``gateway.app``'s lifespan builds it (no HTTP layer, no vLLM), each with a
Metrics of its own: the split of a cold run is what the library itself records in ``vchat_media_stage_seconds``.
Frames are round 1's frames (uniform), extracted by seeking at the size the frame planner picks with the default
settings.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.media.library import Asset, VideoLibrary  # noqa: E402
from gateway.media.library import open_library as library_of  # noqa: E402
from gateway.media.plan import FrameLimits, FramePlan, plan_frames  # noqa: E402
from gateway.media.sampling import KEY_TIME_SPARE_FRAMES, select_frames  # noqa: E402
from gateway.metrics import MediaStage, Metrics  # noqa: E402
from tests.support.origin import Origin  # noqa: E402
from vchat_settings import Settings  # noqa: E402

CACHE = ROOT / "var" / "bench-cache"


def make_clip() -> Path:
    """60 s of 1920x1080 at 30 fps, H.264 (x264 veryfast) + AAC, built once."""
    out = CACHE / "clip-60s-1080p30-h264-aac.mp4"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.mp4")
    print(f"generating {out.relative_to(ROOT)} (once)…", flush=True)
    subprocess.run([
        "ffmpeg", "-nostdin", "-v", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30:duration=60",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=60",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "60",
        "-c:a", "aac", "-b:a", "128k", "-shortest", str(tmp),
    ], check=True)
    tmp.rename(out)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@asynccontextmanager
async def open_library(media_dir: Path, metrics: Metrics) -> AsyncIterator[VideoLibrary]:
    """What the app's lifespan builds, over a media dir of its own; loopback may be fetched."""
    settings = Settings(vllm_url=None, media_dir=media_dir, media_allowed_hosts=["127.0.0.1"])
    async with library_of(settings, metrics) as library:
        yield library


def stage_seconds(metrics: Metrics) -> dict[MediaStage, float]:
    return {stage: total for stage, (_, total) in metrics.media_stage_totals().items()}


def frame_plan(asset: Asset, settings: Settings) -> FramePlan:
    """The plan the perception loop makes for a request with default options."""
    limits = FrameLimits(max_visual_tokens=settings.max_visual_tokens, min_pixels=settings.frame_min_pixels,
                         max_pixels=settings.frame_max_pixels, total_pixels=settings.frame_total_pixels,
                         max_frames=settings.max_frames, target_fps=settings.sample_fps)
    return plan_frames(asset.probe.video_info(), limits, spare_frames=KEY_TIME_SPARE_FRAMES)


async def question(library: VideoLibrary, url: str) -> tuple[Asset, FramePlan, int]:
    """What a chat request does before calling the model: resolve the video, plan, get round 1's frames."""
    asset = await library.from_url(url)
    plan = frame_plan(asset, library.settings)
    total = await library.frame_count(asset)
    selection = select_frames(total, asset.probe.fps, plan.nframes)
    shown = await library.frames(asset, list(selection.indices), width=plan.width, height=plan.height)
    return asset, plan, len(shown.jpegs)


def full_decode(clip: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(clip), "-f", "null", "-"], check=True)
    return time.perf_counter() - started


async def run(options: argparse.Namespace) -> None:
    clip = make_clip()
    body = clip.read_bytes()
    origin = Origin().start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-media-", dir=CACHE) as scratch:
            await measure(options, clip, body, origin, Path(scratch))
    finally:
        origin.stop()


async def measure(options: argparse.Namespace, clip: Path, body: bytes, origin: Origin, scratch: Path) -> None:
    decode_s: list[float] = []
    cold_s: list[float] = []
    phases: list[dict[MediaStage, float]] = []
    for run_no in range(options.cold_runs):
        # Interleaved, so both see the same machine state; each cold run gets a fresh cache and a new URL.
        decode_s.append(await asyncio.to_thread(full_decode, clip))
        url = origin.file(f"/cold-{run_no}.mp4", body)
        metrics = Metrics()
        async with open_library(scratch / f"cold-{run_no}", metrics) as library:
            started = time.perf_counter()
            asset, plan, frames = await question(library, url)
            cold_s.append(time.perf_counter() - started)
            phases.append(stage_seconds(metrics))
            if run_no == options.cold_runs - 1:
                cold_extractions = metrics.media_stage_totals()["frames"][0]
                warm_ms = []
                for _ in range(options.warm_runs):
                    started = time.perf_counter()
                    await question(library, url)
                    warm_ms.append((time.perf_counter() - started) * 1000)
                warm_extractions = metrics.media_stage_totals()["frames"][0] - cold_extractions

    url = origin.file("/concurrent.mp4", body)
    async with open_library(scratch / "concurrent", Metrics()) as library:
        started = time.perf_counter()
        assets = await asyncio.gather(*(library.from_url(url) for _ in range(options.concurrent)))
        concurrent_s = time.perf_counter() - started

    facts = asset.facts
    print(f"clip: {facts.duration_s:g} s {facts.width}x{facts.height} @ {facts.fps:g} fps {facts.codec}"
          f"+{facts.audio_codec}, {len(body) / 2**20:.1f} MiB, served from loopback; VideoLibrary built directly")
    print(f"frame plan (default settings): {plan.nframes} frames of {plan.width}x{plan.height}; "
          f"round 1: {frames} frames extracted by seeking")
    print()
    print(f"cold: URL -> frames ready vs `ffmpeg -i clip -f null -`, {options.cold_runs} runs interleaved, fresh cache")
    print(f"{'run':<7} {'cold s':>7} {'decode s':>9} {'ratio':>6}   {'fetch':>6} {'probe':>6} {'sanitize':>8} "
          f"{'index':>6} {'frames':>6} {'other':>6}")
    for n, (cold, decode, split) in enumerate(zip(cold_s, decode_s, phases, strict=True)):
        other = cold - sum(split.values())
        print(f"{n + 1:<7} {cold:7.2f} {decode:9.2f} {cold / decode:6.2f}   {split['fetch']:6.2f} "
              f"{split['probe']:6.2f} {split['sanitize']:8.2f} {split['index']:6.2f} {split['frames']:6.2f} "
              f"{other:6.2f}")
    cold_med, decode_med = statistics.median(cold_s), statistics.median(decode_s)
    print(f"{'median':<7} {cold_med:7.2f} {decode_med:9.2f} {cold_med / decode_med:6.2f}   (target ratio <= 1.3)")
    print()
    print(f"warm: the same URL again (from_url + plan + round-1 frames), {options.warm_runs} times")
    print(f"p50 {percentile(warm_ms, 50):.2f} ms   p99 {percentile(warm_ms, 99):.2f} ms   "
          f"max {max(warm_ms):.2f} ms   frame extractions during warm runs: {warm_extractions}   "
          "(target p50 <= 50 ms)")
    print()
    print(f"concurrent: {options.concurrent} from_url calls for one new URL at once")
    print(f"downloads counted at the origin: {origin.hits['/concurrent.mp4']}   distinct assets: "
          f"{len({a.id for a in assets})}   wall {concurrent_s:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--warm-runs", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=8)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
