"""Exact frames on demand: a demux-only index of every frame's pts, and seek-based extraction of chosen frames."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from gateway.errors import NotAVideo
from gateway.media.ffmpeg import INPUT_GUARDS, ToolResult, input_url, run_tool
from gateway.media.mp4index import read_track_frames
from gateway.media.probe import Probe
from gateway.media.space import out_of_space, tool_ran_out

# mjpeg's qscale: 2 is near-lossless, 5 shows blocking on text; 3 is about JPEG quality 90.
JPEG_QSCALE = "3"
# Input seeking lands on the keyframe at or before the seek time. Aiming at the keyframe's own pts could round
# to just before it, and a seek a hair early lands a whole GOP earlier (decoding it for nothing); so the seek
# aims a little after the keyframe, at most this far and never past half the gap to the next frame.
SEEK_MARGIN_S = 0.001
# Groups (keyframes) one ffmpeg run seeks and extracts, each from its own input: a run costs ~0.1 s of CPU
# before it decodes anything (loading ffmpeg's libraries), as much as decoding 200 frames of 720p, so an hour's
# round of hundreds of keyframes spreads over a few runs per core. Each input holds a decoder's frames (a few
# MB at 720p) until its run ends, which bounds the number.
GROUPS_PER_RUN = 8
# Opening an input (demuxer, decoder, seek) costs about as much as decoding this many frames of 720p (fewer of a
# larger picture, more of a smaller one), so a group starting closer than that after the previous group's last
# frame is decoded on from it (one input, one span) rather than seeked to. Dense sampling of a long video (512
# frames of an hour: a frame or two per keyframe) becomes a few long spans, about a full decode split over the
# cores, instead of hundreds of seeks.
MERGE_GAP_FRAMES_720P = 250
# Each input reads no further than this past its span's last wanted frame (-t): with several inputs in one run,
# ffmpeg 5.1 now and then went on decoding an input to the end of the video after its output had every frame
# (an hour's round took 5x a full decode). The slack covers frames an open GOP shows before its keyframe.
READ_SLACK_S = 0.5


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


def merge_gap(width: int, height: int) -> int:
    """MERGE_GAP_FRAMES_720P scaled to a video of width x height (decoding cost goes with the pixels)."""
    return max(1, round(MERGE_GAP_FRAMES_720P * 1280 * 720 / max(1, width * height)))


def plan_spans(index: FrameIndex, wanted: Sequence[int], *, cores: int, gap: int) -> list[tuple[int, list[int]]]:
    """The wanted frames as spans to decode: (keyframe to start from, frames in order), one input each.

    Keyframe groups follow each other in one span while the frames between a group's last wanted frame and the
    next group's keyframe number fewer than gap; then spans are split back at group boundaries, largest first,
    until there is one per core (where groups allow), so that long spans still decode in parallel.
    """
    spans: list[list[tuple[int, list[int]]]] = []
    for keyframe, frames in group_by_keyframe(index, wanted):
        if spans and keyframe - spans[-1][-1][1][-1] <= gap:
            spans[-1].append((keyframe, frames))
        else:
            spans.append([(keyframe, frames)])
    while len(spans) < cores:
        widest = max(range(len(spans)), key=lambda n: _extent(spans[n]))
        span = spans[widest]
        if len(span) < 2:
            break
        # Split where the halves' extents (frames decoded) are closest.
        cut = min(range(1, len(span)), key=lambda k: abs(_extent(span[:k]) - _extent(span[k:])))
        spans[widest:widest + 1] = [span[:cut], span[cut:]]
    return [(span[0][0], [frame for _, frames in span for frame in frames]) for span in spans]


def _extent(span: Sequence[tuple[int, list[int]]]) -> int:
    return span[-1][1][-1] - span[0][0] + 1


def seek_args(video: Path, found: Probe, index: FrameIndex, keyframe: int, frames: Sequence[int], *,
              width: int, height: int, threads: int, out_dir: Path) -> list[str]:
    """One ffmpeg run: seek to the keyframe, decode forward, keep exactly these frames (by pts), scale, JPEG."""
    return batch_args(video, found, index, [(keyframe, frames, out_dir)], width=width, height=height,
                      threads=threads)


def batch_args(video: Path, found: Probe, index: FrameIndex, groups: Sequence[tuple[int, Sequence[int], Path]], *,
               width: int, height: int, threads: int) -> list[str]:
    """One ffmpeg run over several (keyframe, frames, out_dir) groups: the video opened once per group, each
    input seeking to its keyframe, each output keeping exactly that group's frames (by pts), scaled, as JPEGs.

    Timestamps are kept as stored (-copyts), so the select filter's t is the pts the index lists; each frame
    is matched within half the gap to its neighbours, which no other frame can be. Each output stops after its
    last wanted frame (-frames:v) and each input is read only that far (-t, plus READ_SLACK_S), so decoding goes
    no further than it needs. Files are numbered from 0.
    """
    inputs: list[str] = []
    outputs: list[str] = []
    for number, (keyframe, frames, out_dir) in enumerate(groups):
        inputs += ["-threads", str(threads), "-t", _read_for(index, keyframe, frames), *_seek(index, keyframe),
                   "-i", input_url(video)]
        pattern = str(out_dir.resolve()).replace("%", "%%") + "/%d.jpg"
        outputs += [
            "-map", f"{number}:{found.video_index}", "-an", "-sn", "-dn",
            "-vf", f"select='{_select(index, frames)}',scale={width}:{height}:flags=bicubic",
            "-fps_mode", "passthrough", "-frames:v", str(len(frames)),
            "-q:v", JPEG_QSCALE, "-f", "image2", "-start_number", "0", pattern,
        ]
    return ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", *INPUT_GUARDS, "-copyts", "-filter_threads", "1",
            *inputs, *outputs]


def keyframe_args(video: Path, found: Probe, index: FrameIndex, keyframes: Sequence[int], *, width: int,
                  height: int, threads: int, out_dir: Path) -> list[str]:
    """One ffmpeg run decoding only keyframes (-discard nokey: the demuxer never reads the other packets, a sixth of
    the run on an hour of 2 s GOPs; -skip_frame nokey: nor does the decoder decode one that comes through) from the
    first of keyframes to the last, keeping exactly these (by pts), scaled, as JPEGs numbered from 0.

    ffmpeg 5.1's H.264 decoder stalls after a few frames of an open GOP this way (its I-frames are not IDR): the
    run then comes back short and the caller seeks to each keyframe instead.
    """
    pattern = str(out_dir.resolve()).replace("%", "%%") + "/%d.jpg"
    return ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", *INPUT_GUARDS, "-copyts", "-filter_threads", "1",
            "-threads", str(threads), "-discard", "nokey", "-skip_frame", "nokey",
            "-t", _read_for(index, keyframes[0], keyframes),
            *_seek(index, keyframes[0]), "-i", input_url(video),
            "-map", f"0:{found.video_index}", "-an", "-sn", "-dn",
            "-vf", f"select='{_select(index, keyframes)}',scale={width}:{height}:flags=bicubic",
            "-fps_mode", "passthrough", "-frames:v", str(len(keyframes)),
            "-q:v", JPEG_QSCALE, "-f", "image2", "-start_number", "0", pattern]


def _seek(index: FrameIndex, keyframe: int) -> list[str]:
    if keyframe == 0:
        return []
    tb = index.time_base
    after = index.pts[keyframe + 1] - index.pts[keyframe] if keyframe + 1 < len(index) else 0
    margin = min(SEEK_MARGIN_S, float(after * tb) / 2) if after > 0 else 0.0
    seek = float(index.pts[keyframe] * tb) - index.start_s + margin
    return ["-noaccurate_seek", "-ss", f"{seek:.6f}"] if seek > 0 else []


def _read_for(index: FrameIndex, keyframe: int, frames: Sequence[int]) -> str:
    """How long the input seeked to keyframe is read (from its first frame): to the last wanted frame, plus slack,
    counted from the keyframe before, so that a seek landing one GOP early still reaches every frame. It only caps
    a run gone wrong: a run that has its frames stops there (-frames:v)."""
    before = index.keyframes[max(bisect.bisect_left(index.keyframes, keyframe) - 1, 0)]
    return f"{float((index.pts[max(frames)] - index.pts[before]) * index.time_base) + READ_SLACK_S:.6f}"


def _select(index: FrameIndex, frames: Sequence[int]) -> str:
    tb = index.time_base
    terms = []
    for frame in frames:
        gaps = [abs(index.pts[n] - index.pts[frame]) for n in (frame - 1, frame + 1) if 0 <= n < len(index)]
        tolerance = float(min(gaps, default=1) * tb) / 2
        terms.append(f"lt(abs(t-{float(index.pts[frame] * tb)!r})\\,{tolerance!r})")
    return _balanced_sum(terms)


def _balanced_sum(terms: Sequence[str]) -> str:
    """terms added as a balanced tree: ffmpeg's expression evaluator gives up (ENOMEM) on a chain of ~100."""
    if len(terms) == 1:
        return terms[0]
    middle = len(terms) // 2
    return f"({_balanced_sum(terms[:middle])}+{_balanced_sum(terms[middle:])})"


