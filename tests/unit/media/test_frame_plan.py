"""gateway.media.plan: the official frame plan when it fits, fewer frames next, smaller frames last."""

from __future__ import annotations

import random

import pytest

from gateway.media.plan import FrameLimits, FramePlan, VideoInfo, plan_frames
from gateway.media.sampling import KEY_TIME_SPARE_FRAMES, smart_nframes
from videochat_r15.geometry import VIDEO_MIN_PIXELS, VIDEOMME_TOTAL_PIXELS, video_frame_size, visual_tokens

HD_MINUTE = VideoInfo(duration_s=60.0, fps=30.0, width=1920, height=1080, total_frames=1800)


def _limits(max_tokens: int, **kwargs: int) -> FrameLimits:
    return FrameLimits(max_visual_tokens=max_tokens, total_pixels=VIDEOMME_TOTAL_PIXELS, **kwargs)


def test_official_plan_when_it_fits() -> None:
    expected = FramePlan(nframes=120, height=308, width=560, tokens=13200)
    assert plan_frames(HD_MINUTE, _limits(16384)) == expected


def test_fewer_frames_before_smaller_frames() -> None:
    # 308x560 costs 11*20 = 220 tokens per frame pair; 8960 tokens pay for 40 pairs.
    assert plan_frames(HD_MINUTE, _limits(8960)) == FramePlan(nframes=80, height=308, width=560, tokens=8800)


def test_spare_frames_for_glue_rounds() -> None:
    plan = plan_frames(HD_MINUTE, _limits(8960), spare_frames=KEY_TIME_SPARE_FRAMES)
    assert plan == FramePlan(nframes=76, height=308, width=560, tokens=8360)
    assert visual_tokens(plan.nframes + KEY_TIME_SPARE_FRAMES, plan.height, plan.width) <= 8960


def test_smaller_frames_only_at_four_frames() -> None:
    # 300 tokens: one 308x560 pair fits, so 4 frames must shrink to <= 150 tokens per pair.
    assert plan_frames(HD_MINUTE, _limits(300)) == FramePlan(nframes=4, height=252, width=448, tokens=288)


def test_shrinking_never_goes_below_min_pixels() -> None:
    # 515 tokens for 4 + 4 spare frames leave 128 tokens per pair, exactly min_pixels; smart_resize would
    # floor 1080p to 224x420 (120 tokens, under min_pixels), so the nearest in-range shape is taken.
    plan = plan_frames(HD_MINUTE, FrameLimits(515), spare_frames=KEY_TIME_SPARE_FRAMES)
    assert plan == FramePlan(nframes=4, height=224, width=448, tokens=256)
    assert plan.height * plan.width == VIDEO_MIN_PIXELS


def test_impossible_limit_raises() -> None:
    with pytest.raises(ValueError, match="cannot hold 4 frames"):
        plan_frames(HD_MINUTE, _limits(200))  # 4 frames at min_pixels need 256 tokens


def test_tiny_video_keeps_its_two_frames() -> None:
    tiny = VideoInfo(duration_s=0.1, fps=30.0, width=640, height=480, total_frames=3)
    assert plan_frames(tiny, FrameLimits(100_000)) == FramePlan(nframes=2, height=476, width=644, tokens=391)
    assert plan_frames(tiny, FrameLimits(100, min_pixels=4 * 784)) == FramePlan(2, 224, 308, 88)


def test_frame_count_estimated_when_unknown() -> None:
    unknown = VideoInfo(duration_s=60.0, fps=30.0, width=1920, height=1080)
    assert plan_frames(unknown, _limits(16384)) == plan_frames(HD_MINUTE, _limits(16384))


@pytest.mark.parametrize("video", [VideoInfo(0.03, 30.0, 640, 480, 1), VideoInfo(1.0, 0.0, 640, 480, 30)])
def test_unsampleable_videos_raise(video: VideoInfo) -> None:
    with pytest.raises(ValueError):
        plan_frames(video, FrameLimits(10_000))


def test_plans_never_exceed_the_limit() -> None:
    rng = random.Random(3)
    shrunk = reduced = official = 0
    for _ in range(3000):
        fps = rng.choice([10.0, 24.0, 25.0, 29.97, 30.0, 60.0])
        total = rng.choice([rng.randint(2, 40), rng.randint(40, 5000), rng.randint(5000, 400_000)])
        video = VideoInfo(total / fps, fps, rng.randint(100, 3840), rng.randint(100, 2160), total)
        limits = FrameLimits(
            max_visual_tokens=rng.choice([rng.randint(1, 1000), rng.randint(1000, 30_000)]),
            min_pixels=rng.choice([VIDEO_MIN_PIXELS, 4 * 784, 32 * 784]),
            total_pixels=rng.choice([VIDEOMME_TOTAL_PIXELS, 128 * 12 * 784, 90_316_800]),
            max_frames=rng.choice([512, 64, 768]),
        )
        spare = rng.choice([0, KEY_TIME_SPARE_FRAMES])
        wanted = smart_nframes(total, fps, max_frames=limits.max_frames)
        size = video_frame_size(
            video.height, video.width, wanted, min_pixels=limits.min_pixels, total_pixels=limits.total_pixels
        )
        try:
            plan = plan_frames(video, limits, spare_frames=spare)
        except ValueError:
            # Only when even the fewest frames at min_pixels cannot fit.
            fewest_pairs = visual_tokens(min(4, wanted) + spare, 28, 28)
            assert fewest_pairs * limits.min_pixels / 784 > limits.max_visual_tokens
            continue
        assert visual_tokens(plan.nframes + spare, plan.height, plan.width) <= limits.max_visual_tokens
        assert plan.tokens == visual_tokens(plan.nframes, plan.height, plan.width)
        assert plan.nframes % 2 == 0 and plan.nframes <= min(wanted, total)
        assert plan.height % 28 == 0 and plan.width % 28 == 0
        if (plan.height, plan.width) == size:
            official += plan.nframes == wanted
            reduced += plan.nframes < wanted
        else:
            # Frames only shrink once the frame count is down to its floor, never below min_pixels.
            shrunk += 1
            assert plan.nframes == min(4, wanted)
            assert plan.height * plan.width >= limits.min_pixels
            assert plan.height * plan.width < size[0] * size[1]
    assert min(official, reduced, shrunk) > 100  # every branch was exercised
