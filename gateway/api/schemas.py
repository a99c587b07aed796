"""Request bodies in OpenAI's shapes (unknown fields are ignored, as OpenAI-compatible servers do)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class MediaUrl(_Lenient):
    url: str = Field(min_length=1)


class ImageUrlPart(_Lenient):
    type: Literal["image_url"]
    image_url: MediaUrl


class VideoUrlPart(_Lenient):
    type: Literal["video_url"]
    video_url: MediaUrl


class FileRef(_Lenient):
    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None


class FilePart(_Lenient):
    type: Literal["file"]
    file: FileRef


ContentPart = Annotated[TextPart | ImageUrlPart | VideoUrlPart | FilePart, Field(discriminator="type")]


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text parts joined (media parts left out)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content if isinstance(part, TextPart))

    def has_media(self) -> bool:
        return isinstance(self.content, list) and any(not isinstance(p, TextPart) for p in self.content)


class StreamOptions(_Lenient):
    include_usage: bool = False


class VChatOptions(_Lenient):
    """The documented extension object (``"vchat": {...}``, or ``extra_body={"vchat": {...}}`` from the SDK)."""

    iterations: int | None = Field(None, ge=1, description="Perception rounds (1 = a single look).")
    max_frames: int | None = Field(None, ge=4, le=512, description="Most frames per round.")
    fps: float | None = Field(None, gt=0, le=30, description="Frames per second to sample.")
    merge: Literal["gemini_context", "gemini_final", "side_by_side", "off"] | None = Field(
        None, description="How Gemini's answer is merged (off: the local model alone).")


TokenId = Annotated[str, Field(pattern=r"^\d{1,7}$")]
Bias = Annotated[float, Field(ge=-100, le=100)]


class ChatCompletionRequest(_Lenient):
    """``POST /v1/chat/completions``. Sampling fields are passed on; ``n`` must be 1."""

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    user: str | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[TokenId, Bias] | None = None
    vchat: VChatOptions = Field(default_factory=VChatOptions)

    def sampling(self) -> dict[str, object]:
        """The OpenAI sampling fields the client set, under the names the SDK takes (every round uses them)."""
        params: dict[str, object] = {
            "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed, "stop": self.stop,
            "max_tokens": self.max_completion_tokens or self.max_tokens,
            "presence_penalty": self.presence_penalty, "frequency_penalty": self.frequency_penalty,
            "logit_bias": self.logit_bias,
        }
        return {key: value for key, value in params.items() if value is not None}