async def extract_frames(video: Path, found: Probe, index: FrameIndex, wanted: Sequence[int], *, width: int,
                         height: int, out_dir: Path, workers: asyncio.Semaphore, cores: int,
                         timeout_s: float) -> None:
    """Write each wanted frame as out_dir/frame_name(i), width x height, decoding only what each needs.

    Frames are grouped by keyframe and close groups joined into spans (plan_spans); each span is one input of
    an ffmpeg run that seeks to its keyframe and decodes on to its last frame, a run takes up to GROUPS_PER_RUN
    spans (at least one run per core while there are spans enough), and the runs go in parallel as far as
    `workers` allows (each with a share of the cores). A span that comes back short (a leading frame of an open
    GOP needs the GOP before) is retried alone from the keyframe before; a run that fails retries its spans
    alone. Frames land in a temporary directory inside out_dir and are renamed into
    place, so a reader sees whole files only; on failure or cancellation every process this call started is
    killed and the temporary directory removed. Raises NotAVideo when a frame cannot be decoded,
    InsufficientStorage when the frames do not fit on the disk, MediaTimeout after timeout_s per run.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid frame size {width}x{height}")
    alone = lone_keyframes(index, wanted)
    alone_set = set(alone)
    others = [frame for frame in wanted if frame not in alone_set]
    groups = plan_spans(index, others, cores=cores, gap=merge_gap(found.width, found.height)) if others else []
    # Lone keyframes in contiguous chunks, one run per core at most: each run reads its stretch of the video and
    # decodes only its keyframes (a keyframe every 2 s of an hour: 3% of a full decode, all 1,800 of them).
    chunks = [alone[k * len(alone) // cores:(k + 1) * len(alone) // cores] for k in range(cores)] if alone else []
    chunks = [chunk for chunk in chunks if chunk]
    if not groups and not chunks:
        return
    runs = max(min(len(groups), cores), -(-len(groups) // GROUPS_PER_RUN)) if groups else 0
    threads = max(1, cores // max(1, min(runs + len(chunks), cores)))
    tmp = out_dir / f".extract-{secrets.token_hex(6)}.tmp"
    # mkdir inline, not in a thread: a cancelled thread could create the directory after it was cleaned up.
    os.mkdir(tmp)
    try:
        async with asyncio.TaskGroup() as tasks:
            for run in range(runs):
                batch = [(number, *groups[number]) for number in range(run, len(groups), runs)]
                tasks.create_task(_extract_batch(video, found, index, batch, width=width, height=height,
                                                 threads=threads, work=tmp, out_dir=out_dir, workers=workers,
                                                 timeout_s=timeout_s))
            for number, chunk in enumerate(chunks, start=len(groups)):
                tasks.create_task(_extract_keyframes(video, found, index, number, chunk, width=width, height=height,
                                                     threads=threads, work=tmp, out_dir=out_dir, workers=workers,
                                                     timeout_s=timeout_s))
    except BaseExceptionGroup as group:
        # One failure stopped the others; report the first real one as itself.
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    finally:
        # Shielded so that a second cancellation cannot skip the cleanup.
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, tmp, True))


async def _extract_batch(video: Path, found: Probe, index: FrameIndex, batch: list[tuple[int, int, list[int]]], *,
                         width: int, height: int, threads: int, work: Path, out_dir: Path,
                         workers: asyncio.Semaphore, timeout_s: float) -> None:
    """One ffmpeg run for the (number, keyframe, frames) groups of batch; the ones it did not deliver, alone."""
    for number, _, _ in batch:
        os.mkdir(work / str(number))
    args = batch_args(video, found, index, [(keyframe, frames, work / str(number)) for number, keyframe, frames in
                                            batch], width=width, height=height, threads=threads)
    async with workers:
        result = await run_tool(args, timeout_s=timeout_s)
    _refuse_full_disk(result, work)
    for number, keyframe, frames in batch:
        group_dir = work / str(number)
        if result.returncode == 0 and await asyncio.to_thread(_place, group_dir, frames, out_dir):
            continue
        shutil.rmtree(group_dir, ignore_errors=True)
        before = bisect.bisect_left(index.keyframes, keyframe) - 1
        # A clean run that came back short needs the GOP before; a failed run may have failed for another group.
        starts = [keyframe] if result.returncode != 0 else []
        starts += [index.keyframes[before]] if before >= 0 else []
        await _extract_group(video, found, index, starts, frames, width=width, height=height, threads=threads,
                             work=group_dir, out_dir=out_dir, workers=workers, timeout_s=timeout_s)


async def _extract_keyframes(video: Path, found: Probe, index: FrameIndex, number: int, keyframes: list[int], *,
                             width: int, height: int, threads: int, work: Path, out_dir: Path,
                             workers: asyncio.Semaphore, timeout_s: float) -> None:
    """keyframes decoded alone in one keyframe-only run; if it comes back short (an open GOP), each sought alone."""
    chunk_dir = work / f"k{number}"
    os.mkdir(chunk_dir)
    args = keyframe_args(video, found, index, keyframes, width=width, height=height, threads=threads,
                         out_dir=chunk_dir)
    async with workers:
        result = await run_tool(args, timeout_s=timeout_s)
    _refuse_full_disk(result, chunk_dir)
    if result.returncode == 0 and await asyncio.to_thread(_place, chunk_dir, keyframes, out_dir):
        return
    shutil.rmtree(chunk_dir, ignore_errors=True)
    # Each keyframe its own input (a seek decodes from the keyframe, and the output stops at its first frame).
    for first in range(0, len(keyframes), GROUPS_PER_RUN):
        batch = [(k, keyframe, [keyframe]) for k, keyframe in enumerate(keyframes[first:first + GROUPS_PER_RUN])]
        batch_dir = work / f"k{number}-{first}"
        os.mkdir(batch_dir)
        await _extract_batch(video, found, index, batch, width=width, height=height, threads=threads,
                             work=batch_dir, out_dir=out_dir, workers=workers, timeout_s=timeout_s)


async def _extract_group(video: Path, found: Probe, index: FrameIndex, starts: list[int], frames: list[int], *,
                         width: int, height: int, threads: int, work: Path, out_dir: Path,
                         workers: asyncio.Semaphore, timeout_s: float) -> None:
    """frames decoded alone from each keyframe of starts in turn, until one run delivers them all."""
    for keyframe in starts:
        os.mkdir(work)
        args = seek_args(video, found, index, keyframe, frames, width=width, height=height, threads=threads,
                         out_dir=work)
        async with workers:
            result = await run_tool(args, timeout_s=timeout_s)
        _refuse_full_disk(result, work)
        if result.returncode == 0 and await asyncio.to_thread(_place, work, frames, out_dir):
            return
        shutil.rmtree(work, ignore_errors=True)
    raise NotAVideo("Frames of the video could not be decoded; the file is damaged.")


def _refuse_full_disk(result: ToolResult, work: Path) -> None:
    """InsufficientStorage for a run that ran out of room: retrying from another keyframe would only fill the disk
    again, and "damaged" would blame the video."""
    if tool_ran_out(result, work):
        raise out_of_space(work)


def _place(work: Path, frames: list[int], out_dir: Path) -> bool:
    """Rename the k-th output to frames[k]'s name if there is one output per frame, else leave them."""
    if len(os.listdir(work)) != len(frames) or not all((work / f"{k}.jpg").is_file() for k in range(len(frames))):
        return False
    for k, frame in enumerate(frames):
        os.replace(work / f"{k}.jpg", out_dir / frame_name(frame))
    return True


def frame_name(index: int) -> str:
    return f"{index:08d}.jpg"
