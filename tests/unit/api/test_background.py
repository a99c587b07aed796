"""background.recognise: chat UIs' own prompts (title, tags, follow-ups…) are told apart from real questions."""

from __future__ import annotations

import pytest

from gateway.api.background import BackgroundPrompt, recognise, text_only
from gateway.api.schemas import ChatMessage
from tests.support.background_prompts import BACKGROUND, LINK, webui


def msg(role: str, content: object) -> ChatMessage:
    return ChatMessage.model_validate({"role": role, "content": content})


@pytest.mark.parametrize(("text", "expected"), BACKGROUND)
def test_default_task_prompts_are_recognised(text: str, expected: tuple[str, str]) -> None:
    assert recognise([msg("user", text)]) == BackgroundPrompt(*expected)


def test_librechat_legacy_title_lives_in_the_system_message() -> None:
    messages = [msg("system", "Write a concise title for this conversation in the given language. Title in 5 Words "
                              f"or Less. No Punctuation or Quotation.\nUser: what happens in {LINK}?"),
                msg("user", "Language: English")]
    assert recognise(messages) == BackgroundPrompt("librechat", "title")


@pytest.mark.parametrize("text", [
    f"what happens in {LINK}?",
    f"Generate a concise title for the video {LINK}",  # a person asking, not the client's template
    f"Suggest 3-5 follow-up questions about {LINK}",
    "### Task: describe the clip",
    f"Please help me summarise {LINK}",
])
def test_real_questions_are_not_background_prompts(text: str) -> None:
    assert recognise([msg("user", text)]) is None


def test_only_the_last_user_message_counts() -> None:
    """A conversation that earlier quoted a template is still a question when the user's last message is one."""
    messages = [msg("user", webui("Generate 1-3 broad tags categorizing the main themes", '{ "tags": [] }')),
                msg("assistant", "ok"), msg("user", f"what happens in {LINK}?")]
    assert recognise(messages) is None


def test_plain_chat_messages_carry_no_media() -> None:
    messages = [msg("user", [{"type": "video_url", "video_url": {"url": LINK}},
                             {"type": "text", "text": webui("Generate a concise title summarizing the chat history",
                                                            '{ "title": "" }')}])]
    assert text_only(messages)[0]["content"] == [{"type": "text", "text": messages[0].text()}]
