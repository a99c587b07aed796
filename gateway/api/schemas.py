"""Request bodies in OpenAI's shapes (unknown fields are ignored, as OpenAI-compatible servers do)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictBool, Tag, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError


class _Lenient(BaseModel):
    # NaN and Infinity are not JSON but Python's parser takes them: "not a finite number" says what is wrong with them.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


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


PART_TYPES = ("text", "image_url", "video_url", "file")


def _part_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"<{kind}>" if kind in PART_TYPES else None


def _content_tag(value: Any) -> str | None:
    return "<text>" if isinstance(value, str) else "<parts>" if isinstance(value, list) else None


# Branches are picked by a function, so an error names the branch that applies (not "should be a valid string"
# for a list of parts); the "<...>" tags pydantic puts into error locations are dropped by the error handler.
ContentPart = Annotated[
    Annotated[TextPart, Tag("<text>")] | Annotated[ImageUrlPart, Tag("<image_url>")]
    | Annotated[VideoUrlPart, Tag("<video_url>")] | Annotated[FilePart, Tag("<file>")],
    Discriminator(_part_tag, custom_error_type="unknown_part_type",
                  custom_error_message="Unknown content part type; a part's 'type' is one of "
                                       + ", ".join(f"'{t}'" for t in PART_TYPES)),
]
MessageContent = Annotated[
    Annotated[str, Tag("<text>")] | Annotated[list[ContentPart], Tag("<parts>")],
    Discriminator(_content_tag, custom_error_type="content_type",
                  custom_error_message="A message's content is a string or a list of content parts"),
]


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    # Only an assistant turn may go without content (OpenAI allows it beside tool_calls / a refusal).
    content: MessageContent | None = Field(None, validate_default=True)
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content_required(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.data.get("role", "assistant") != "assistant":
            raise PydanticCustomError("content_required", "A {role} message needs content (a string or parts)",
                                      {"role": info.data["role"]})
        return value

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
    include_usage: StrictBool = False


class VChatOptions(_Lenient):
    """The documented extension object (``"vchat": {...}``, or ``extra_body={"vchat": {...}}`` from the SDK)."""

    iterations: int | None = Field(None, ge=1, description="Perception rounds (1 = a single look).")
    max_frames: int | None = Field(None, ge=4, le=512, description="Most frames per round.")
    fps: float | None = Field(None, gt=0, le=30, description="Frames per second to sample.")
    merge: Literal["gemini_context", "gemini_final", "side_by_side", "off"] | None = Field(
        None, description="How Gemini's answer is merged (off: the local model alone).")
    zoom: Literal["official", "dense"] | None = Field(
        None, description="Glue rounds' sampling: official (1.5x denser in glued segments) or dense (past 10 min, "
        "half the frames inside them).")
    subtitles: Literal["auto", "off"] | None = Field(
        None, description="The video's subtitles or captions in each round's prompt (auto), or not (off).")


PLAIN_CHAT_ONLY = ("tools", "tool_choice", "logprobs", "top_logprobs", "response_format")
# Limits checked here rather than left to vLLM, whose messages for them are its own (and quote the whole value).
MAX_MESSAGES = 2048  # OpenAI's limit on the messages array
MAX_STOP_STRINGS = 4  # OpenAI's
MAX_STOP_CHARS = 256
MAX_LOGIT_BIAS = 300  # OpenAI's limit on the entries of logit_bias
SEED_RANGE = (-(2**63), 2**63 - 1)  # vLLM's: a torch int64
TokenId = Annotated[str, Field(pattern=r"^\d{1,7}$")]
Bias = Annotated[float, Field(ge=-100, le=100)]
StopString = Annotated[str, Field(max_length=MAX_STOP_CHARS)]
Stop = Annotated[
    Annotated[StopString, Tag("<text>")]
    | Annotated[list[StopString], Tag("<parts>"), Field(max_length=MAX_STOP_STRINGS)],
    Discriminator(_content_tag, custom_error_type="stop_type",
                  custom_error_message=f"'stop' is a string or a list of at most {MAX_STOP_STRINGS} strings"),
]


class ChatCompletionRequest(_Lenient):
    """``POST /v1/chat/completions``. Sampling fields are passed on; ``n`` must be 1."""

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    stop: Stop | None = None
    stream: StrictBool = False  # "yes" or 1 is a mistake to report, not a true to guess
    stream_options: StreamOptions | None = None
    n: int = 1
    user: str | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[TokenId, Bias] | None = Field(None, max_length=MAX_LOGIT_BIAS)
    # Passed on to vLLM for plain chat; refused on questions about a video (the perception loop has no use for them).
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    vchat: VChatOptions = Field(default_factory=VChatOptions)

    def plain_chat_only(self) -> dict[str, object]:
        """The fields only plain chat honours, as the client set them."""
        return {name: getattr(self, name) for name in PLAIN_CHAT_ONLY if getattr(self, name) is not None}

    def sampling(self) -> dict[str, object]:
        """The OpenAI sampling fields the client set, under the names the SDK takes (every round uses them)."""
        params: dict[str, object] = {
            "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed, "stop": self.stop,
            "max_tokens": self.max_completion_tokens or self.max_tokens,
            "presence_penalty": self.presence_penalty, "frequency_penalty": self.frequency_penalty,
            "logit_bias": self.logit_bias,
        }
        return {key: value for key, value in params.items() if value is not None}
