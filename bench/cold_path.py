"""Where a cold video's time goes outside vLLM (issue 29): each stage of getting a video from a loopback origin into
the cache (fetch and hash, probe, sanitize: ffmpeg's remux and the probe of what it wrote) and of round 1's frames
(the frame index, then extraction), as the library itself records them in ``vchat_media_stage_seconds`` on the
Metrics this script hands it (sanitize is ffmpeg's remux and the probe of what it wrote, together).

    .venv/bin/python bench/cold_path.py [--minutes 1,60] [--max-frames 64,512] [--repeats 1]

Uses bench/long_video.py's videos (720p30, 2 s GOP; generated once under var/bench); each run asks for a remux with
another title (bytes the cache has not seen) into an empty media cache. Prints seconds per stage (median of
--repeats); nothing is written to bench/results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from long_video import CACHE, round1_plan, variant  # noqa: E402

from gateway.media.library import open_library  # noqa: E402
from gateway.media.sampling import select_frames  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from vchat_settings import Settings  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int) -> None:
    for _ in range(500):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.02)
    raise SystemExit("the origin did not start")


async def one(origin: str, minutes: int, max_frames: int, run: int, scratch: Path) -> dict[str, float]:
    # Another title for each (minutes, max_frames, run): bytes no run has cached.
    url = f"{origin}/{variant(minutes, 100 + 10 * run + (max_frames > 64)).name}"
    settings = Settings(vllm_url=None, media_dir=scratch / f"m-{minutes}-{max_frames}-{run}",
                        media_allowed_hosts=["127.0.0.1"], media_max_bytes=4 << 30)
    metrics = Metrics()
    async with open_library(settings, metrics) as library:
        started = time.perf_counter()
        asset = await library.from_url(url)
        got = time.perf_counter()
        plan = round1_plan(asset.probe, settings, max_frames)
        total = await library.frame_count(asset)
        selection = select_frames(total, asset.probe.fps, min(plan.nframes, total))
        await library.frames(asset, list(selection.indices), width=plan.width, height=plan.height,
                             snap_s=settings.frame_keyframe_snap / selection.sample_fps)
        done = time.perf_counter()
    stages = {f"{stage} s": total for stage, (_, total) in metrics.media_stage_totals().items()}
    return {"video_s": got - started, "round1_s": done - got, **stages}


async def measure(origin: str, options: argparse.Namespace, scratch: Path) -> None:
    for minutes in map(int, options.minutes.split(",")):
        for max_frames in map(int, options.max_frames.split(",")):
            runs = [await one(origin, minutes, max_frames, run, scratch) for run in range(options.repeats)]
            print(f"{minutes} min, max_frames {max_frames}:")
            for key in runs[0]:
                print(f"  {key:<18} {statistics.median(r.get(key, 0.0) for r in runs):6.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="1,60")
    parser.add_argument("--max-frames", default="64,512")
    parser.add_argument("--repeats", type=int, default=1)
    options = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    for minutes in map(int, options.minutes.split(",")):
        for run in range(options.repeats):
            for max_frames in map(int, options.max_frames.split(",")):
                variant(minutes, 100 + 10 * run + (max_frames > 64))
    # The origin is a process of its own, as a video's host is to the gateway (not a thread taking this one's GIL).
    port = free_port()
    origin = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory",
                               str(CACHE)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scratch = Path(tempfile.mkdtemp(prefix="cold-path-", dir=CACHE))
    try:
        wait_for_port(port)
        asyncio.run(measure(f"http://127.0.0.1:{port}", options, scratch))
    finally:
        origin.terminate()
        origin.wait()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
