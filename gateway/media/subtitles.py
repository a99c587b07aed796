"""A video's timed text: the subtitle stream of its container or a page's captions, read as plain (start, end, text)
lines within byte and line caps.

Subtitles are untrusted text. ffmpeg converts any text stream (mov_text, SubRip, ASS/SSA, WebVTT) to SubRip, and
the parser here reads SubRip and WebVTT alike; markup (HTML-like tags, ASS override blocks, entities) is removed,
so a line is only ever text: it is put into prompts and shown escaped, never rendered or run. A file over
``max_bytes`` is read up to there, more than ``max_lines`` lines are cut there, and cues that do not parse are
skipped; each of these says so in ``Transcript.notes``. Timed text never makes a video fail: a stream ffmpeg cannot
convert is logged and the video has no transcript.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from gateway.media.ffmpeg import INPUT_GUARDS, input_url, run_tool

logger = logging.getLogger(__name__)

TranscriptSource = Literal["container", "captions", "asr"]  # "asr": transcribed speech (speech.py)
# Text subtitle codecs ffmpeg can convert to SubRip; bitmap ones (dvd_subtitle, hdmv_pgs_subtitle, dvb_subtitle)
# hold pictures of text and are ignored.
TEXT_CODECS = frozenset({"mov_text", "subrip", "srt", "ass", "ssa", "webvtt", "text", "microdvd", "subviewer"})

_TIMING = re.compile(
    r"^\s*(?P<start>(?:\d+:)?\d{1,2}:\d{1,2}[.,]\d{1,3})\s*-->\s*(?P<end>(?:\d+:)?\d{1,2}:\d{1,2}[.,]\d{1,3})")
_TAG = re.compile(r"<[^>]{0,200}>")
_ASS_OVERRIDE = re.compile(r"\{\\[^}]{0,500}\}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


@dataclass(frozen=True, slots=True)
class Line:
    """One subtitle: shown from ``start`` to ``end`` (seconds), plain text on one line."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """A video's timed text: where it came from, its language when known, its lines in time order, and what was
    cut or skipped while reading it."""

    source: TranscriptSource
    language: str | None
    lines: tuple[Line, ...]
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "language": self.language, "lines": [asdict(line) for line in self.lines],
                "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transcript:
        return cls(data["source"], data.get("language"), tuple(Line(**line) for line in data["lines"]),
                   tuple(data.get("notes") or ()))


@dataclass(frozen=True, slots=True)
class TextLimits:
    """How much timed text one video may bring: bytes read, lines kept."""

    max_bytes: int
    max_lines: int


def parse(data: bytes, limits: TextLimits) -> tuple[list[Line], list[str]]:
    """The lines of a SubRip or WebVTT file (at most ``limits``), and notes on what was cut or skipped.

    Cues are blocks separated by blank lines; a block's first timing line (``00:00:01,000 --> 00:00:02.500``,
    hours optional) starts its text. Markup is removed, whitespace collapsed; cues with no text, an end before
    their start, or a malformed time are skipped. Consecutive cues with the same text (rolling captions) become one.
    """
    notes: list[str] = []
    if len(data) > limits.max_bytes:
        notes.append(f"The subtitles are longer than {limits.max_bytes} bytes (VCHAT_SUBTITLES_MAX_BYTES); "
                     "only their beginning was read.")
        data = data[: limits.max_bytes]
    text = data.decode("utf-8", "replace").lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines: list[Line] = []
    skipped = 0
    for block in re.split(r"\n[ \t]*\n", text):
        cue = _cue(block)
        if cue is None:
            skipped += bool(_TIMING.search(block) or "-->" in block)
            continue
        if lines and lines[-1].text == cue.text and cue.start <= lines[-1].end + 0.05:
            lines[-1] = Line(lines[-1].start, max(lines[-1].end, cue.end), cue.text)
            continue
        if len(lines) == limits.max_lines:
            notes.append(f"The subtitles have more than {limits.max_lines} lines (VCHAT_SUBTITLES_MAX_LINES); "
                         "later ones were dropped.")
            break
        lines.append(cue)
    if skipped:
        notes.append(f"{skipped} subtitle cues could not be read and were skipped.")
    lines.sort(key=lambda line: (line.start, line.end))
    return lines, notes


def plain(text: str) -> str:
    """Subtitle text as plain words: tags, ASS override blocks and control characters gone, entities decoded
    once, ASS line breaks and whitespace runs made single spaces."""
    text = _ASS_OVERRIDE.sub("", text).replace("\\N", " ").replace("\\n", " ").replace("\\h", " ")
    text = html.unescape(_TAG.sub("", text))
    text = _TAG.sub("", text)  # an entity-escaped tag ("&lt;b&gt;") decodes to markup: remove that as well
    return " ".join(_CONTROL.sub(" ", text).split())


def _cue(block: str) -> Line | None:
    rows = block.strip("\n").split("\n")
    for at, row in enumerate(rows):
        match = _TIMING.match(row)
        if match is None:
            continue
        start, end = _seconds(match["start"]), _seconds(match["end"])
        text = plain(" ".join(rows[at + 1:]))
        if start is None or end is None or end < start or not text:
            return None
        return Line(round(start, 3), round(end, 3), text)
    return None


def _seconds(stamp: str) -> float | None:
    parts = stamp.replace(",", ".").split(":")
    try:
        hours = int(parts[-3]) if len(parts) == 3 else 0
        minutes, seconds = int(parts[-2]), float(parts[-1])
    except ValueError:
        return None
    if minutes >= 60 or seconds >= 60:
        return None
    return hours * 3600 + minutes * 60 + seconds


def read_text(data: bytes, limits: TextLimits, source: TranscriptSource, language: str | None) -> Transcript | None:
    """A transcript from SubRip/WebVTT bytes; None when no line could be read."""
    lines, notes = parse(data, limits)
    if not lines:
        if notes:
            logger.warning("subtitles had no readable line", extra={"notes": notes, "source": source})
        return None
    return Transcript(source, language, tuple(lines), tuple(notes))


async def extract(src: Path, stream_index: int, language: str | None, work: Path, limits: TextLimits, *,
                  timeout_s: float) -> Transcript | None:
    """The text subtitle stream ``stream_index`` of src as a transcript, or None when it has no readable line or
    ffmpeg cannot convert it (logged; the video is still good).

    ffmpeg writes SubRip to a file in ``work`` and stops a little past ``max_bytes`` (``-fs``), so a huge stream
    costs neither memory nor disk; the parser then cuts at ``max_bytes`` and says so.
    """
    out = work / "subtitles.srt"
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *INPUT_GUARDS, "-i", input_url(src),
            "-map", f"0:{stream_index}", "-c:s", "srt", "-fs", str(limits.max_bytes + 1), "-f", "srt",
            input_url(out)]
    result = await run_tool(args, timeout_s=timeout_s)
    data = await asyncio.to_thread(_take, out, limits.max_bytes + 1)
    if result.returncode != 0 and not data:
        logger.warning("subtitle stream not converted", extra={"stderr": result.stderr})
        return None
    return read_text(data, limits, "container", language)


def _take(path: Path, most: int) -> bytes:
    """The first ``most`` bytes of path (b"" when ffmpeg wrote none), and path gone."""
    try:
        with path.open("rb") as file:
            return file.read(most)
    except FileNotFoundError:
        return b""
    finally:
        path.unlink(missing_ok=True)


def load(path: Path) -> Transcript | None:
    """The transcript stored at path; None when there is none (blocking: call it in a thread)."""
    try:
        return Transcript.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("stored transcript unreadable", extra={"path": str(path)})
        return None
