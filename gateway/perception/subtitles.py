"""A round's subtitles as VideoChat-R1.5's long-video evaluation puts them in its prompt: the wording, which lines a
round's frames cover, and thinning them to a byte budget.

Standard library only (it belongs with ``prompts.py``, and moves with it). Source: OpenGVLab/VideoChat-R1,
``Videochat-R1.5/src_eval/eval_longvideo.py`` (its LongVideoBench setting): ``insert_subtitles_into_frames``
keeps, in the file's order, each line some frame time falls strictly inside, a line shorter than 1 s counting as
the second around its middle; the kept texts, joined by newlines, go into ``pre_prompt``, which comes before the
round's ``QA_THINK_GLUE`` / final prompt. Upstream's frame times are uniform over the whole video (every second up
to 512 s, else 512 evenly spaced) and the same in every round; ours are the times of the frames the round sends.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Protocol, TypeVar

# Verbatim, including the space before the first newline, the "." after the last line and the trailing space.
PRE_PROMPT = ("This video's subtitles are listed below: \n[SUBTITLES].\n Select the best answer to the following "
              "multiple-choice question based on the video and the subtitles. ")
# Ours: upstream's sentence asks for a choice, which an open-ended question has not got.
OPEN_PRE_PROMPT = ("This video's subtitles are listed below: \n[SUBTITLES].\n Answer the following question "
                   "based on the video and the subtitles. ")


class TimedText(Protocol):
    """A subtitle line: shown from ``start`` to ``end`` seconds."""

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...

    @property
    def text(self) -> str: ...


L = TypeVar("L", bound=TimedText)


def covered(lines: Sequence[L], times: Sequence[float]) -> list[L]:
    """The lines some frame time falls strictly inside, in order (upstream's rule, a short line widened to 1 s)."""
    ordered = sorted(times)
    kept = []
    for line in lines:
        start, end = line.start, line.end
        if end - start < 1:
            middle = (start + end) / 2
            start, end = middle - 0.5, middle + 0.5
        if any(start < time < end for time in _near(ordered, start, end)):
            kept.append(line)
    return kept


def thin(lines: Sequence[L], max_bytes: int) -> list[L]:
    """As many lines as fit in ``max_bytes`` (each counted with its newline), spread evenly over the round's."""
    def size(chosen: Sequence[L]) -> int:
        return sum(len(line.text.encode()) + 1 for line in chosen)

    if size(lines) <= max_bytes:
        return list(lines)
    low, high = 0, len(lines)  # the largest count whose even spread fits: low fits, high does not
    while high - low > 1:
        middle = (low + high) // 2
        if size(_spread(lines, middle)) <= max_bytes:
            low = middle
        else:
            high = middle
    return _spread(lines, low)


def with_subtitles(prompt: str, lines: Sequence[TimedText], *, multiple_choice: bool) -> str:
    """``prompt`` with upstream's subtitle preamble in front; ``prompt`` alone when no line is given."""
    if not lines:
        return prompt
    head = PRE_PROMPT if multiple_choice else OPEN_PRE_PROMPT
    return head.replace("[SUBTITLES]", "\n".join(line.text for line in lines), 1) + prompt


def preamble_bytes(*, multiple_choice: bool) -> int:
    """Bytes the preamble adds around its lines."""
    return len((PRE_PROMPT if multiple_choice else OPEN_PRE_PROMPT).replace("[SUBTITLES]", "").encode())


def _spread(lines: Sequence[L], count: int) -> list[L]:
    return [lines[index * len(lines) // count] for index in range(count)] if count else []


def _near(ordered: Sequence[float], start: float, end: float) -> Sequence[float]:
    """The sorted times within [start, end] (binary search: rounds send up to 512 frames, videos hold 20000 lines)."""
    return ordered[bisect_left(ordered, start):bisect_right(ordered, end)]
