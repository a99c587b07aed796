"""A sample's conversation: parsed from the UI's "USER: …\\nASSISTANT: …" text or from messages, then prompted."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from videochat_r15.prompts import round_prompt, split_options

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")
# A turn starts at a line beginning with its speaker, as in the original web UI's datasets.
_SPEAKER = re.compile(r"^(USER|ASSISTANT|SYSTEM):[ \t]?", re.MULTILINE)
_SPEAKER_ROLE: dict[str, Role] = {"USER": "user", "ASSISTANT": "assistant", "SYSTEM": "system"}


@dataclass(frozen=True)
class Turn:
    """One message of a conversation (the video belongs to the first user turn)."""

    role: Role
    text: str


class ConversationError(ValueError):
    """Raised when a line's conversation cannot be trained on; the message says why, for the report."""


def parse_text(text: str) -> tuple[Turn, ...]:
    """Turns from "USER: question\\nASSISTANT: reply" (several pairs allowed; an optional SYSTEM: first)."""
    if not text.strip():
        raise ConversationError("'text' is empty")
    marks = list(_SPEAKER.finditer(text))
    if not marks or text[: marks[0].start()].strip():
        raise ConversationError("'text' must start with 'USER:' (turns are 'USER: …' and 'ASSISTANT: …' lines)")
    turns = []
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        body = text[mark.end(): following.start() if following else len(text)]
        turns.append(Turn(_SPEAKER_ROLE[mark[1]], body.strip()))
    return check_turns(turns)


def parse_messages(messages: object) -> tuple[Turn, ...]:
    """Turns from [{"role": "user", "content": "…"}, …]; content may also be a list of text parts."""
    if not isinstance(messages, list) or not messages:
        raise ConversationError("'messages' must be a non-empty list")
    turns = []
    for number, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            raise ConversationError(f"message {number} is not an object")
        role = message.get("role")
        if role not in ROLES:
            raise ConversationError(f"message {number} has unknown role {role!r} (expected one of {', '.join(ROLES)})")
        turns.append(Turn(role, _content_text(message.get("content"), number).strip()))
    return check_turns(turns)


def _content_text(content: object, number: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(str(p["text"]) for p in content)
    raise ConversationError(f"message {number}'s content must be a string or a list of text parts "
                            "(the video comes from 'video_path')")


def check_turns(turns: Sequence[Turn]) -> tuple[Turn, ...]:
    """The turns, if they make a trainable conversation: system first (optional), then user/assistant pairs."""
    body = list(turns[1:] if turns and turns[0].role == "system" else turns)
    if any(turn.role == "system" for turn in body):
        raise ConversationError("a system turn may only come first")
    if not any(turn.role == "assistant" for turn in body):
        raise ConversationError("no assistant turn: there is nothing to learn")
    for number, turn in enumerate(body, 1):
        expected = "user" if number % 2 else "assistant"
        if turn.role != expected:
            raise ConversationError(f"turn {number} is from the {turn.role}, expected the {expected} "
                                    "(turns alternate, starting with the user)")
        if not turn.text:
            raise ConversationError(f"turn {number} ({turn.role}) is empty")
    if body[-1].role != "assistant":
        raise ConversationError("the last user turn has no assistant reply")
    return tuple(turns)


def gateway_prompt(text: str) -> str:
    """The user text of the gateway's final round for this question, exactly as the gateway builds it."""
    # gateway.api.video_chat.loop_request: single-line text is whitespace-normalised, then options split off.
    question, options = split_options(" ".join(text.split()) if "\n" not in text else text.strip())
    return round_prompt(question.strip(), options, glue=False)


def prompted(turns: Sequence[Turn], prompt_format: Literal["r15", "raw"]) -> tuple[Turn, ...]:
    """The turns as the model sees them: with r15, every user turn wrapped in the gateway's final-round prompt."""
    if prompt_format == "raw":
        return tuple(turns)
    return tuple(Turn(t.role, gateway_prompt(t.text)) if t.role == "user" else t for t in turns)
