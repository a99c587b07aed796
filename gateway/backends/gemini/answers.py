"""What the Gemini backend hands back (answers, stream events, usage), and what it reads out of Gemini's chunks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from google.genai import types

VideoVia = Literal["youtube", "inline", "file"]


@dataclass(frozen=True)
class GeminiUsage:
    """Tokens Gemini counted for one answer."""

    prompt_tokens: int = 0
    candidates_tokens: int = 0


@dataclass(frozen=True)
class GeminiAnswer:
    """Gemini's whole answer, the model version it reports, and how the video reached it."""

    text: str
    model_version: str | None
    usage: GeminiUsage
    video_via: VideoVia | None  # None: a conversation without a video


@dataclass(frozen=True)
class Conversation:
    """A text-only chat for Gemini: the system instruction and the turns, ``user`` and ``model`` alternating."""

    system: str | None
    turns: tuple[tuple[Literal["user", "model"], str], ...]


@dataclass(frozen=True)
class GeminiDelta:
    """A piece of a streamed answer."""

    text: str


@dataclass(frozen=True)
class GeminiDone:
    """The last item of a stream: the whole answer (text, model version, usage)."""

    answer: GeminiAnswer


GeminiEvent = GeminiDelta | GeminiDone


def text_of(chunk: types.GenerateContentResponse) -> str:
    """The answer's text in one chunk, thoughts left out."""
    if not chunk.candidates or chunk.candidates[0].content is None:
        return ""
    return "".join(part.text for part in chunk.candidates[0].content.parts or [] if part.text and not part.thought)


def why_empty(chunks: list[types.GenerateContentResponse]) -> str:
    """Why chunks carried no text: a blocked prompt, the last finish reason, or just none."""
    for chunk in reversed(chunks):
        if chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason is not None:
            return f"prompt blocked: {chunk.prompt_feedback.block_reason.value}"
        if chunk.candidates and chunk.candidates[0].finish_reason is not None:
            return f"finish reason {chunk.candidates[0].finish_reason.value}"
    return "no text"
