"""videochat_r15.geometry against Qwen's smart_resize and VideoChat-R1.5's per-frame pixel budget.

`_official_smart_resize` and `_official_frame_size` transcribe OpenGVLab/VideoChat-R1,
Videochat-R1.5/src_eval/my_vision_process.py (smart_resize, and the resize part of fetch_video).
"""

from __future__ import annotations

import math

import pytest

from videochat_r15.geometry import (
    MODEL_CARD_TOTAL_PIXELS,
    VIDEO_MIN_PIXELS,
    VIDEO_TOTAL_PIXELS,
    VIDEOMME_TOTAL_PIXELS,
    smart_resize,
    video_frame_size,
    visual_tokens,
)


def _official_smart_resize(
    height: int, width: int, factor: int, min_pixels: float, max_pixels: float
) -> tuple[int, int]:
    if max(height, width) / min(height, width) > 200:
        raise ValueError("ratio")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _official_frame_size(
    height: int,
    width: int,
    nframes: int,
    min_pixels: int,
    total_pixels: int,
) -> tuple[int, int]:
    max_pixels = max(min(768 * 28 * 28, total_pixels / nframes * 2), int(min_pixels * 1.05))
    return _official_smart_resize(height, width, 28, min_pixels, max_pixels)


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (1080, 1920, (560, 1008)),  # above 768 tokens: scaled down, floored
        (720, 1280, (560, 1008)),
        (480, 640, (476, 644)),
        (2160, 3840, (560, 1008)),
        (100, 100, (112, 112)),
        (1, 1, (56, 56)),  # below 4 tokens: scaled up, ceiled
        (28, 5600, (28, 5600)),  # ratio exactly 200 is allowed
    ],
)
def test_smart_resize_image_defaults(height: int, width: int, expected: tuple[int, int]) -> None:
    assert smart_resize(height, width) == expected


def test_smart_resize_rounds_half_to_even() -> None:
    # 42/28 = 1.5 -> 2 and 70/28 = 2.5 -> 2: Python's round, as upstream.
    assert smart_resize(42, 70, min_pixels=1, max_pixels=10**9) == (56, 56)


@pytest.mark.parametrize(("height", "width"), [(1, 201), (4020, 20), (0, 10), (10, -1)])
def test_smart_resize_refuses_bad_shapes(height: int, width: int) -> None:
    with pytest.raises(ValueError, match=r"aspect ratio|must be positive"):
        smart_resize(height, width)


def test_smart_resize_matches_official_over_grid() -> None:
    sizes = [*range(1, 60, 7), 144, 240, 360, 480, 540, 576, 720, 1080, 1440, 2160, 4320]
    budgets = [(4 * 784, 768 * 784), (128 * 784, 180633.6), (128 * 784, 105369), (3136, 16384 * 784)]
    for height in sizes:
        for width in sizes:
            if max(height, width) / min(height, width) > 200:
                continue
            for low, high in budgets:
                official = _official_smart_resize(height, width, 28, low, high)
                if min(official) > 0:
                    assert smart_resize(height, width, 28, low, high) == official, (height, width, low, high)


def test_smart_resize_keeps_one_factor_where_old_copy_returned_zero() -> None:
    assert _official_frame_size(28, 5600, 120, VIDEO_MIN_PIXELS, MODEL_CARD_TOTAL_PIXELS) == (0, 4564)
    assert video_frame_size(28, 5600, 120, total_pixels=MODEL_CARD_TOTAL_PIXELS) == (28, 4564)


@pytest.mark.parametrize(
    ("nframes", "total_pixels", "expected"),
    [
        (120, VIDEOMME_TOTAL_PIXELS, (308, 560)),  # cap 128*108*784/120*2 = 180633.6
        (16, VIDEOMME_TOTAL_PIXELS, (560, 1008)),  # cap VIDEO_MAX_PIXELS
        # Model card budget: cap = int(1.05 * min_pixels) wins, and flooring lands under min_pixels.
        (120, MODEL_CARD_TOTAL_PIXELS, (224, 420)),
        (512, VIDEO_TOTAL_PIXELS, (420, 784)),  # cap 90316800/512*2 = 352800
    ],
)
def test_video_frame_size_1080p(nframes: int, total_pixels: int, expected: tuple[int, int]) -> None:
    assert video_frame_size(1080, 1920, nframes, total_pixels=total_pixels) == expected
    assert _official_frame_size(1080, 1920, nframes, VIDEO_MIN_PIXELS, total_pixels) == expected


def test_video_frame_size_matches_official() -> None:
    shapes = [(1080, 1920), (720, 1280), (480, 854), (1920, 1080), (360, 640), (240, 320), (64, 64)]
    for height, width in shapes:
        for nframes in (2, 4, 8, 30, 64, 120, 256, 512):
            for total in (MODEL_CARD_TOTAL_PIXELS, VIDEOMME_TOTAL_PIXELS, VIDEO_TOTAL_PIXELS):
                for min_pixels in (VIDEO_MIN_PIXELS, 4 * 784):
                    official = _official_frame_size(height, width, nframes, min_pixels, total)
                    got = video_frame_size(height, width, nframes, min_pixels=min_pixels, total_pixels=total)
                    assert got == official, (height, width, nframes, total, min_pixels)


def test_video_frame_size_caller_max_only_lowers() -> None:
    assert video_frame_size(1080, 1920, 16, max_pixels=100 * 784) == (196, 364)
    generous = video_frame_size(1080, 1920, 120, total_pixels=VIDEOMME_TOTAL_PIXELS, max_pixels=10**9)
    assert generous == (308, 560)


def test_visual_tokens() -> None:
    assert visual_tokens(120, 308, 560) == 60 * 11 * 20 == 13200
    assert visual_tokens(3, 28, 56) == visual_tokens(4, 28, 56) == 4
    with pytest.raises(ValueError):
        visual_tokens(2, 30, 56)
    with pytest.raises(ValueError):
        visual_tokens(0, 28, 28)
