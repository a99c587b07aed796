"""``POST /v1/chat/completions``: questions about videos (perception, Gemini) and plain chat (vLLM or Gemini)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import cast

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.background import recognise, text_only
from gateway.api.deps import SettingsDep, vllm_backend
from gateway.api.disconnect import ClientWatch
from gateway.api.gemini_chat import answer_with_gemini
from gateway.api.respond import Answer, completion_response, respond
from gateway.api.routing import route_model
from gateway.api.schemas import ChatCompletionRequest
from gateway.api.video_chat import answer_about_video
from gateway.api.video_refs import find_video
from gateway.api.wire import Chunk, Completion, Envelope
from gateway.errors import InvalidRequest, UrlNotAllowed
from gateway.logs import request_id_var
from gateway.metrics import Metrics

router = APIRouter(tags=["chat"])
logger = logging.getLogger(__name__)


def _check(body: ChatCompletionRequest) -> None:
    if body.n != 1:
        raise InvalidRequest("Only n=1 is supported.", param="n", code="unsupported_value")


# A video answer calls no tool, which these choices allow: tools offered this way are left unused, not refused.
# Open WebUI (0.12) offers its built-in tools (time, memory, notes…) with every message, video questions included.
_TOOLS_OPTIONAL = (None, "auto", "none")


def _check_video_question(body: ChatCompletionRequest) -> None:
    for name in body.plain_chat_only():
        if name in ("tools", "tool_choice") and body.tool_choice in _TOOLS_OPTIONAL:
            continue
        raise InvalidRequest(f"'{name}' is not supported on questions about a video (only on plain chat).",
                             param=name, code="unsupported_parameter")


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request, settings: SettingsDep) -> Response:
    """A question about a video (any form of video reference) runs the perception loop; otherwise plain chat
    is passed to vLLM, or to Gemini for the Gemini-only model (and for a merged model whose vLLM is down).

    A client that leaves before its response starts stops the work at once (499), wherever it waits: the model
    list, the video's fetch, admission, vLLM. Once the response has started, the response watches the client."""
    _check(body)
    async with ClientWatch(request):
        return await _answer(body, request, settings)


async def _answer(body: ChatCompletionRequest, request: Request, settings: SettingsDep) -> Response:
    # A chat UI's own title / tags / follow-up prompt quotes the conversation, link included: it is plain chat.
    background = recognise(body.messages)
    ref = find_video(body.messages) if background is None else None
    if background is not None:
        cast(Metrics, request.app.state.metrics).background_prompts.labels(background.client, background.task).inc()
        logger.info("background prompt (%s %s) answered as plain chat", background.client, background.task)
    if ref is not None:
        _check_video_question(body)
    route = await route_model(request, body.model, body.vchat.merge)
    warnings: list[str] = []
    if ref is not None:
        try:
            return await answer_about_video(body, ref, route, request)
        except UrlNotAllowed as exc:
            if not ref.from_text:
                raise
            # A link the gateway may not fetch, quoted in prose, is part of the text, not a video to refuse.
            warnings.append(f"The link in the message was not fetched ({exc.message}); it was answered as text.")
    if route.local is None:
        return await answer_with_gemini(body, route, request)
    # Looked up here rather than as a dependency, so a bad body is reported before a missing backend.
    vllm = vllm_backend(request)
    model = route.local
    params: dict[str, object] = {
        "model": model,
        "messages": text_only(body.messages),
        **body.sampling(),
        **body.plain_chat_only(),
        # One id across the gateway's and vLLM's logs, as for the perception rounds.
        "extra_headers": {"X-Request-Id": request_id_var.get() or "req"},
    }
    # The envelope names the model the client asked for (``videochat-r1.5+gemini`` answers plain chat with its local
    # model) and carries the warnings.
    envelope = Envelope(body.model)
    extras = {"warnings": warnings} if warnings else {}
    if not body.stream:
        completion = Completion.model_validate((await vllm.chat(params)).model_dump(exclude_unset=True))
        return completion_response(envelope.relabel(completion).model_copy(update=extras))
    if body.stream_options is not None:
        params["stream_options"] = {"include_usage": body.stream_options.include_usage}

    async def relayed() -> AsyncGenerator[Chunk, None]:
        first = extras
        # Closed with the answer, so vLLM aborts at once when the client leaves.
        async with aclosing(await vllm.chat_stream(params)) as chunks:
            async for chunk in chunks:
                yield envelope.relabel(Chunk.model_validate(chunk.model_dump(exclude_unset=True))).model_copy(
                    update=first)
                first = {}  # warnings on the first chunk only

    return await respond(Answer(envelope, relayed()), stream=True, keepalive_s=settings.sse_keepalive_s)
