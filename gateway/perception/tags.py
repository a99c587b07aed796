"""Splits a streamed R1.5 reply into reasoning (``<think>``), answer (``<answer>``) and glue, token by token."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Channel = Literal["reasoning", "content", "glue"]
_OPEN: dict[str, Channel] = {"<think>": "reasoning", "<answer>": "content", "<glue>": "glue"}
_CLOSE = ("</think>", "</answer>", "</glue>")
_LONGEST = max(len(tag) for tag in (*_OPEN, *_CLOSE))


@dataclass
class TagSplitter:
    """Feed text pieces as they arrive; get (channel, text) pieces back with the tags removed.

    Inside ``<think>`` text is reasoning, inside ``<answer>`` content, inside ``<glue>`` glue. Text outside
    every tag is content (a model that ignores the tags still answers); whitespace between tags is dropped.
    A piece that might be the start of a tag is held back until the next feed (or ``close``) decides it.
    """

    _inside: Channel | None = None
    _held: str = ""
    _pieces: list[tuple[Channel, str]] = field(default_factory=list)

    def feed(self, text: str) -> list[tuple[Channel, str]]:
        self._held += text
        self._drain(final=False)
        return self._take()

    def close(self) -> list[tuple[Channel, str]]:
        self._drain(final=True)
        return self._take()

    def _take(self) -> list[tuple[Channel, str]]:
        pieces, self._pieces = self._pieces, []
        return pieces

    def _emit(self, text: str) -> None:
        if not text:
            return
        channel: Channel = self._inside or "content"
        if self._inside is None and not text.strip():
            return
        if self._pieces and self._pieces[-1][0] == channel:
            self._pieces[-1] = (channel, self._pieces[-1][1] + text)
        else:
            self._pieces.append((channel, text))

    def _drain(self, *, final: bool) -> None:
        while self._held:
            at = self._held.find("<")
            if at < 0:
                self._emit(self._held)
                self._held = ""
                return
            self._emit(self._held[:at])
            self._held = self._held[at:]
            tag = next((t for t in (*_OPEN, *_CLOSE) if self._held.startswith(t)), None)
            if tag is not None:
                self._inside = _OPEN.get(tag)
                self._held = self._held[len(tag):]
                continue
            could_be_tag = any(t.startswith(self._held) for t in (*_OPEN, *_CLOSE))
            if could_be_tag and not final and len(self._held) < _LONGEST:
                return  # wait for more text to decide
            self._emit(self._held[0])
            self._held = self._held[1:]
