"""Plain chat (no video) answered by Gemini: the Gemini-only model, and a merged model whose vLLM is down."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal, cast

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from gateway.api.routing import ModelRoute
from gateway.api.schemas import ChatCompletionRequest, ChatMessage
from gateway.api.streaming import sse, sse_response
from gateway.backends.gemini import Conversation, GeminiAnswer, GeminiBackend, GeminiDelta, GeminiDone
from gateway.errors import BackendUnavailable, InvalidRequest, VChatError
from gateway.settings import Settings

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


def _extras(answer: GeminiAnswer | None, warnings: list[str]) -> dict[str, Any]:
    gemini = None if answer is None else {
        "model_version": answer.model_version,
        "usage": {"prompt_tokens": answer.usage.prompt_tokens, "completion_tokens": answer.usage.candidates_tokens}}
    return {"gemini": gemini, "warnings": warnings}


def _usage(answer: GeminiAnswer) -> dict[str, int]:
    prompt, completion = answer.usage.prompt_tokens, answer.usage.candidates_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def answer_with_gemini(body: ChatCompletionRequest, route: ModelRoute, request: Request) -> Response:
    """Gemini's reply as a ``chat.completion`` or its stream; ``route.local_down`` becomes a warning."""
    gemini = cast(GeminiBackend | None, request.state.gemini)
    if gemini is None:  # routing only sends Gemini-answered names here when a key is configured
        raise BackendUnavailable("Gemini is not configured on this gateway.", retry_after=30)
    settings = cast(Settings, request.app.state.settings)
    chat = conversation(body.messages)
    warnings = [f"The local model is unavailable ({route.local_down}); Gemini answered alone."] \
        if route.local_down else []
    max_tokens = body.max_completion_tokens or body.max_tokens
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": body.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

    if not body.stream:
        answer = await gemini.chat(chat, temperature=body.temperature, max_output_tokens=max_tokens,
                                   deadline_s=settings.gemini_deadline_s)
        return JSONResponse({
            "id": ident, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text.strip()},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": _usage(answer), **_extras(answer, warnings)})
    events = await gemini.chat_stream(chat, temperature=body.temperature, max_output_tokens=max_tokens,
                                      deadline_s=settings.gemini_deadline_s)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield sse(chunk({"role": "assistant", "content": ""}))
            async for event in events:
                if isinstance(event, GeminiDelta):
                    yield sse(chunk({"content": event.text}))
                elif isinstance(event, GeminiDone):
                    yield sse(chunk({}, "stop", **_extras(event.answer, warnings)))
                    if include_usage:
                        yield sse({"id": ident, "object": "chat.completion.chunk", "created": created,
                                    "model": body.model, "choices": [], "usage": _usage(event.answer)})
        except VChatError as exc:
            logger.warning("gemini chat failed mid-stream: %s", exc.message)
            yield sse(exc.body())
        finally:
            await events.aclose()
        yield sse("[DONE]")

    return sse_response(stream(), cleanup=events.aclose)

