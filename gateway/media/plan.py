"""Plans how many frames, at what size, a video is sent as so that it fits a visual-token limit."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.media.sampling import FPS, FPS_MAX_FRAMES, FPS_MIN_FRAMES, smart_nframes
from videochat_r15.geometry import (
    FRAME_FACTOR,
    IMAGE_FACTOR,
    MAX_RATIO,
    VIDEO_MIN_PIXELS,
    VIDEO_TOTAL_PIXELS,
    ceil_by_factor,
    floor_by_factor,
    round_by_factor,
    smart_resize,
    video_frame_size,
    visual_tokens,
)


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What probing a video tells us."""

    duration_s: float
    fps: float
    width: int
    height: int
    # 0 when the container does not say; then estimated from duration and fps.
    total_frames: int = 0

    @property
    def frame_count(self) -> int:
        return self.total_frames if self.total_frames > 0 else round(self.duration_s * self.fps)


@dataclass(frozen=True, slots=True)
class FrameLimits:
    """Sampling settings (VideoChat-R1.5's defaults) and the hard visual-token limit."""

    max_visual_tokens: int
    min_pixels: int = VIDEO_MIN_PIXELS
    max_pixels: int | None = None
    total_pixels: int = VIDEO_TOTAL_PIXELS
    max_frames: int = FPS_MAX_FRAMES
    target_fps: float = FPS


@dataclass(frozen=True, slots=True)
class FramePlan:
    """Frames to send each round, the size to resize them to, and the visual tokens they cost."""

    nframes: int
    height: int
    width: int
    tokens: int


def plan_frames(video: VideoInfo, limits: FrameLimits, *, spare_frames: int = 0) -> FramePlan:
    """Choose frame count and size as VideoChat-R1.5 does, then cut them down to the token limit.

    1. Frame count from smart_nframes (target fps, 4..max_frames, even, at most the video's frames) and
       frame size from the official per-frame budget (video_frame_size). If that fits, it is the plan,
       so within the limit the model sees exactly what it was evaluated on.
    2. Otherwise fewer frames at the same size: the largest even count that fits, down to 4 (or the
       video's own count when it has fewer). Dropping frames keeps each frame legible, which matters
       more for the answers than temporal density, and keeps the official resolution.
    3. Otherwise 4 frames, smaller: Qwen's smart_resize under the per-frame cap the limit leaves
       (multiples of 28, aspect ratio kept; if its flooring lands under min_pixels, the in-range
       multiples of 28 nearest that aspect ratio). Never below min_pixels: if that cannot fit, ValueError.

    spare_frames is headroom for glue rounds, whose sampling may add frames (KEY_TIME_SPARE_FRAMES):
    the plan guarantees visual_tokens(nframes + spare_frames, height, width) <= max_visual_tokens,
    while tokens reports the cost of nframes. Raises ValueError for videos that cannot be sampled.
    """
    limit = limits.max_visual_tokens
    if spare_frames < 0:
        raise ValueError(f"spare_frames must not be negative, got {spare_frames}")
    if not math.isfinite(video.fps) or video.fps <= 0:
        raise ValueError(f"video frame rate must be positive, got {video.fps}")
    wanted = smart_nframes(video.frame_count, video.fps, fps=limits.target_fps, max_frames=limits.max_frames)
    height, width = video_frame_size(
        video.height,
        video.width,
        wanted,
        min_pixels=limits.min_pixels,
        max_pixels=limits.max_pixels,
        total_pixels=limits.total_pixels,
    )
    if visual_tokens(wanted + spare_frames, height, width) <= limit:
        return _plan(wanted, height, width)

    fewest = min(FPS_MIN_FRAMES, wanted)
    # One token per 28x28 cell of a frame pair: how many pairs the limit pays for at this size.
    pairs = limit // ((height // IMAGE_FACTOR) * (width // IMAGE_FACTOR))
    fewer = floor_by_factor(FRAME_FACTOR * pairs - spare_frames, FRAME_FACTOR)
    if fewer >= fewest:
        return _plan(fewer, height, width)

    pairs = math.ceil((fewest + spare_frames) / FRAME_FACTOR)
    cap = limit // pairs * IMAGE_FACTOR * IMAGE_FACTOR
    if cap >= limits.min_pixels:
        size: tuple[int, int] | None = smart_resize(
            video.height, video.width, IMAGE_FACTOR, min_pixels=limits.min_pixels, max_pixels=cap
        )
        if size is not None and not limits.min_pixels <= size[0] * size[1] <= cap:
            # Flooring both sides overshot below min_pixels (or ceiling above the cap): take the
            # multiples of 28 in range that come closest to the aspect ratio.
            size = _fit_between(video.height, video.width, limits.min_pixels, cap)
        if size is not None:
            return _plan(fewest, *size)
    frames, floor = fewest + spare_frames, limits.min_pixels
    raise ValueError(f"{limit} visual tokens cannot hold {frames} frames of at least {floor} pixels each")


def _fit_between(height: int, width: int, low: int, high: int) -> tuple[int, int] | None:
    """Multiples of 28 with an area in [low, high], nearest the aspect ratio height:width, larger on ties."""
    target = math.log(height / width)
    best: tuple[int, int] | None = None
    best_key = (math.inf, 0)
    for rows in range(1, high // (IMAGE_FACTOR * IMAGE_FACTOR) + 1):
        h = rows * IMAGE_FACTOR
        narrowest = max(IMAGE_FACTOR, ceil_by_factor(low / h, IMAGE_FACTOR))
        widest = floor_by_factor(high / h, IMAGE_FACTOR)
        w = min(max(round_by_factor(h * width / height, IMAGE_FACTOR), narrowest), widest)
        if w < narrowest or max(h, w) / min(h, w) > MAX_RATIO:
            continue
        key = (abs(math.log(h / w) - target), -h * w)
        if key < best_key:
            best, best_key = (h, w), key
    return best


def _plan(nframes: int, height: int, width: int) -> FramePlan:
    return FramePlan(nframes, height, width, visual_tokens(nframes, height, width))
