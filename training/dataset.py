"""Reads a JSONL training set and validates every line (JSON, conversation, video) before anything is trained."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from training.conversation import ConversationError, Turn, parse_messages, parse_text
from training.frames import FrameSettings, VideoFrames, all_frames


@dataclass(frozen=True)
class Sample:
    """One valid line: its number, the video (absolute, and as written) and the conversation as written."""

    line: int
    video: Path
    video_path: str
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class Problem:
    """Why one line cannot be trained on."""

    line: int
    message: str


@dataclass(frozen=True)
class Dataset:
    """Every sample of a valid dataset, the frames of each video, and the file's SHA-256."""

    path: Path
    sha256: str
    samples: tuple[Sample, ...]
    frames: dict[Path, VideoFrames]


class DatasetInvalid(Exception):
    """Raised when any line is bad (or the file unreadable); ``report()`` lists every problem at once."""

    def __init__(self, path: Path, problems: list[Problem], lines: int) -> None:
        super().__init__(f"{len(problems)} invalid lines in {path}")
        self.path, self.problems, self.lines = path, problems, lines

    def report(self) -> str:
        bad = len({p.line for p in self.problems if p.line})
        head = f"{self.path}: {bad} of {self.lines} lines are invalid; nothing was trained."
        if not self.lines or not bad:
            head = f"{self.path}: the dataset cannot be used; nothing was trained."
        return "\n".join([head, *(f"  line {p.line}: {p.message}" if p.line else f"  {p.message}"
                                  for p in self.problems)])


def parse_line(raw: bytes, number: int, folder: Path) -> Sample | Problem | None:
    """The sample on one line, the problem with it, or None for a blank line. Does not open the video."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Problem(number, "not UTF-8 text")
    if not text.strip():
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return Problem(number, f"not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(record, dict):
        return Problem(number, f"expected a JSON object, got {type(record).__name__}")
    video = record.get("video_path")
    if not isinstance(video, str) or not video.strip():
        return Problem(number, "'video_path' is missing or not a non-empty string")
    has_text, has_messages = "text" in record, "messages" in record
    if has_text == has_messages:
        return Problem(number, "needs exactly one of 'text' (\"USER: …\\nASSISTANT: …\") or 'messages'")
    try:
        if has_text:
            if not isinstance(record["text"], str):
                return Problem(number, "'text' must be a string")
            turns = parse_text(record["text"])
        else:
            turns = parse_messages(record["messages"])
    except ConversationError as exc:
        return Problem(number, str(exc))
    return Sample(number, (folder / video).absolute(), video, turns)


def _video_problem(video: Path, written: str) -> str | None:
    """Why the file cannot even be opened (before ffprobe looks at it), if so."""
    if not video.exists():
        return f"video '{written}' does not exist (looked for {video})"
    if not video.is_file():
        return f"video '{written}' is not a file"
    if not os.access(video, os.R_OK):
        return f"video '{written}' is not readable (permission denied)"
    return None


def load_dataset(path: Path, work: Path, frames: FrameSettings) -> Dataset:
    """Every line parsed and every video probed, sanitized and sampled into ``work``; DatasetInvalid if any fails.

    Relative video paths are relative to the dataset's folder. Blank lines are skipped.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetInvalid(path, [Problem(0, f"cannot read the dataset: {exc.strerror or exc}")], 0) from exc
    lines = data.split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()
    parsed = [parse_line(raw, n, path.parent) for n, raw in enumerate(lines, 1)]
    problems = [p for p in parsed if isinstance(p, Problem)]
    samples = [s for s in parsed if isinstance(s, Sample)]
    openable: list[Sample] = []
    for sample in samples:
        if reason := _video_problem(sample.video, sample.video_path):
            problems.append(Problem(sample.line, reason))
        else:
            openable.append(sample)
    found = all_frames((s.video for s in openable), work, frames)
    for sample in openable:
        if isinstance(outcome := found[sample.video], str):
            problems.append(Problem(sample.line, f"video '{sample.video_path}': {outcome}"))
    if not samples and not problems:
        problems.append(Problem(0, "the dataset has no samples"))
    if problems:
        raise DatasetInvalid(path, sorted(problems, key=lambda p: p.line), len(lines))
    ready = {video: f for video, f in found.items() if isinstance(f, VideoFrames)}
    return Dataset(path, hashlib.sha256(data).hexdigest(), tuple(samples), ready)
