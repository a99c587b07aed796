"""Qwen2.5-VL frame geometry: Qwen's smart_resize, VideoChat-R1.5's per-frame pixel budget, token counts."""

from __future__ import annotations

import math

# Qwen2.5-VL cuts 14-px patches and merges 2x2 of them, so one visual token covers 28x28 pixels ...
IMAGE_FACTOR = 28
# ... and its temporal patch is 2, so one token also spans two consecutive frames.
FRAME_FACTOR = 2
MAX_RATIO = 200

# Image defaults of VideoChat-R1.5's my_vision_process.py (its MAX_PIXELS is 768 tokens, not Qwen's 16384).
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 768 * 28 * 28
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
# Its default total when the env var (misnamed VIDEO_MAX_PIXELS) is unset: 128K tokens * 0.9.
VIDEO_TOTAL_PIXELS = int(128000 * 28 * 28 * 0.9)
# Budgets the authors actually pass: the model card, and the VideoMME eval script.
MODEL_CARD_TOTAL_PIXELS = 128 * 12 * 28 * 28
VIDEOMME_TOTAL_PIXELS = 128 * 108 * 28 * 28


def round_by_factor(number: float, factor: int) -> int:
    """Closest multiple of factor; Python's round, so halves go to the even multiple, as upstream."""
    return round(number / factor) * factor


def ceil_by_factor(number: float, factor: int) -> int:
    """Smallest multiple of factor that is >= number."""
    return math.ceil(number / factor) * factor


def floor_by_factor(number: float, factor: int) -> int:
    """Largest multiple of factor that is <= number."""
    return math.floor(number / factor) * factor


def smart_resize(
    height: int,
    width: int,
    factor: int = IMAGE_FACTOR,
    min_pixels: float = MIN_PIXELS,
    max_pixels: float = MAX_PIXELS,
) -> tuple[int, int]:
    """Return (height, width) as multiples of factor, aspect ratio kept, area brought into the pixel range.

    Qwen's qwen_vl_utils algorithm: round each side to the factor; if the area is over max_pixels scale
    both sides down and floor them, if under min_pixels scale up and ceil them. Flooring can land just
    under min_pixels; that is upstream behaviour and kept. Like current qwen_vl_utils (and unlike the
    older copy in VideoChat-R1.5), a floored side never drops below one factor, which only matters for
    extreme aspect ratios where the old copy returned 0.

    Raises ValueError for non-positive sides or an aspect ratio above 200.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_RATIO:
        raise ValueError(f"frame aspect ratio {ratio:.1f} is above the model's limit of {MAX_RATIO}")
    h_bar = max(factor, round_by_factor(height, factor))
    w_bar = max(factor, round_by_factor(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, floor_by_factor(height / beta, factor))
        w_bar = max(factor, floor_by_factor(width / beta, factor))
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = ceil_by_factor(height * beta, factor)
        w_bar = ceil_by_factor(width * beta, factor)
    return h_bar, w_bar


def video_frame_size(
    height: int,
    width: int,
    nframes: int,
    *,
    min_pixels: int = VIDEO_MIN_PIXELS,
    max_pixels: int | None = None,
    total_pixels: int = VIDEO_TOTAL_PIXELS,
) -> tuple[int, int]:
    """Size every frame is resized to when nframes frames are sent, as VideoChat-R1.5's fetch_video.

    The per-frame cap is total_pixels / nframes * 2 (total_pixels is in effect a token budget times 28²,
    since one token spans two frames), at most VIDEO_MAX_PIXELS, but never under 1.05 * min_pixels: so
    min_pixels wins over total_pixels on long videos. A caller's max_pixels can only lower the cap.
    """
    if nframes < 1:
        raise ValueError(f"nframes must be positive, got {nframes}")
    cap = max(min(VIDEO_MAX_PIXELS, total_pixels / nframes * FRAME_FACTOR), int(min_pixels * 1.05))
    if max_pixels is not None:
        cap = min(max_pixels, cap)
    return smart_resize(height, width, IMAGE_FACTOR, min_pixels=min_pixels, max_pixels=cap)


def visual_tokens(nframes: int, height: int, width: int) -> int:
    """Visual tokens Qwen2.5-VL spends on nframes frames of height x width (multiples of 28).

    An odd frame count costs as much as the next even one: the processor pads it with the last frame.
    """
    if nframes < 1:
        raise ValueError(f"nframes must be positive, got {nframes}")
    if height <= 0 or width <= 0 or height % IMAGE_FACTOR or width % IMAGE_FACTOR:
        raise ValueError(f"frame size must be positive multiples of {IMAGE_FACTOR}, got {height}x{width}")
    return math.ceil(nframes / FRAME_FACTOR) * (height // IMAGE_FACTOR) * (width // IMAGE_FACTOR)
