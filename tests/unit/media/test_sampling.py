"""Parity of gateway.media.sampling with VideoChat-R1.5's my_vision_process.py, and glue hardening.

The `_official_*` functions are line-by-line transcriptions of OpenGVLab/VideoChat-R1,
Videochat-R1.5/src_eval/my_vision_process.py (smart_nframes, sample_frames, the index choice in
_read_video_decord), with numpy's and torch's linspace spelled out in plain Python. The pinned numbers
were produced by running the original code with numpy 2.3 and torch 2.13 (CPU).
"""

from __future__ import annotations

import array
import math
import random

import pytest

from gateway.media.sampling import (
    KEY_TIME_SPARE_FRAMES,
    parse_glue,
    sample_frames,
    select_frames,
    smart_nframes,
    uniform_indices,
)

# --- literal transcriptions of the official code -------------------------------------------------


def _official_smart_nframes(ele: dict[str, int], total_frames: int, video_fps: float) -> int:
    fps = 2.0
    min_frames = math.ceil(ele.get("min_frames", 4) / 2) * 2
    max_frames = math.floor(ele.get("max_frames", min(512, total_frames)) / 2) * 2
    nframes = total_frames / video_fps * fps
    nframes = min(min(max(nframes, min_frames), max_frames), total_frames)
    nframes = math.floor(nframes / 2) * 2
    if not (nframes >= 2 and nframes <= total_frames):
        raise ValueError(nframes)
    return nframes


def _f32(x: float) -> float:
    return array.array("f", [x])[0]


