"""Rewrites a probed video as a plain MP4 (one video, at most one audio stream, no metadata) any backend plays."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import sys
from pathlib import Path

from gateway.errors import NotAVideo
from gateway.media.ffmpeg import INPUT_GUARDS, input_url, run_tool
from gateway.media.probe import Probe, ProbeLimits, probe
from gateway.media.space import nearly_full, out_of_space, tool_ran_out

# Video is stream-copied only when it is 8-bit 4:2:0 H.264, which browsers, Gemini and vLLM's decoders all
# accept. HEVC is re-encoded although copying it would be faster: Firefox and some Chromium builds cannot
# play HEVC in MP4. Copying keeps the display-rotation matrix; re-encoding applies it to the pixels.
COPY_VIDEO = {("h264", "yuv420p")}
COPY_AUDIO = {"aac", "mp3"}
# The output may come out a little shorter than the input said (trailing audio, rounding); much shorter
# means the demuxer hit the end of the file early: a truncated download whose index promised more.
TRUNCATED_RATIO = 0.9
TRUNCATED_SLACK_S = 1.0


def sanitize_args(src: Path, found: Probe, out: Path) -> list[str]:
    """The ffmpeg argument list that rewrites src (described by found) into the MP4 out."""
    copy_video = (found.vcodec, found.pix_fmt) in COPY_VIDEO
    video = ["-c:v", "copy"] if copy_video else [
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        # yuv420p needs even sides; -fps_mode vfr never duplicates frames to fill timestamp gaps.
        "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-fps_mode", "vfr",
    ]
    audio = ["-c:a", "copy"] if found.acodec in COPY_AUDIO else ["-c:a", "aac", "-b:a", "128k"]
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-n", *INPUT_GUARDS, "-i", input_url(src),
        "-map", f"0:{found.video_index}", "-map", "0:a:0?",
        "-map_metadata", "-1", "-map_chapters", "-1", "-sn", "-dn",
        *video, *audio,
        # bitexact drops the muxer's "encoder" tag; no tmcd track is made up from timecode metadata.
        "-fflags", "+bitexact", "-write_tmcd", "0", "-movflags", "+faststart", "-f", "mp4", input_url(out),
    ]


async def sanitize(src: Path, found: Probe, dest: Path, *, timeout_s: float) -> Probe:
    """Write src as a clean MP4 at dest (atomically) and return the probe of what was written.

    The output is written to a temporary name beside dest and renamed over it only once ffmpeg succeeded
    and the result probes as a video of about the input's duration; the temporary file is removed on any
    failure or cancellation. Raises NotAVideo when ffmpeg cannot convert the input or it turns out
    truncated, InsufficientStorage when the copy does not fit on the disk, MediaTimeout when ffmpeg takes
    longer than timeout_s.
    """
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
    try:
        result = await run_tool(sanitize_args(src, found, tmp), timeout_s=timeout_s)
        if tool_ran_out(result, tmp):
            raise out_of_space(tmp)
        if result.returncode != 0:
            raise NotAVideo("The video could not be converted; the file is damaged or uses an unusable codec.")
        unlimited = ProbeLimits(max_duration_s=math.inf, max_side=sys.maxsize, timeout_s=timeout_s)
        try:
            written = await probe(tmp, unlimited)
        except NotAVideo:
            # The input probed well, so a copy ffmpeg called good that reads as no video lost its last writes.
            if nearly_full(tmp):
                raise out_of_space(tmp) from None
            raise
        if written.duration_s < found.duration_s * TRUNCATED_RATIO - TRUNCATED_SLACK_S:
            raise NotAVideo(
                f"The video is truncated: its header promises {found.duration_s:.1f} s, "
                f"but only {written.duration_s:.1f} s could be read."
            )
        os.replace(tmp, dest)
    except BaseException:
        _discard(tmp)
        raise
    return written


def _discard(path: Path) -> None:
    # One unlink is a metadata operation, not I/O worth a thread; doing it inline also runs it on cancel.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
