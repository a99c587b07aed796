"""Glue rounds: the official key-time weighting by default; opt-in (``vchat.zoom`` "dense", ``VCHAT_ZOOM``), at least
half of a long video's glue-round frames inside the glued segments."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.media.sampling import FrameSelection, Span, select_frames, uniform_indices
from videochat_r15.geometry import FRAME_FACTOR

# The official weighting (glued frames 1.5x denser, the round declared at its average fps) is what the model was
# trained and evaluated with, LongVideoBench's hour-long videos included, so it is the default. Beyond this length
# 1.5x of a sparse round is still sparse (an hour at 64 frames gives a 60 s segment one or two frames), which the
# dense zoom answers, at a price: the round is still declared at the whole video's average fps, so the model reads
# the segment's frames as spread over far more time than they cover.
LONG_VIDEO_S = 600.0
# Share of a long video's glue-round frames placed inside the segments; the rest keep covering the whole video.
ZOOM_SHARE = 0.5



def round_frames(total_frames: int, video_fps: float, nframes: int, spans: Sequence[Span] = (), *,
                 dense: bool = False) -> FrameSelection:
    """The frames of one round: select_frames (official) for uniform rounds, and for every glue round unless dense.

    Dense, for videos longer than LONG_VIDEO_S with spans: at least ZOOM_SHARE of nframes spread evenly over the
    spans' frames (in proportion to their lengths, one each at least, never more than they have), the rest evenly
    chosen among a uniform round's frames (covering the whole video with frames already extracted). The declared
    fps stays the official average rate; the count stays even and within nframes + len(spans) + 1."""
    official = select_frames(total_frames, video_fps, nframes, spans)
    if not dense or not spans or total_frames / video_fps <= LONG_VIDEO_S:
        return official
    ranges = [(max(0, int(start * video_fps)), min(int(end * video_fps), total_frames - 1)) for start, end in spans]
    ranges = [(first, last) for first, last in ranges if first <= last]
    inside = sum(last - first + 1 for first, last in ranges)
    if not ranges or _count_inside(official.indices, ranges) >= nframes * ZOOM_SHARE:
        return official
    picked = _spread(ranges, min(round(nframes * ZOOM_SHARE), inside), inside)
    rest = max(nframes - len(picked), 1)
    # The rest are every so many of a uniform round's frames: round 1 extracted those, so they come from the cache.
    uniform = uniform_indices(total_frames, nframes)
    picked.update(uniform[i] for i in uniform_indices(len(uniform), min(rest, len(uniform))))
    indices = sorted(picked)
    if len(indices) % FRAME_FACTOR:
        indices.append(indices[-1])
    return FrameSelection(tuple(indices), official.sample_fps, True, tuple(ranges))


def _spread(ranges: Sequence[tuple[int, int]], zoomed: int, inside: int) -> set[int]:
    """zoomed frames spread over the inclusive frame ranges in proportion to their lengths (one each at least)."""
    picked: set[int] = set()
    for first, last in ranges:
        count = last - first + 1
        share = min(count, max(1, round(zoomed * count / inside)))
        picked.update(first + i for i in (uniform_indices(count, share) if share > 1 else [(count - 1) // 2]))
    return picked


def _count_inside(indices: Sequence[int], ranges: Sequence[tuple[int, int]]) -> int:
    return sum(1 for i in set(indices) if any(first <= i <= last for first, last in ranges))


def segment_fps(indices: Sequence[int], keep: Sequence[tuple[int, int]], video_fps: float) -> float | None:
    """The real density inside the glued segments (inclusive frame ranges): distinct frames there per second of
    them; None without segments."""
    if not keep:
        return None
    seconds = sum(last - first + 1 for first, last in keep) / video_fps
    return _count_inside(indices, keep) / seconds
