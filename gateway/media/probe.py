"""Decides whether an untrusted file is a usable video: sniffs its container, ffprobes it, enforces the caps."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import MediaTooLarge, NotAVideo
from gateway.media.ffmpeg import INPUT_GUARDS, input_url, run_tool
from gateway.media.plan import VideoInfo
from gateway.media.subtitles import TEXT_CODECS
from vchat_settings import Settings

logger = logging.getLogger(__name__)

# Enough for two MPEG-TS packets (0x47 at 0 and 188) and M2TS's 4-byte prefix (0x47 at 4 and 196).
SNIFF_BYTES = 512
# ISO-BMFF / QuickTime open with a box: 4-byte size, then its type; old QuickTime files may start at moov/mdat.
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"), (b"\x1f\x8b", "a gzip archive"), (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"), (b"%PDF", "a PDF document"), (b"ID3", "MP3 audio"),
    (b"fLaC", "FLAC audio"), (b"OggS", "Ogg audio"), (b"\x7fELF", "a program"), (b"MZ", "a program"),
)
_TEXT_KINDS: tuple[tuple[bytes, str], ...] = (
    (b"#extm3u", "an HLS playlist (a text file listing other files)"), (b"<!doctype html", "an HTML page"),
    (b"<html", "an HTML page"), (b"<mpd", "a DASH manifest (a text file listing other files)"),
    (b"<svg", "an SVG image"), (b"<?xml", "an XML document"), (b"{", "a JSON document"),
)


@dataclass(frozen=True, slots=True)
class ProbeLimits:
    """The caps a video must fit, and how long ffprobe may take."""

    max_duration_s: float
    max_side: int
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ProbeLimits:
        return cls(settings.media_max_duration_s, settings.media_max_side, settings.ffmpeg_timeout_s)


@dataclass(frozen=True, slots=True)
class Probe:
    """What ffprobe says about a video that passed every check."""

    duration_s: float
    fps: float
    # Coded (stored) size. Players and ffmpeg's decoder apply `rotation`; see display_size.
    width: int
    height: int
    # Display rotation in degrees (0, 90, 180, 270) from the stream's display matrix.
    rotation: int
    vcodec: str
    pix_fmt: str
    # From the container's nb_frames, else estimated as duration * fps.
    frame_count: int
    has_audio: bool
    acodec: str | None
    format_name: str
    bytes: int
    video_index: int
    # The first text subtitle stream (mov_text, SubRip, ASS, WebVTT…), which sanitizing drops: read it first.
    subtitle_index: int | None = None
    subtitle_language: str | None = None
    # The container's start time (what ffmpeg's -ss counts from); None in probes cached before it was kept.
    start_s: float | None = None

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown, i.e. as ffmpeg decodes it after auto-rotation."""
        return (self.height, self.width) if self.rotation % 180 == 90 else (self.width, self.height)

    def video_info(self) -> VideoInfo:
        """The frame planner's view of this video (display size, since decoded frames are rotated)."""
        width, height = self.display_size
        return VideoInfo(self.duration_s, self.fps, width, height, self.frame_count)


def is_video_container(head: bytes) -> bool:
    """Whether head starts with the signature of a container the gateway accepts."""
    if head[4:8] in _ISO_BOXES or head[:4] in (b"\x1a\x45\xdf\xa3", b"OggS", b"\x00\x00\x01\xba", b"FLV\x01"):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    # MPEG-TS (188-byte packets) or M2TS (192 bytes: a 4-byte timestamp, then the packet).
    return len(head) > 196 and (head[0] == head[188] == 0x47 or head[4] == head[196] == 0x47)


def looks_like(head: bytes) -> str:
    """Plain words for what non-video content appears to be ("an HTML page"), or a generic description."""
    if not head:
        return "an empty file"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF":
        return {b"WAVE": "WAV audio", b"WEBP": "a WebP image"}.get(head[8:12], "a RIFF file that is not AVI")
    if head[0] == 0xFF and len(head) > 1 and head[1] & 0xE0 == 0xE0:
        return "MP3 audio"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    for prefix, kind in _TEXT_KINDS:
        if text.startswith(prefix):
            return kind
    if text.startswith(b"<") and b"<html" in text:
        return "an HTML page"
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end of the window is still text
        decoded = head[: exc.start].decode("utf-8") if exc.start >= len(head) - 3 else "\0"
    if all(ch.isprintable() or ch in "\t\r\n\f" for ch in decoded):
        return "a text file"
    return "data in no known video format"


