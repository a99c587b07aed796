"""VideoChat-R1.5's frame selection: how many frames, which ones (uniform or glue-weighted), at what fps."""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from videochat_r15.geometry import FRAME_FACTOR, ceil_by_factor, floor_by_factor

FPS = 2.0
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 512
# Frames inside glued spans are this much denser than the rest (my_vision_process._read_video_decord).
KEY_TIME_WEIGHT = 1.5
# Training rewarded at most 3 spans; the model emits more on long videos (VideoChat-R1 issue #44).
MAX_GLUE_SPANS = 3
# Glue-weighted sampling may return more frames than planned: every span gets at least one frame, and an
# odd count is padded to even. A plan that keeps this many frames spare stays under its token limit.
KEY_TIME_SPARE_FRAMES = MAX_GLUE_SPANS + 1
# Three spans fit in ~50 characters; refusing long text bounds the regex work on model output.
MAX_GLUE_CHARS = 4096

Span = tuple[float, float]

_F32 = struct.Struct("f")
_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_PAIR = rf"[(\[]\s*({_NUM})\s*,\s*({_NUM})\s*[)\]]"
_PAIR_NC = rf"[(\[]\s*{_NUM}\s*,\s*{_NUM}\s*[)\]]"
_GLUE_LIST = re.compile(rf"[\[(]\s*(?:{_PAIR_NC}\s*(?:,\s*{_PAIR_NC}\s*)*,?\s*)?[\])]")
_GLUE_PAIR = re.compile(_PAIR)


@dataclass(frozen=True, slots=True)
class FrameSelection:
    """Frame indices to decode (an even count) and the fps to declare for them."""

    indices: tuple[int, ...]
    # The official code always declares the *average* rate nframes / total_frames * video_fps, even when
    # glue weighting made the spacing uneven; the model was trained and evaluated with that value.
    sample_fps: float
    key_time: bool
    # The glued segments as inclusive frame ranges: frames there are the zoom's own and never move to keyframes.
    keep: tuple[tuple[int, int], ...] = ()


def smart_nframes(
    total_frames: int,
    video_fps: float,
    *,
    fps: float = FPS,
    min_frames: int = FPS_MIN_FRAMES,
    max_frames: int | None = None,
) -> int:
    """Number of frames to sample, as the official smart_nframes: fps * duration, clamped, even.

    Clamped to [min_frames, max_frames] (max_frames defaults to min(512, total_frames)) and then to
    total_frames, and floored to an even number. So a 3-frame video gets 2 frames, below the minimum of 4.
    Raises ValueError when fewer than 2 frames result (a 1-frame video) or the rates are not positive.
    """
    if video_fps <= 0 or fps <= 0:
        raise ValueError(f"frame rates must be positive, got video_fps={video_fps}, fps={fps}")
    low = ceil_by_factor(min_frames, FRAME_FACTOR)
    # A caller's max_frames replaces the default min(512, total_frames), as upstream.
    ceiling = min(FPS_MAX_FRAMES, total_frames) if max_frames is None else max_frames
    high = floor_by_factor(ceiling, FRAME_FACTOR)
    wanted = total_frames / video_fps * fps
    nframes = floor_by_factor(min(max(wanted, low), high, total_frames), FRAME_FACTOR)
    if not FRAME_FACTOR <= nframes <= total_frames:
        raise ValueError(f"cannot sample {nframes} frames from a video of {total_frames} frames")
    return nframes


def _f32(value: float) -> float:
    rounded: float = _F32.unpack(_F32.pack(value))[0]
    return rounded


def uniform_indices(total_frames: int, nframes: int) -> list[int]:
    """torch.linspace(0, total_frames - 1, nframes).round().long(), reproduced bit for bit.

    Torch works in float32 on the CPU: step = (end - start) / (n - 1), the first half counted up from
    start, the second half down from end, each value rounded once, then rounded half to even. Exact
    arithmetic would differ by one frame for about one video in eight above 200k frames, so the float32
    steps are emulated (checked against torch 2.13 over 35k cases).
    """
    if total_frames < 1 or nframes < 1:
        raise ValueError(f"need positive counts, got total_frames={total_frames}, nframes={nframes}")
    if nframes == 1:
        return [0]
    end = _f32(total_frames - 1)
    step = _f32(end / (nframes - 1))
    half = nframes // 2
    # In double precision these products and differences are exact, so one float32 rounding follows.
    up = [round(_f32(step * i)) for i in range(half)]
    down = [round(_f32(end - step * (nframes - 1 - i))) for i in range(half, nframes)]
    return up + down


def _linspace_int(start: int, stop: int, num: int) -> list[int]:
    """np.linspace(start, stop, num=num, dtype=int): float64 k * step + start, exact stop, truncated."""
    if num == 1:
        return [start]
    step = (stop - start) / (num - 1)
    return [int(k * step + start) for k in range(num - 1)] + [stop]


def _nth_free_frame(rank: int, taken: Sequence[tuple[int, int]]) -> int:
    """The rank-th frame (0-based) not inside the sorted, disjoint inclusive ranges in taken."""
    frame = rank
    for first, last in taken:
        if frame < first:
            break
        frame += last - first + 1
    return frame


