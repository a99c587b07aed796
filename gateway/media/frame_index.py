"""The frame index of a video: every frame's pts and whether it is a keyframe, read from the sanitized MP4's own
tables (mp4index) or, where they cannot be read, by a demux-only ffprobe pass; and the index's queries that choose
which frames to decode (keyframe snapping, lone keyframes, groups by keyframe)."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from gateway.errors import NotAVideo
from gateway.media.ffmpeg import INPUT_GUARDS, input_url, run_tool
from gateway.media.mp4index import read_track_frames
from gateway.media.probe import Probe


@dataclass(frozen=True, slots=True)
class FrameIndex:
    """Every frame of a video in presentation order: its pts (in time_base units) and which frames are keyframes.

    Frame i is what a decoder that numbers frames in presentation order (decord, as VideoChat-R1.5 uses)
    calls frame i; its time is pts[i] relative to the first frame.
    """

    pts: tuple[int, ...]
    keyframes: tuple[int, ...]  # indices into pts, ascending, starting with 0
    time_base: Fraction
    start_s: float  # the container's start time, which ffmpeg's -ss counts from

    def __len__(self) -> int:
        return len(self.pts)

    def time(self, index: int) -> float:
        """Seconds from the first frame to frame index."""
        return float((self.pts[index] - self.pts[0]) * self.time_base)

    def keyframe_of(self, index: int) -> int:
        """The last keyframe at or before frame index in presentation order (decoding from it reaches index)."""
        return self.keyframes[max(bisect.bisect_right(self.keyframes, index) - 1, 0)]

    def to_json(self) -> dict[str, object]:
        return {"pts": list(self.pts), "keyframes": list(self.keyframes), "time_base": str(self.time_base),
                "start_s": self.start_s}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> FrameIndex:
        pts, keys = data["pts"], data["keyframes"]
        if not isinstance(pts, list) or not isinstance(keys, list) or not pts or not keys:
            raise ValueError("not a frame index")
        return cls(tuple(int(p) for p in pts), tuple(int(k) for k in keys), Fraction(str(data["time_base"])),
                   float(str(data["start_s"])))


def index_args(video: Path, found: Probe) -> list[str]:
    """ffprobe reading only packets (no decoding): each video packet's pts and flags, plus time base and start."""
    return ["ffprobe", "-hide_banner", "-v", "error", *INPUT_GUARDS, "-select_streams", str(found.video_index),
            "-show_entries", "packet=pts,flags:stream=time_base:format=start_time", "-of", "csv=p=0",
            input_url(video)]


def parse_index(text: str) -> FrameIndex:
    """A FrameIndex from index_args' CSV (lines "pts,flags", then the stream's "num/den" and the format's start).

    Packets flagged D (before an edit list's start) are dropped by the decoder, so they are not frames.
    Raises NotAVideo when there are no frames.
    """
    frames: list[tuple[int, bool]] = []
    time_base, start = Fraction(1, 90_000), 0.0
    for line in text.splitlines():
        fields = line.strip().split(",")
        if len(fields) == 2 and fields[0].lstrip("-").isdigit():
            if "D" not in fields[1]:
                frames.append((int(fields[0]), "K" in fields[1]))
        elif len(fields) == 1 and "/" in fields[0]:
            num, _, den = fields[0].partition("/")
            if num.isdigit() and den.isdigit() and int(num) > 0 and int(den) > 0:
                time_base = Fraction(int(num), int(den))
        elif len(fields) == 1 and fields[0]:
            with contextlib.suppress(ValueError):
                start = float(fields[0])
    return index_of(frames, time_base, start if start == start else 0.0)


def index_of(frames: list[tuple[int, bool]], time_base: Fraction, start_s: float) -> FrameIndex:
    """A FrameIndex from (pts, keyframe) pairs in any order. Raises NotAVideo when there are none."""
    if not frames:
        raise NotAVideo("No frame could be found in the video.")
    frames = sorted(frames)
    pts = tuple(p for p, _ in frames)
    keys = tuple(i for i, (_, key) in enumerate(frames) if key and i > 0)
    return FrameIndex(pts, (0, *keys), time_base, start_s)


async def build_index(video: Path, found: Probe, *, timeout_s: float) -> FrameIndex:
    """The frame index of video: read from its MP4 sample tables where they have a shape read exactly like ffmpeg
    (the sanitized copy's), in milliseconds; else one demux-only ffprobe pass. Raises NotAVideo, MediaTimeout."""
    if found.start_s is not None:
        track = await asyncio.to_thread(read_track_frames, video, found.video_index)
        if track is not None and track.frames:
            return await asyncio.to_thread(index_of, track.frames, Fraction(1, track.timescale), found.start_s)
    return await probe_index(video, found, timeout_s=timeout_s)


async def probe_index(video: Path, found: Probe, *, timeout_s: float) -> FrameIndex:
    """The frame index of video from one demux-only ffprobe pass over every packet. Raises NotAVideo, MediaTimeout."""
    result = await run_tool(index_args(video, found), timeout_s=timeout_s)
    if result.returncode != 0:
        raise NotAVideo("The video's frames could not be listed; the file is damaged.")
    return await asyncio.to_thread(parse_index, result.stdout.decode("ascii", "replace"))


def snap_to_keyframes(index: FrameIndex, wanted: Sequence[int], bound_s: float,
                      keep: Sequence[tuple[int, int]] = ()) -> list[int]:
    """The wanted frames, each moved to its nearest keyframe where that keyframe's time lies within bound_s of
    the frame's: a keyframe decodes alone, any other frame only after everything from its keyframe on.

    Frames inside the inclusive ranges of keep stay where they are and none moves into them (a glue round's
    segments keep exactly the official frames). A frame never moves past (or onto) another wanted frame, so the
    order and the count hold; repeats stay repeats; bound_s 0 keeps every frame where it was.
    """
    distinct = sorted(set(wanted))
    if bound_s <= 0 or not distinct:
        return list(wanted)

    def kept(frame: int) -> bool:
        return any(first <= frame <= last for first, last in keep)

    moved: dict[int, int] = {}
    floor = -1  # the output of the frame before: a frame moves only strictly between it and the next wanted one
    for n, frame in enumerate(distinct):
        ceiling = distinct[n + 1] if n + 1 < len(distinct) else len(index)
        target = frame
        if not kept(frame):
            after = bisect.bisect_right(index.keyframes, frame)
            candidates = [index.keyframe_of(frame), *index.keyframes[after:after + 1]]
            best = min(candidates, key=lambda key: (abs(index.time(key) - index.time(frame)), key))
            if (abs(index.time(best) - index.time(frame)) <= bound_s and floor < best < ceiling
                    and not kept(best)):
                target = best
        moved[frame] = target
        floor = target
    return [moved[frame] for frame in wanted]


def lone_keyframes(index: FrameIndex, wanted: Sequence[int]) -> list[int]:
    """The wanted keyframes no other wanted frame decodes from: each can be decoded alone (keyframe_args)."""
    return [keyframe for keyframe, frames in group_by_keyframe(index, wanted) if frames == [keyframe]]


def group_by_keyframe(index: FrameIndex, wanted: Sequence[int]) -> list[tuple[int, list[int]]]:
    """The distinct wanted frames grouped by the keyframe decoding must start from, in order."""
    groups: dict[int, list[int]] = {}
    for frame in sorted(set(wanted)):
        if not 0 <= frame < len(index):
            raise IndexError(f"frame {frame} is not in a video of {len(index)} frames")
        groups.setdefault(index.keyframe_of(frame), []).append(frame)
    return list(groups.items())