def _torch_linspace_round(start: int, end: int, steps: int) -> list[int]:
    # aten linspace_kernel (CPU, float32): step = (end - start) / (steps - 1); idx < steps // 2 counts
    # from start, the rest from end; .round() is round-half-to-even.
    if steps == 1:
        return [start]
    s, e = _f32(start), _f32(end)
    step = _f32(_f32(e - s) / _f32(steps - 1))
    up = [round(_f32(s + step * i)) for i in range(steps // 2)]
    return up + [round(_f32(e - step * (steps - i - 1))) for i in range(steps // 2, steps)]


def _np_linspace_int(start: int, stop: int, num: int) -> list[int]:
    # numpy.linspace: y = arange(num) * (delta / div) + start; y[-1] = stop; astype(int).
    div = num - 1
    y = [float(i) for i in range(num)]
    if div > 0:
        step = (stop - start) / div
        y = [v / div * (stop - start) for v in y] if step == 0 else [v * step for v in y]
    else:
        y = [v * (stop - start) for v in y]
    y = [v + start for v in y]
    if num > 1:
        y[-1] = stop
    return [int(v) for v in y]


def _official_sample_frames(
    key_timestamps: list[tuple[float, float]],
    total_frames: int,
    num_frames: int,
    key_ratio: float,
    fps: float,
) -> list[int]:
    key_frame_ranges = []
    for start_sec, end_sec in key_timestamps:
        start_frame = int(start_sec * fps)
        end_frame = min(int(end_sec * fps), total_frames - 1)
        if start_frame <= end_frame:
            key_frame_ranges.append((start_frame, end_frame))
    key_frames_count = sum(end - start + 1 for start, end in key_frame_ranges)
    non_key_frames_count = total_frames - key_frames_count
    if non_key_frames_count == 0 and key_ratio == 0:
        raise ValueError("No frames available for sampling.")
    key_weight = key_ratio
    non_key_weight = 1.0
    total_weighted_frames = key_frames_count * key_weight + non_key_frames_count * non_key_weight
    key_sample_count = round(num_frames * (key_frames_count * key_weight) / total_weighted_frames)
    non_key_sample_count = num_frames - key_sample_count
    key_samples: list[int] = []
    for start, end in key_frame_ranges:
        num = max(1, round(key_sample_count * (end - start + 1) / key_frames_count))
        key_samples.extend(_np_linspace_int(start, end, num))
    non_key_samples: list[int] = []
    key_set: set[int] = set()
    for start, end in key_frame_ranges:
        key_set.update(range(start, end + 1))
    non_key_frames = [i for i in range(total_frames) if i not in key_set]
    if non_key_sample_count > 0 and len(non_key_frames) > 0:
        indices = _np_linspace_int(0, len(non_key_frames) - 1, non_key_sample_count)
        non_key_samples = [non_key_frames[i] for i in indices]
    return sorted(set(key_samples + non_key_samples))


def _official_decord_indices(
    key_time: list[tuple[float, float]] | None, total_frames: int, video_fps: float
) -> tuple[list[int], float]:
    nframes = _official_smart_nframes({}, total_frames, video_fps)
    if key_time is not None:
        try:
            idx = _official_sample_frames(key_time, total_frames - 1, nframes, 1.5, video_fps)
        except Exception:
            idx = _torch_linspace_round(0, total_frames - 1, nframes)
    else:
        idx = _torch_linspace_round(0, total_frames - 1, nframes)
    return idx, nframes / max(total_frames, 1e-6) * video_fps


# --- frame count ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "fps", "max_frames", "expected"),
    [
        (1800, 30.0, None, 120),  # 60 s at 2 fps
        (3, 30.0, None, 2),  # fewer frames than the minimum of 4: the frame count wins
        (5, 30.0, None, 4),
        (7, 1.0, None, 6),  # odd count floored to even
        (101, 1.0, None, 100),
        (1001, 1.0, None, 512),  # FPS_MAX_FRAMES
        (1800, 30.0, 64, 64),
        (1800, 30.0, 65, 64),  # caller's max floored to even
        (108000, 30.0, 1000, 1000),  # caller's max replaces 512
    ],
)
def test_smart_nframes_pinned(total: int, fps: float, max_frames: int | None, expected: int) -> None:
    assert smart_nframes(total, fps, max_frames=max_frames) == expected


def test_smart_nframes_matches_official_over_grid() -> None:
    for total in [*range(2, 300), 1799, 1800, 1801, 9999, 54000, 216000]:
        for fps in (1.0, 5.0, 23.976, 25.0, 29.97, 30.0, 60.0):
            for ele in ({}, {"max_frames": 7}, {"max_frames": 200}):
                assert smart_nframes(total, fps, max_frames=ele.get("max_frames")) == _official_smart_nframes(
                    ele, total, fps
                ), (total, fps, ele)


@pytest.mark.parametrize(("total", "fps"), [(1, 30.0), (0, 30.0), (100, 0.0)])
def test_smart_nframes_refuses_unsampleable(total: int, fps: float) -> None:
    with pytest.raises(ValueError):
        smart_nframes(total, fps)


# --- uniform indices (round 1) -------------------------------------------------------------------


def test_uniform_indices_pinned_against_torch() -> None:
    idx = uniform_indices(1800, 120)
    assert idx[:8] == [0, 15, 30, 45, 60, 76, 91, 106]
    assert idx[-4:] == [1754, 1769, 1784, 1799]
    # float32 arithmetic: exact rationals would give 83829, 119149, 189791 here.
    long_video = uniform_indices(202979, 432)
    assert (long_video[178], long_video[253], long_video[403]) == (83828, 119150, 189792)


@pytest.mark.parametrize(
    ("total", "n", "expected"),
    [(3, 2, [0, 2]), (5, 4, [0, 1, 3, 4]), (7, 6, [0, 1, 2, 4, 5, 6]), (2, 2, [0, 1]), (9, 1, [0])],
)
def test_uniform_indices_small(total: int, n: int, expected: list[int]) -> None:
    assert uniform_indices(total, n) == expected


def test_uniform_indices_match_transcription() -> None:
    rng = random.Random(11)
    cases = [(t, n) for t in range(1, 80) for n in range(1, 90)]
    cases += [(rng.randint(1000, 3_000_000), rng.randrange(2, 514, 2)) for _ in range(1500)]
    for total, n in cases:
        assert uniform_indices(total, n) == _torch_linspace_round(0, total - 1, n), (total, n)


# --- key-time sampling (later rounds) ------------------------------------------------------------


def test_issue_case_sixty_seconds_one_span() -> None:
    # 60 s at 30 fps, 120 frames, glue [(10, 20)]: K=301, nonK=1498, round(120*451.5/1949.5) = 28.
    selection = select_frames(1800, 30.0, 120, parse_glue("[(10, 20)]", 60.0))
    inside = [i for i in selection.indices if 10.0 <= i / 30.0 <= 20.0]
    assert len(inside) == 28
    assert inside[:3] == [300, 311, 322]
    assert inside[-1] == 600
    assert len(selection.indices) == 120
    assert selection.indices[:6] == (0, 16, 32, 49, 65, 82)
    assert selection.indices[-1] == 1798  # the official caller passes total_frames - 1
    assert selection.sample_fps == 2.0
    assert selection.key_time is True
    official, official_fps = _official_decord_indices([(10.0, 20.0)], 1800, 30.0)
    assert list(selection.indices) == official
    assert selection.sample_fps == official_fps


def test_sample_frames_pinned_small_spans() -> None:
    # Every span gets at least one frame, so the result can be longer than asked for.
    blips = [(1.0, 1.01), (3.0, 3.01), (5.0, 5.01)]
    assert sample_frames(blips, 299, 4, fps=30.0) == [0, 30, 90, 100, 150, 199, 298]
    assert sample_frames([(0.0, 0.5)], 9, 4, fps=10.0) == [0, 2, 5, 6]


def test_sample_frames_matches_transcription() -> None:
    rng = random.Random(5)
    for _ in range(1500):
        fps = rng.choice([1.0, 12.5, 23.976, 25.0, 29.97, 30.0, 60.0])
        duration = rng.choice([rng.uniform(0.2, 10), rng.uniform(10, 600)])
        total = max(2, round(duration * fps))
        nframes = _official_smart_nframes({}, total, fps)
        spans = []
        for _ in range(rng.randint(0, 5)):
            start = rng.uniform(0, duration + 3)
            spans.append((round(start, 1), round(start + rng.uniform(-2, duration / 2), 1)))
        expected = _official_sample_frames(spans, total - 1, nframes, 1.5, fps)
        assert sample_frames(spans, total - 1, nframes, 1.5, fps=fps) == expected, (spans, total, fps)


def test_select_frames_matches_official_with_hardened_glue() -> None:
    rng = random.Random(9)
    for _ in range(800):
        fps = rng.choice([24.0, 25.0, 29.97, 30.0, 60.0])
        duration = rng.uniform(1, 900)
        total = round(duration * fps)
        pairs = [(rng.uniform(-5, duration + 5), rng.uniform(0, duration + 9)) for _ in range(3)]
        glue = str([(round(s, 1), round(e, 1)) for s, e in pairs])
        spans = parse_glue(glue, duration)
        nframes = smart_nframes(total, fps)
        selection = select_frames(total, fps, nframes, spans)
        official, official_fps = _official_decord_indices(spans or None, total, fps)
        padded = official + official[-1:] * (len(official) % 2)
        assert list(selection.indices) == padded
        assert selection.sample_fps == official_fps
        assert len(selection.indices) % 2 == 0
        assert len(selection.indices) <= nframes + KEY_TIME_SPARE_FRAMES


def test_select_frames_pads_odd_counts_with_last_frame() -> None:
    selection = select_frames(300, 30.0, 20, [(1.0, 1.01), (3.0, 3.01), (5.0, 5.01)])
    assert len(selection.indices) == 24 == 20 + KEY_TIME_SPARE_FRAMES
    assert selection.indices[-2:] == (298, 298)


def test_select_frames_uniform_without_spans_and_on_failure() -> None:
    plain = select_frames(1800, 30.0, 120)
    assert plain.key_time is False
    assert list(plain.indices) == uniform_indices(1800, 120)
    # A one-frame video leaves sample_frames nothing to pick from: fall back to uniform, as upstream.
    fallback = select_frames(1, 30.0, 2, [(0.0, 1.0)])
    assert fallback == select_frames(1, 30.0, 2)
    assert fallback.indices == (0, 0)


def test_tiny_video_three_frames() -> None:
    nframes = smart_nframes(3, 30.0)
    assert nframes == 2
    assert select_frames(3, 30.0, nframes).indices == (0, 2)
    assert select_frames(3, 30.0, nframes).sample_fps == 20.0


# --- glue hardening ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[(5.2, 10.4), (12, 15)]", [(5.2, 10.4), (12.0, 15.0)]),
        ("  [(5.2,10.4)]\n", [(5.2, 10.4)]),
        ("[[1, 2], [3, 4]]", [(1.0, 2.0), (3.0, 4.0)]),
        ("((1, 2), (3, 4),)", [(1.0, 2.0), (3.0, 4.0)]),
        ("[(50, 75)]", [(50.0, 60.0)]),  # past the end: clipped
        ("[(-3, 4)]", [(0.0, 4.0)]),
        ("[(70, 80)]", []),  # wholly past the end: empty after clipping
        ("[(10, 10), (20, 15), (1, 2)]", [(1.0, 2.0)]),  # s >= e dropped
        ("[(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)]", [(1.0, 2.0), (3.0, 4.0), (5.0, 6.0)]),
        ("[(9, 9), (1, 2), (3, 4), (5, 6), (7, 8)]", [(1.0, 2.0), (3.0, 4.0), (5.0, 6.0)]),
        ("[(12, 15), (5, 13)]", [(5.0, 15.0)]),  # overlapping spans merged
        ("[(0, 1e999)]", [(0.0, 60.0)]),
        ("[]", []),
    ],
)
def test_parse_glue(text: str, expected: list[tuple[float, float]]) -> None:
    assert parse_glue(text, 60.0) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "none",
        "[(1, 2)",
        "[(5.2s, 10.4s)]",
        "[(1, 'a')]",
        "[(1, 2, 3)]",
        "__import__('os').system('true')",
        "[(1, 2)] and more",
        "[" + " " * 5000 + "(1, 2)]",  # over MAX_GLUE_CHARS
        "[" + "(1, 2), " * 1000 + "]",
        "[(nan, inf)]",
    ],
)
def test_parse_glue_garbage_is_empty(text: str) -> None:
    assert parse_glue(text, 60.0) == []


def test_parse_glue_bad_duration() -> None:
    assert parse_glue("[(1, 2)]", float("nan")) == []
    assert parse_glue("[(1, 2)]", 0.0) == []
