"""VideoChat-R1.5's round prompts, verbatim from its eval code, and the parser for its tagged replies.

Standard library only: the gateway and the training code (in the torch environment) both import it.

Sources (OpenGVLab/VideoChat-R1, folder ``Videochat-R1.5/``):

- ``src_eval/eval_videomme.py`` (also ``eval_mvbench.py``, ``eval_videommmu.py``): ``QA_THINK_GLUE``, the
  intermediate round, and the option formatting (``option += op + '\\n'`` over VideoMME's ``"A. text"`` lines).
- ``src_eval/eval_videommmu.py`` and the model card's inference snippet: ``QA_THINK``, the final round, with
  think kept and the glue sentence gone. Its example still shows a ``<glue>`` span; that is upstream's text.
- The model card's snippet is also the open-ended use: the same text without the option clause. Upstream left
  "output the corresponding letter of the option" in it; we drop that clause too, as VSI-Bench's open-ended
  prompt (``eval_vsi.py``, ``QA_THINK_NOMC``) does.

VideoMME's script ends on a different final prompt (``QA``) that drops think as well as glue. We keep think in
every round: the model card and VideoMMMU script do, and the gateway shows the final round's reasoning.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Verbatim, including the double space in "within the  <think>" and the trailing newline.
QA_THINK_GLUE = (
    'Answer the question: "[QUESTION]" according to the content of the video. Select the answer from :[OPTION].\n'
    "\n"
    "Output your think process within the  <think> </think> tags.\n"
    "\n"
    "Then, provide your answer within the <answer> </answer> tags, output the corresponding letter of the option. "
    "At the same time, in the <glue> </glue> tags, present the precise time period in seconds of the video clips "
    "on which you base your answer to this question in the format of [(s1, e1), (s2, e2), ...]. "
    "For example: <think>...</think><answer>A</answer><glue>[(5.2, 10.4)]</glue>.\n"
)
QA_THINK = (
    'Answer the question: "[QUESTION]" according to the content of the video. Select the answer from :[OPTION].\n'
    "\n"
    "Output your think process within the  <think> </think> tags.\n"
    "\n"
    "Then, provide your answer within the <answer> </answer> tags, output the corresponding letter of the option. "
    "For example: <think>...</think><answer>A</answer><glue>[(5.2, 10.4)]</glue>.\n"
)
OPTION_CLAUSE = " Select the answer from :[OPTION]."
LETTER_CLAUSE = ", output the corresponding letter of the option"
OPEN_THINK_GLUE = QA_THINK_GLUE.replace(OPTION_CLAUSE, "").replace(LETTER_CLAUSE, "")
OPEN_THINK = QA_THINK.replace(OPTION_CLAUSE, "").replace(LETTER_CLAUSE, "")

_PLACEHOLDER = re.compile(r"\[(QUESTION|OPTION)\]")
# One option on its own line: "A. foo", "A.foo", "(B) bar", "C) baz", "D: qux".
_OPTION_LINE = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])[.):])\s*(\S.*?)\s*$")
_OPTIONS_HEADER = re.compile(r"^\s*(?:options|choices|answer choices|candidates)\s*:?\s*$", re.IGNORECASE)
TAGS = ("think", "answer", "glue")


def format_options(options: Sequence[str]) -> str:
    """The [OPTION] text as the official code builds it: every option followed by a newline."""
    return "".join(option + "\n" for option in options)


def round_prompt(question: str, options: Sequence[str] | None, *, glue: bool) -> str:
    """The user text of one round: QA_THINK_GLUE (glue=True) or QA_THINK (final round, glue=False).

    With options the multiple-choice form (options as split_options formats them, "A. text"); with None or
    no options the open-ended form. Placeholders are filled in one pass, so a question that itself contains
    "[OPTION]" stays as typed (upstream's chained str.replace would substitute into it).
    """
    if options:
        template = QA_THINK_GLUE if glue else QA_THINK
        values = {"QUESTION": question, "OPTION": format_options(options)}
    else:
        template = OPEN_THINK_GLUE if glue else OPEN_THINK
        values = {"QUESTION": question, "OPTION": ""}
    return _PLACEHOLDER.sub(lambda match: values[match[1]], template)


def split_options(text: str) -> tuple[str, list[str] | None]:
    """Split a user's text into a question and its options when it is multiple choice.

    Options are lines starting with consecutive capital letters from A ("A. foo", "(B) bar", "C) baz",
    "D: qux"; blank lines between them are fine), at least two. The last such block wins; an "Options:"
    line just above it is dropped, and text after it stays in the question. Options come back as
    "A. foo", VideoMME's format. Returns (text, None) when there is no block or no question besides it.
    """
    lines = text.splitlines()
    best: tuple[int, int, list[str]] | None = None
    start = 0
    while start < len(lines):
        run = _option_run(lines, start)
        if run is None:
            start += 1
            continue
        end, options = run
        best = (start, end, options)
        start = end
    if best is None:
        return text, None
    start, end, options = best
    before = lines[:start]
    while before and not before[-1].strip():
        before.pop()
    if before and _OPTIONS_HEADER.match(before[-1]):
        before.pop()
    question = "\n".join([*before, *lines[end:]]).strip()
    if not question:
        return text, None
    return question, options


def _option_run(lines: Sequence[str], start: int) -> tuple[int, list[str]] | None:
    """The option block starting at lines[start] (which must be option A): (end index, options), or None."""
    options: list[str] = []
    end = start
    index = start
    while index < len(lines):
        if not lines[index].strip() and options:
            index += 1
            continue
        match = _OPTION_LINE.match(lines[index])
        if match is None or (match[1] or match[2]) != chr(ord("A") + len(options)):
            break
        options.append(f"{match[1] or match[2]}. {match[3]}")
        index += 1
        end = index
    return (end, options) if len(options) >= 2 else None


@dataclass(frozen=True, slots=True)
class Reply:
    """The tagged parts of one model reply; a part is None when its tag is absent."""

    think: str | None
    answer: str | None
    glue_text: str | None


def parse_reply(text: str) -> Reply:
    """Split a reply such as "<think>..</think><answer>B</answer><glue>[(1.0, 2.5)]</glue>" into its parts.

    Each part is the first <tag>(.*?)</tag> (DOTALL), as upstream's regexes, stripped of surrounding
    whitespace. A tag left open (the reply was cut off, or the model skipped the closing tag) runs to the
    next known opening tag or the end of the text. A "</think>" with no "<think>" takes the text before it,
    as replies whose template opened the think block do. Nothing is evaluated.
    """
    return Reply(_part(text, "think"), _part(text, "answer"), _part(text, "glue"))


def _part(text: str, tag: str) -> str | None:
    opening, closing = f"<{tag}>", f"</{tag}>"
    start = text.find(opening)
    if start < 0:
        if tag == "think" and (close_at := text.find(closing)) >= 0 and "<answer>" not in text[:close_at]:
            return text[:close_at].strip()
        return None
    start += len(opening)
    end = text.find(closing, start)
    if end < 0:
        later = [at for other in TAGS if (at := text.find(f"<{other}>", start)) >= 0]
        end = min(later, default=len(text))
    return text[start:end].strip()