def _merged(ranges: Sequence[tuple[int, int]], total_frames: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted((max(0, f), min(last, total_frames - 1)) for f, last in ranges):
        if first > last:
            continue
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def span_ranges(spans: Sequence[Span], total_frames: int, fps: float) -> list[tuple[int, int]]:
    """Spans as inclusive frame ranges, as the official sample_frames reads them: [int(s * fps), int(e * fps)]
    capped at the last frame; empty ones dropped."""
    ranges = [(int(start_s * fps), min(int(end_s * fps), total_frames - 1)) for start_s, end_s in spans]
    return [(first, last) for first, last in ranges if first <= last]


def sample_frames(
    key_time: Sequence[Span], total_frames: int, nframes: int, weight: float = KEY_TIME_WEIGHT, *, fps: float
) -> list[int]:
    """Official sample_frames: nframes indices out of total_frames, `weight` times denser inside key_time.

    Spans become frame ranges [int(s * fps), min(int(e * fps), total_frames - 1)]. The key share is
    round(nframes * weight*K / (weight*K + nonK)) over K key and nonK other frames; each range gets
    max(1, round(share * len / K)) frames and the rest are spread over the other frames, both with numpy's
    truncating linspace. The union is returned sorted, so the count can differ from nframes: duplicates
    collapse, and each range's minimum of one can add frames. Note the official caller passes the
    video's frame count minus one, so the last frame is never picked in glue rounds.
    """
    if total_frames < 1 or nframes < 1 or fps <= 0:
        raise ValueError(f"invalid sampling request: {total_frames=}, {nframes=}, {fps=}")
    ranges = span_ranges(key_time, total_frames, fps)
    key_count = sum(last - first + 1 for first, last in ranges)
    non_key_count = total_frames - key_count
    weighted_total = key_count * weight + non_key_count * 1.0
    if weighted_total <= 0:
        raise ValueError("no frames available for sampling")
    key_samples = round(nframes * (key_count * weight) / weighted_total)
    non_key_samples = nframes - key_samples

    picked: set[int] = set()
    for first, last in ranges:
        picked.update(_linspace_int(first, last, max(1, round(key_samples * (last - first + 1) / key_count))))
    # Upstream builds the list of every non-key frame; ranking into the gaps gives the same frames
    # without an O(total_frames) list for long videos.
    taken = _merged(ranges, total_frames)
    free = total_frames - sum(last - first + 1 for first, last in taken)
    if non_key_samples > 0 and free > 0:
        picked.update(_nth_free_frame(rank, taken) for rank in _linspace_int(0, free - 1, non_key_samples))
    return sorted(picked)


def select_frames(
    total_frames: int,
    video_fps: float,
    nframes: int,
    spans: Sequence[Span] = (),
) -> FrameSelection:
    """Frames for one round: uniform without spans, glue-weighted with them, as _read_video_decord.

    Glue rounds call sample_frames(spans, total_frames - 1, nframes, 1.5, fps), as upstream. Where
    upstream falls back to uniform on an exception, so do we, and also when the result would exceed
    nframes + KEY_TIME_SPARE_FRAMES (it takes spans sharing frames; parse_glue merges overlaps).
    An odd count is padded with its last frame, as Qwen's processor would do itself.
    """
    if total_frames < 1 or video_fps <= 0 or nframes < 1:
        raise ValueError(f"invalid video: {total_frames=}, {video_fps=}, {nframes=}")
    picked: list[int] | None = None
    if spans:
        try:
            picked = sample_frames(spans, total_frames - 1, nframes, KEY_TIME_WEIGHT, fps=video_fps)
        except ValueError:
            picked = None
        if picked is not None and len(picked) + len(picked) % 2 > nframes + KEY_TIME_SPARE_FRAMES:
            picked = None
    key_time = picked is not None
    indices = picked if picked is not None else uniform_indices(total_frames, nframes)
    if len(indices) % FRAME_FACTOR:
        indices = [*indices, indices[-1]]
    keep = tuple(span_ranges(spans, total_frames - 1, video_fps)) if key_time else ()
    return FrameSelection(tuple(indices), nframes / max(total_frames, 1e-6) * video_fps, key_time, keep)


def parse_glue(text: str, duration_s: float) -> list[Span]:
    """Spans from a <glue> body such as "[(5.2, 10.4), (12, 15)]", made safe to sample from.

    Only a list of number pairs is accepted (matched by a regex, never evaluated). Each span is clipped
    to [0, duration_s], spans with start >= end are dropped, the first MAX_GLUE_SPANS are kept, and
    overlapping ones are merged (upstream would count their shared frames twice). Returns [] when the
    text is not such a list; the caller then samples uniformly, as upstream does on a parse error.
    """
    text = text.strip()
    if len(text) > MAX_GLUE_CHARS or not math.isfinite(duration_s) or not _GLUE_LIST.fullmatch(text):
        return []
    spans: list[Span] = []
    for match in _GLUE_PAIR.finditer(text):
        start = min(max(float(match[1]), 0.0), duration_s)
        end = min(max(float(match[2]), 0.0), duration_s)
        if start < end:
            spans.append((start, end))
        if len(spans) == MAX_GLUE_SPANS:
            break
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
