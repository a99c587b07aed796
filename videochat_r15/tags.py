"""Splits a streamed R1.5 reply into reasoning (``<think>``), answer (``<answer>``) and glue, token by token."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Channel = Literal["reasoning", "content", "glue"]
_OPEN: dict[str, Channel] = {"<think>": "reasoning", "<answer>": "content", "<glue>": "glue"}
_CLOSE = ("</think>", "</answer>", "</glue>")
_TAGS = (*_OPEN, *_CLOSE)
_LONGEST = max(len(tag) for tag in _TAGS)


@dataclass
class TagSplitter:
    """Feed text pieces as they arrive; get (channel, text) pieces back with the tags removed.

    The answer is what the official eval scripts take: the first ``<answer>`` body, streamed as it comes;
    without one, the whole reply (``answer = ans``). So:

    - ``<think>`` bodies stream as reasoning, ``<glue>`` bodies as glue, the first ``<answer>`` body as content;
    - text outside every tag is held: a ``</think>`` after it makes it reasoning (a reply whose template opened
      the think block); otherwise it is the content at ``close`` if no ``<answer>`` came, else dropped;
    - a reply with neither an answer nor outside text (cut off inside ``<think>``) gets its reasoning as content
      at ``close``, as the official code returns the text it has.

    Each body is stripped as ``parse_reply`` strips it (leading whitespace dropped, trailing whitespace held
    until more text follows); whitespace inside a body is kept. A piece that might be the start of a tag is held
    back until the next feed (or ``close``) decides it.
    """

    _inside: Channel | None = None
    _held: str = ""  # raw text not yet scanned for tags
    _outside: str = ""  # text outside tags since the last tag (undecided)
    _outside_done: list[str] = field(default_factory=list)  # earlier outside text, for the fallback answer
    _pending_ws: str = ""  # trailing whitespace of the current body
    _body_started: bool = False
    _answers_seen: int = 0
    _reasoning: list[str] = field(default_factory=list)
    _content: list[str] = field(default_factory=list)
    _pieces: list[tuple[Channel, str]] = field(default_factory=list)

    def feed(self, text: str) -> list[tuple[Channel, str]]:
        self._held += text
        self._drain(final=False)
        return self._take()

    def close(self) -> list[tuple[Channel, str]]:
        self._drain(final=True)
        self._end_segment(None)
        if not self._answers_seen:
            outside = "\n".join(part for part in self._outside_done if part)
            fallback = outside or "".join(self._reasoning).strip()
            if fallback:
                self._emit("content", fallback)
        return self._take()

    @property
    def answer(self) -> str:
        """All content emitted so far: after ``close``, the reply's answer as the client sees it."""
        return "".join(self._content)

    def _take(self) -> list[tuple[Channel, str]]:
        pieces, self._pieces = self._pieces, []
        return pieces

    def _emit(self, channel: Channel, text: str) -> None:
        if channel == "content":
            self._content.append(text)
        elif channel == "reasoning":
            self._reasoning.append(text)
        if self._pieces and self._pieces[-1][0] == channel:
            self._pieces[-1] = (channel, self._pieces[-1][1] + text)
        else:
            self._pieces.append((channel, text))

    def _text(self, text: str) -> None:
        """Literal text (no tags) in the current segment."""
        if not text:
            return
        if self._inside is None:
            self._outside += text
            return
        if self._inside == "content" and self._answers_seen > 1:
            return  # a second <answer>: the official regex takes the first
        if not self._body_started:
            text = text.lstrip()
            if not text:
                return
        text = self._pending_ws + text
        body = text.rstrip()
        self._pending_ws = text[len(body):]
        if body:
            self._body_started = True
            self._emit(self._inside, body)

    def _end_segment(self, tag: str | None) -> None:
        """A tag (or the end) closes the current segment; ``tag`` decides what held outside text was."""
        if self._inside is None:
            text = self._outside.strip()
            self._outside = ""
            if tag == "</think>" and text:
                self._emit("reasoning", text)
            elif text:
                self._outside_done.append(text)
        self._pending_ws = ""
        self._body_started = False

    def _tag(self, tag: str) -> None:
        self._end_segment(tag)
        self._inside = _OPEN.get(tag)
        if tag == "<answer>":
            self._answers_seen += 1

    def _drain(self, *, final: bool) -> None:
        while self._held:
            at = self._held.find("<")
            if at < 0:
                self._text(self._held)
                self._held = ""
                return
            self._text(self._held[:at])
            self._held = self._held[at:]
            tag = next((t for t in _TAGS if self._held.startswith(t)), None)
            if tag is not None:
                self._tag(tag)
                self._held = self._held[len(tag):]
                continue
            could_be_tag = any(t.startswith(self._held) for t in _TAGS)
            if could_be_tag and not final and len(self._held) < _LONGEST:
                return  # wait for more text to decide
            self._text(self._held[0])
            self._held = self._held[1:]
