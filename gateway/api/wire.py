"""OpenAI's chat completion on the wire — the completion, its chunks, usage and the gateway's ``perception``
extension — and the ``Envelope`` (id, created, model) that makes every answer's chunks and folds them into the
non-streamed completion, so the two shapes of an answer cannot drift apart.

Every answer goes through here: plain chat relayed from vLLM (its own fields, tool calls and logprobs included,
pass through: the models allow extra fields), plain chat from Gemini, the video answer and the merged answers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_serializer
from pydantic_core.core_schema import SerializerFunctionWrapHandler


def _absent(value: object) -> bool:
    return value is None


def _optional() -> Any:
    """A field left off the wire while unset (OpenAI's own optional fields and the gateway's extensions)."""
    return Field(default=None, exclude_if=_absent)


class WireModel(BaseModel):
    """Extra fields are kept: a vLLM chunk relayed through these models loses nothing of its own."""

    model_config = ConfigDict(extra="allow")


class TokenCount(WireModel):
    """Tokens of one model call (a round, Gemini's answer)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class Usage(TokenCount):
    """OpenAI's ``usage``."""

    total_tokens: int = 0

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   total_tokens=prompt_tokens + completion_tokens)


class Delta(WireModel):
    role: Literal["assistant"] | None = _optional()
    content: str | None = _optional()
    reasoning_content: str | None = _optional()


class ChunkChoice(WireModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class Message(WireModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = ""
    reasoning_content: str | None = None


class Choice(WireModel):
    index: int = 0
    message: Message
    finish_reason: str | None = "stop"
    logprobs: Any = None


class GeminiReport(WireModel):
    """What Gemini said about its part of an answer (``video_via`` and ``role`` only where a video was asked)."""

    model_version: str | None
    video_via: str | None = _optional()
    role: str | None = _optional()
    usage: TokenCount


_OUTCOME = ("answer", "segments", "finish_reason", "usage", "seconds", "first_token_seconds")


class RoundRecord(WireModel):
    """One perception round: what was sent, then (once it finished) what came back."""

    round: int
    frames: int
    frame_times: list[float]
    sample_fps: float
    segment_fps: float | None = None
    frame_size: list[int]
    visual_tokens: int
    dense_segments: list[list[float]]
    frames_seconds: float
    finished: bool = Field(default=False, exclude=True)
    answer: str | None = None
    segments: list[list[float]] = []
    finish_reason: str | None = None
    usage: TokenCount | None = None
    seconds: float | None = None
    first_token_seconds: float | None = None  # from the call to vLLM to its first token (its prefill, queueing)

    @model_serializer(mode="wrap")
    def _outcome_once_finished(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        # A round the local model failed in (Gemini then answered alone) says only what was sent.
        return data if self.finished else {k: v for k, v in data.items() if k not in _OUTCOME}


class Perception(WireModel):
    """The gateway's ``perception`` extension of a video answer."""

    video: dict[str, Any]
    video_seconds: float | None
    rounds: list[RoundRecord]
    segments: list[list[float]]
    sources: list[str]
    merge: str | None
    gemini: GeminiReport | None
    model: str
    warnings: list[str]
    transcript: dict[str, Any] | None = None


class _Extensions(WireModel):
    usage: Usage | None = _optional()
    perception: Perception | None = _optional()
    gemini: GeminiReport | None = _optional()
    warnings: list[str] | None = _optional()


class Chunk(_Extensions):
    """``chat.completion.chunk``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]


class Completion(_Extensions):
    """``chat.completion``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]


_Made = TypeVar("_Made", Chunk, Completion)


def _new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class Envelope:
    """One answer's identity; every chunk and the completion carry it (``model``: the name the client asked for)."""

    model: str
    id: str = field(default_factory=_new_id)
    created: int = field(default_factory=_now)

    def chunk(self, delta: Delta | None = None, finish_reason: str | None = None, **extensions: Any) -> Chunk:
        return Chunk(id=self.id, created=self.created, model=self.model,
                     choices=[ChunkChoice(delta=delta or Delta(), finish_reason=finish_reason)], **extensions)

    def start(self) -> Chunk:
        return self.chunk(Delta(role="assistant", content=""))

    def content(self, text: str) -> Chunk:
        return self.chunk(Delta(content=text))

    def reasoning(self, text: str) -> Chunk:
        return self.chunk(Delta(reasoning_content=text))

    def usage(self, usage: Usage) -> Chunk:
        """The chunk OpenAI sends last when ``stream_options.include_usage`` asked for it."""
        return Chunk(id=self.id, created=self.created, model=self.model, choices=[], usage=usage)

    def relabel(self, made: _Made) -> _Made:
        """A chunk or completion another server made (vLLM's), as part of this answer."""
        return made.model_copy(update={"id": self.id, "created": self.created, "model": self.model})

    def completion(self, chunks: Iterable[Chunk]) -> Completion:
        """The non-streamed answer equal to a stream of ``chunks``: deltas joined, the last finish reason, and the
        usage and extensions the stream carried."""
        content: list[str] = []
        reasoning: list[str] = []
        finish: str | None = None
        extensions: dict[str, Any] = {}
        for chunk in chunks:
            for choice in chunk.choices:
                content.append(choice.delta.content or "")
                reasoning.append(choice.delta.reasoning_content or "")
                finish = choice.finish_reason or finish
            extensions.update({name: getattr(chunk, name) for name in _Extensions.model_fields
                               if getattr(chunk, name) is not None})
        message = Message(content="".join(content).strip(), reasoning_content="".join(reasoning).strip() or None)
        return Completion(id=self.id, created=self.created, model=self.model,
                          choices=[Choice(message=message, finish_reason=finish or "stop")], **extensions)
