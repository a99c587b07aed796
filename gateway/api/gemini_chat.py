"""Plain chat (no video) answered by Gemini: the Gemini-only model, and a merged model whose vLLM is down."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Literal

from gateway.api.respond import Answer
from gateway.api.routing import ModelRoute
from gateway.api.schemas import ChatCompletionRequest, ChatMessage
from gateway.api.services import Services
from gateway.api.wire import Chunk, Envelope, GeminiReport, TokenCount, Usage
from gateway.backends.gemini import Conversation, GeminiAnswer, GeminiDelta, GeminiDone
from gateway.errors import BackendUnavailable, InvalidRequest

logger = logging.getLogger(__name__)


def conversation(messages: list[ChatMessage]) -> Conversation:
    """OpenAI messages → Gemini's shape: system and developer text becomes the system instruction, assistant turns
    are ``model`` turns, consecutive turns of one role are joined; the last turn must be the user's."""
    system: list[str] = []
    turns: list[tuple[Literal["user", "model"], str]] = []
    for index, message in enumerate(messages):
        text = message.text().strip()
        if message.role in ("system", "developer"):
            system += [text] if text else []
            continue
        if message.role == "tool":
            raise InvalidRequest("Tool messages are not supported by Gemini on this gateway.",
                                 param=f"messages.{index}.role", code="unsupported_value")
        if not text:
            continue
        role: Literal["user", "model"] = "user" if message.role == "user" else "model"
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]}\n\n{text}")
        else:
            turns.append((role, text))
    if not turns or turns[-1][0] != "user":
        raise InvalidRequest("The conversation must end with a user message that has text.", param="messages",
                             code="invalid_value")
    return Conversation("\n\n".join(system) or None, tuple(turns))


def _report(answer: GeminiAnswer) -> GeminiReport:
    return GeminiReport(model_version=answer.model_version,
                        usage=TokenCount(prompt_tokens=answer.usage.prompt_tokens,
                                         completion_tokens=answer.usage.candidates_tokens))


def _ending(envelope: Envelope, answer: GeminiAnswer, warnings: list[str], include_usage: bool) -> list[Chunk]:
    """The finish chunk (Gemini's report and the warnings), then usage when asked for."""
    finish = envelope.chunk(None, "stop", gemini=_report(answer), warnings=warnings)
    usage = Usage.of(answer.usage.prompt_tokens, answer.usage.candidates_tokens)
    return [finish, envelope.usage(usage)] if include_usage else [finish]


async def answer_with_gemini(services: Services, body: ChatCompletionRequest, route: ModelRoute) -> Answer:
    """Gemini's reply as chunks (one call, or Gemini's stream when ``body.stream``); ``route.local_down`` becomes a
    warning."""
    gemini, settings = services.gemini, services.settings
    if gemini is None:  # routing only sends Gemini-answered names here when a key is configured
        raise BackendUnavailable("Gemini is not configured on this gateway.", retry_after=30)
    chat = conversation(body.messages)
    warnings = [f"The local model is unavailable ({route.local_down}); Gemini answered alone."] \
        if route.local_down else []
    max_tokens = body.max_completion_tokens or body.max_tokens
    envelope = Envelope(body.model)
    include_usage = not body.stream or bool(body.stream_options and body.stream_options.include_usage)

    async def chunks() -> AsyncGenerator[Chunk, None]:
        if not body.stream:
            answer = await gemini.chat(chat, temperature=body.temperature, max_output_tokens=max_tokens,
                                       deadline_s=settings.gemini_deadline_s)
            for chunk in (envelope.start(), envelope.content(answer.text),
                          *_ending(envelope, answer, warnings, include_usage)):
                yield chunk
            return
        events = await gemini.chat_stream(chat, temperature=body.temperature, max_output_tokens=max_tokens,
                                          deadline_s=settings.gemini_deadline_s)
        async with aclosing(events):
            yield envelope.start()
            async for event in events:
                if isinstance(event, GeminiDelta):
                    yield envelope.content(event.text)
                elif isinstance(event, GeminiDone):
                    for chunk in _ending(envelope, event.answer, warnings, include_usage):
                        yield chunk

    return Answer(envelope, chunks())
