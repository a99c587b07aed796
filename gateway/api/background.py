"""Recognises the prompts chat UIs send on their own after a reply (titles, tags, follow-ups): not video questions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.api.schemas import ChatMessage, TextPart

# Fingerprints of the default task prompts, read from each client's source (short, stable phrases of each
# template, whitespace- and case-insensitive; the versions seen are named where wording changed):
#   Open WebUI   open_webui/config.py  DEFAULT_*_GENERATION_PROMPT_TEMPLATE (0.5 … 0.12): one user message,
#                "### Task:" and the conversation inside <chat_history> … </chat_history>;
#   LibreChat    api/app/clients/prompts/titlePrompts.js and @librechat/agents src/utils/title.ts;
#   Dify         api/core/llm_generator/prompts.py (conversation title, suggested questions).
_CHAT_HISTORY = r"<chat_history>.*</chat_history>"
_SIGNATURES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("open-webui", "title", (r"### task:", r"generate a concise\b.{0,60}\btitle\b.{0,80}\bchat history",
                             _CHAT_HISTORY)),
    ("open-webui", "tags", (r"### task:", r"generate 1-3 broad tags categorizing the main themes", _CHAT_HISTORY)),
    ("open-webui", "follow_ups", (r"### task:", r"\"follow_ups\"", _CHAT_HISTORY)),
    ("open-webui", "queries", (r"### task:", r"generating search queries", r"\"queries\"", _CHAT_HISTORY)),
    ("open-webui", "autocomplete", (r"### task:", r"you are an autocompletion system", r"<text>")),
    ("open-webui", "image_prompt", (r"### task:", r"prompt for an? image generation task", _CHAT_HISTORY)),
    ("open-webui", "emoji", (r"reflect the speaker's likely facial expression through a fitting emoji",)),
    ("librechat", "title", (r"provide a concise, 5-word-or-less title for the conversation",
                            r"only return the title itself")),
    ("librechat", "title", (r"analyze this conversation and provide:", r"concise title in the detected language")),
    ("librechat", "title", (r"write a concise title for this conversation in the given language",
                            r"title in 5 words or less")),
    ("librechat", "title", (r"<tool_name>submit_title</tool_name>",)),
    ("librechat", "language", (r"^detect the language used in the following text\.?$",)),
    ("dify", "title", (r"generate a concise chat title by decomposing the user.s input", r"\"your output\"")),
    ("dify", "title", (r"decompose the user.s input into \"subject\" and \"intention\"",)),
    ("dify", "suggested_questions", (r"predict the three most likely questions that human would ask",)),
)
_COMPILED = tuple((client, task, tuple(re.compile(p, re.IGNORECASE | re.DOTALL) for p in patterns))
                  for client, task, patterns in _SIGNATURES)


@dataclass(frozen=True)
class BackgroundPrompt:
    """A client's own request (``task``: title, tags, follow_ups, …), answered as plain chat."""

    client: str
    task: str


def _normalised(message: ChatMessage) -> str:
    return " ".join(message.text().split())


def recognise(messages: list[ChatMessage]) -> BackgroundPrompt | None:
    """The background prompt these messages are, judged by the last user message and the system messages
    (where the clients put their task instructions); None for anything else (a real question)."""
    user = next((m for m in reversed(messages) if m.role == "user"), None)
    texts = [_normalised(m) for m in messages if m.role in ("system", "developer")]
    texts += [_normalised(user)] if user is not None else []
    for client, task, patterns in _COMPILED:
        if any(all(p.search(text) for p in patterns) for text in texts):
            return BackgroundPrompt(client, task)
    return None


def text_only(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The messages for vLLM as plain chat: media parts dropped, so no frames reach the model."""
    out = []
    for message in messages:
        dumped = message.model_dump(exclude_none=True)
        if isinstance(message.content, list):
            dumped["content"] = [p.model_dump(exclude_none=True) for p in message.content if isinstance(p, TextPart)]
        out.append(dumped)
    return out