async def probe(path: Path, limits: ProbeLimits) -> Probe:
    """Sniff, then ffprobe path; refuse anything that is not a readable video within the limits.

    Raises NotAVideo (not a video container, no video stream, a still image, unreadable or truncated)
    or MediaTooLarge (code video_too_long or frame_too_large). ffprobe never sees a file whose first
    bytes are not a video container, and even then may open only that local file with a video demuxer.
    """
    head, size = await asyncio.to_thread(_head_and_size, path)
    if not is_video_container(head):
        raise NotAVideo(f"The content is not a video: it looks like {looks_like(head)}.")
    args = ["ffprobe", "-hide_banner", "-v", "error", *INPUT_GUARDS,
            "-show_format", "-show_streams", "-of", "json", input_url(path)]
    result = await run_tool(args, timeout_s=limits.timeout_s)
    try:
        info: dict[str, Any] = json.loads(result.stdout) if result.returncode == 0 else {}
    except ValueError:
        info = {}
    if "format" not in info:
        logger.info("ffprobe refused a file", extra={"returncode": result.returncode, "stderr": result.stderr})
        if "not on whitelist" in result.stderr:
            raise NotAVideo("The content is not in a video container the gateway accepts.")
        raise NotAVideo("The video could not be read; the file is damaged, truncated or not a video.")
    return check(parse(info, size), limits)


def parse(info: dict[str, Any], size: int) -> Probe:
    """A Probe from ffprobe's -show_format -show_streams JSON; NotAVideo when it describes no usable video."""
    streams: list[dict[str, Any]] = info.get("streams") or []
    fmt: dict[str, Any] = info.get("format") or {}
    # Cover art is stored as a one-frame "video" stream marked attached_pic; it is not the video.
    videos = [s for s in streams if s.get("codec_type") == "video"
              and not (s.get("disposition") or {}).get("attached_pic")]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos:
        raise NotAVideo("The file has no video stream" + ("; it is audio only." if audios else "."))
    video = videos[0]
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise NotAVideo("The video has no picture size; the file is damaged or not a video.")
    duration = _number(video.get("duration")) or _number(fmt.get("duration"))
    if duration <= 0:
        raise NotAVideo("The video has no duration; the file is damaged, truncated, or a still image.")
    nb_frames = int(_number(video.get("nb_frames")))
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")) or nb_frames / duration
    if fps <= 0:
        raise NotAVideo("The video has no frame rate; the file is damaged or not a video.")
    frame_count = nb_frames if nb_frames > 0 else round(duration * fps)
    if frame_count < 2:
        raise NotAVideo("The file is a still image (a single frame), not a video.")
    audio = audios[0] if audios else None
    texts = [s for s in streams if s.get("codec_type") == "subtitle" and s.get("codec_name") in TEXT_CODECS]
    subtitle = texts[0] if texts else None
    language = str((subtitle.get("tags") or {}).get("language") or "") if subtitle is not None else ""
    return Probe(
        duration_s=duration, fps=fps, width=width, height=height, rotation=_rotation(video),
        vcodec=str(video.get("codec_name") or "unknown"), pix_fmt=str(video.get("pix_fmt") or "unknown"),
        frame_count=frame_count, has_audio=audio is not None,
        acodec=str(audio.get("codec_name") or "unknown") if audio is not None else None,
        format_name=str(fmt.get("format_name") or "unknown"), bytes=size, video_index=int(video.get("index", 0)),
        subtitle_index=int(subtitle.get("index", 0)) if subtitle is not None else None,
        subtitle_language=language if language and language != "und" else None,
        start_s=_start(fmt.get("start_time")),
    )


def check(found: Probe, limits: ProbeLimits) -> Probe:
    """found, if it fits the duration and frame-size caps; MediaTooLarge otherwise."""
    if found.duration_s > limits.max_duration_s:
        raise MediaTooLarge(
            f"The video is {found.duration_s:.0f} s long; the limit is {limits.max_duration_s:.0f} s.",
            code="video_too_long",
        )
    if max(found.width, found.height) > limits.max_side:
        raise MediaTooLarge(
            f"The video's frames are {found.width}x{found.height} pixels; "
            f"neither side may exceed {limits.max_side}.",
            code="frame_too_large",
        )
    return found


def _head_and_size(path: Path) -> tuple[bytes, int]:
    with path.open("rb") as file:
        return file.read(SNIFF_BYTES), path.stat().st_size


def _number(value: object) -> float:
    try:
        number = float(str(value))
    except ValueError:
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def _start(value: object) -> float:
    """The format's start_time in seconds (may be negative); 0 when absent or not a number, as ffprobe's CSV reads."""
    try:
        start = float(str(value))
    except ValueError:
        return 0.0
    return start if math.isfinite(start) else 0.0


def _rate(value: object) -> float:
    num, _, den = str(value).partition("/")
    return _number(num) / _number(den) if _number(den) else 0.0


def _rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list") or []:
        try:
            degrees = float(side["rotation"])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(degrees):
            return round(degrees / 90) % 4 * 90
    return 0
