"""gateway.media.zoom: glue rounds sample as the official code by default at every length; the opt-in dense zoom
keeps it up to LONG_VIDEO_S and zooms for real beyond it."""

from __future__ import annotations

import pytest

from gateway.media.sampling import KEY_TIME_SPARE_FRAMES, select_frames
from gateway.media.zoom import LONG_VIDEO_S, ZOOM_SHARE, round_frames, segment_fps


def inside(indices: tuple[int, ...], spans: list[tuple[float, float]], fps: float) -> int:
    return sum(1 for i in set(indices) if any(s * fps <= i <= e * fps for s, e in spans))


@pytest.mark.parametrize("seconds", [6, 60, LONG_VIDEO_S])
def test_short_videos_and_uniform_rounds_are_sampled_as_the_official_code(seconds: float) -> None:
    total = int(seconds * 30)
    for spans in ([], [(1.0, 2.5)], [(0.5, 1.0), (3.0, 4.0)]):
        assert round_frames(total, 30.0, 16, spans, dense=True) == select_frames(total, 30.0, 16, spans)
    assert round_frames(3600 * 30, 30.0, 64) == select_frames(3600 * 30, 30.0, 64)


@pytest.mark.parametrize("hours", [1, 3])
def test_long_videos_put_half_the_frames_inside_the_glued_segments(hours: int) -> None:
    total, fps = hours * 3600 * 30, 30.0
    spans = [(600.0, 660.0), (2400.0, 2430.0)]
    official = select_frames(total, fps, 64, spans)
    zoomed = round_frames(total, fps, 64, spans, dense=True)
    assert inside(official.indices, spans, fps) <= 3  # 1.5x denser of a sparse round: nearly nothing
    assert inside(zoomed.indices, spans, fps) >= 64 * ZOOM_SHARE
    # The 60 s segment gets about twice the 30 s one's frames; the rest still covers the whole video.
    first, second = (sum(1 for i in set(zoomed.indices) if s * fps <= i <= e * fps) for s, e in spans)
    assert abs(first - 2 * second) <= 2
    assert min(zoomed.indices) == 0 and max(zoomed.indices) > total * 0.95
    assert len(zoomed.indices) % 2 == 0 and len(zoomed.indices) <= 64 + KEY_TIME_SPARE_FRAMES
    assert zoomed.sample_fps == official.sample_fps and zoomed.key_time


def test_a_segment_shorter_than_its_share_gets_every_frame_once() -> None:
    zoomed = round_frames(3600 * 30, 30.0, 64, [(100.0, 100.5)], dense=True)
    assert set(range(3000, 3016)) <= set(zoomed.indices)
    assert len(zoomed.indices) - len(set(zoomed.indices)) <= 1  # only the even-count padding repeats


@pytest.mark.parametrize("hours", [1, 3])
def test_a_long_glue_round_covers_the_video_with_frames_round_one_extracted(hours: int) -> None:
    total, fps, spans = hours * 3600 * 30, 30.0, [(600.0, 660.0)]
    uniform = set(select_frames(total, fps, 64).indices)
    zoomed = round_frames(total, fps, 64, spans, dense=True)
    outside = set(zoomed.indices) - {i for i in zoomed.indices if 600 * fps <= i <= 660 * fps}
    # Only the zoomed frames are new; the ones covering the rest of the video come from the cache.
    assert len(outside) >= 64 * (1 - ZOOM_SHARE) - 1 and outside <= uniform


@pytest.mark.parametrize("seconds", [60, 3600, 3 * 3600])
def test_the_official_weighting_is_the_default_at_every_length(seconds: int) -> None:
    total, fps, spans = seconds * 30, 30.0, [(seconds * 0.4, seconds * 0.4 + min(seconds / 5, 60.0))]
    official = round_frames(total, fps, 512 if seconds > 256 else 120, spans)
    assert official == select_frames(total, fps, 512 if seconds > 256 else 120, spans)
    # Declared at the average rate; inside the segment 1.5x denser than that, as the model was trained.
    density = segment_fps(official.indices, official.keep, fps)
    assert density is not None and density == pytest.approx(1.5 * official.sample_fps, rel=0.1)


def test_the_dense_zoom_reports_how_much_denser_the_segment_really_is() -> None:
    total, fps, spans = 3600 * 30, 30.0, [(1440.0, 1500.0)]
    dense = round_frames(total, fps, 512, spans, dense=True)
    density = segment_fps(dense.indices, dense.keep, fps)
    # 256 or more frames in 60 s (over 4 fps) declared at 512 frames an hour (0.14 fps): ~30x off.
    assert density is not None and density > 4 and density / dense.sample_fps > 25
    assert segment_fps(select_frames(total, fps, 512).indices, (), fps) is None
