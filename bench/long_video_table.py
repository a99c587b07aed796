"""The README's "Long videos" table, computed from the gateway's own frame plan and round sampling.

    .venv/bin/python bench/long_video_table.py

A 1280x720 30 fps video of each length, the default settings, a request's max_frames of 64 (the default) and
512 (the most a request may ask); the glue round zooms into one segment (a fifth of the video, at most 60 s).
tests/unit/test_readme.py checks the README still shows this table.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.media.plan import FrameLimits, VideoInfo, plan_frames
from gateway.media.sampling import KEY_TIME_SPARE_FRAMES
from gateway.media.zoom import round_frames
from vchat_settings import Settings

LENGTHS = (("10 s", 10.0), ("10 min", 600.0), ("1 h", 3600.0), ("3 h", 10800.0))
FPS = 30.0


def _every(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.0f} s"


def table() -> str:
    settings = Settings(vllm_url=None)
    lines = ["| video | max_frames | frames per round | frame size | round 1: a frame every | glued segment "
             "| frames in it (round 2) | a frame every | dense zoom (opt-in): frames in it | a frame every |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, seconds in LENGTHS:
        for max_frames in (64, 512):
            limits = FrameLimits(max_visual_tokens=settings.max_visual_tokens, min_pixels=settings.frame_min_pixels,
                                 max_pixels=settings.frame_max_pixels, total_pixels=settings.frame_total_pixels,
                                 max_frames=max_frames, target_fps=settings.sample_fps)
            total = int(seconds * FPS)
            plan = plan_frames(VideoInfo(seconds, FPS, 1280, 720, total), limits, spare_frames=KEY_TIME_SPARE_FRAMES)
            span = min(seconds / 5, 60.0)
            start = seconds * 0.4
            cells = []
            for dense in (False, True):
                glued = round_frames(total, FPS, plan.nframes, [(start, start + span)], dense=dense)
                inside = len({i for i in glued.indices if start * FPS <= i <= (start + span) * FPS})
                cells.append(f"{inside} | {_every(span / max(inside, 1))}")
            lines.append(f"| {name} | {max_frames} | {plan.nframes} | {plan.width}x{plan.height} | "
                         f"{_every(seconds / plan.nframes)} | {_every(span)} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
