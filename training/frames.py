"""The frames the gateway would send for a video's final round, made by the gateway's own media code."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import VChatError
from gateway.media.frame_index import build_index
from gateway.media.frames import extract_frames, frame_name
from gateway.media.plan import FrameLimits, plan_frames
from gateway.media.probe import ProbeLimits, probe
from gateway.media.sampling import KEY_TIME_SPARE_FRAMES, select_frames
from gateway.media.sanitize import sanitize
from vchat_settings import Settings

# Videos probed and decoded at once: ffmpeg is the bottleneck, and the machine is shared.
CONCURRENCY = 2


@dataclass(frozen=True)
class FrameSettings:
    """The gateway's sampling knobs (its Settings, plus a request's vchat.max_frames / vchat.fps)."""

    probe: ProbeLimits
    limits: FrameLimits
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings, max_frames: int | None, fps: float | None) -> FrameSettings:
        limits = FrameLimits(max_visual_tokens=settings.max_visual_tokens, min_pixels=settings.frame_min_pixels,
                             max_pixels=settings.frame_max_pixels, total_pixels=settings.frame_total_pixels,
                             max_frames=max_frames or settings.max_frames, target_fps=fps or settings.sample_fps)
        return cls(ProbeLimits.from_settings(settings), limits, settings.ffmpeg_timeout_s)


@dataclass(frozen=True)
class VideoFrames:
    """JPEG frames (as the gateway sends them to vLLM) and the fps declared for them."""

    jpegs: tuple[Path, ...]
    fps: float
    width: int
    height: int


class VideoProblem(ValueError):
    """Raised when a video cannot be used; the message is the reason, in words for the dataset report."""


async def video_frames(video: Path, work: Path, config: FrameSettings) -> VideoFrames:
    """Probe, sanitize, plan, select and extract frames exactly as the gateway's round 1 of 1 does.

    Mirrors gateway.media.library (probe, sanitize, the sanitized file's probe, the frame index) and
    gateway.perception.loop (plan, uniform selection of exact frame indices). Raises VideoProblem.
    """
    try:
        found = await probe(video, config.probe)
        folder = work / hashlib.sha256(str(video).encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        written = await sanitize(video, found, folder / "video.mp4", timeout_s=config.timeout_s)
        plan = plan_frames(written.video_info(), config.limits, spare_frames=KEY_TIME_SPARE_FRAMES)
        index = await build_index(folder / "video.mp4", written, timeout_s=config.timeout_s)
        selection = select_frames(len(index), written.fps, min(plan.nframes, len(index)), ())
        out = folder / "frames"
        out.mkdir(exist_ok=True)
        await extract_frames(folder / "video.mp4", written, index, selection.indices, width=plan.width,
                             height=plan.height, out_dir=out, workers=asyncio.Semaphore(1), cores=1,
                             timeout_s=config.timeout_s)
    except VChatError as exc:
        raise VideoProblem(exc.message) from exc
    except OSError as exc:
        raise VideoProblem(f"the video cannot be read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise VideoProblem(f"the video cannot be sampled within the gateway's limits: {exc}") from exc
    return VideoFrames(tuple(out / frame_name(i) for i in selection.indices), selection.sample_fps, plan.width,
                       plan.height)


def all_frames(videos: Iterable[Path], work: Path, config: FrameSettings) -> dict[Path, VideoFrames | str]:
    """Frames of every video (or why it is unusable), at most CONCURRENCY ffmpeg jobs at a time."""
    unique = list(dict.fromkeys(videos))

    async def run() -> list[VideoFrames | str]:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(video: Path) -> VideoFrames | str:
            async with gate:
                try:
                    return await video_frames(video, work, config)
                except VideoProblem as exc:
                    return str(exc)

        return await asyncio.gather(*(one(v) for v in unique))

    return dict(zip(unique, asyncio.run(run()), strict=True))
