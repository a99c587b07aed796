"""Exact frames on demand: seek-based extraction of chosen frames, planned over the frame index (frame_index.py)."""

from __future__ import annotations

import asyncio
import bisect
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

from gateway.errors import NotAVideo
from gateway.media.ffmpeg import INPUT_GUARDS, ToolResult, input_url, run_tool
from gateway.media.frame_index import (
    FrameIndex,
    group_by_keyframe,
    lone_keyframes,
)
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
