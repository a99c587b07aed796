"""``POST /v1/chat/completions``: questions about videos (perception, Gemini) and plain chat (vLLM or Gemini)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.background import recognise
from gateway.api.deps import ServicesDep
from gateway.api.disconnect import ClientWatch
from gateway.api.gemini_chat import answer_with_gemini
from gateway.api.respond import Answer, respond
from gateway.api.routing import route_model
from gateway.api.schemas import ChatCompletionRequest
from gateway.api.services import Services
from gateway.api.video_chat import answer_about_video
from gateway.api.video_refs import find_video
from gateway.api.vllm_chat import answer_with_vllm
from gateway.api.wire import Completion
from gateway.errors import InvalidRequest, UrlNotAllowed

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
async def chat_completions(body: ChatCompletionRequest, request: Request, services: ServicesDep) -> Response:
    """A question about a video (any form of video reference) runs the perception loop; otherwise plain chat
    is passed to vLLM, or to Gemini for the Gemini-only model (and for a merged model whose vLLM is down).

    A client that leaves before its response starts stops the work at once (499), wherever it waits: the model
    list, the video's fetch, admission, vLLM. Once the response has started, the response watches the client."""
    _check(body)
    async with ClientWatch(request):
        answer = await answer_chat(services, body)
        return await respond(answer, stream=body.stream, keepalive_s=services.settings.sse_keepalive_s)


async def answer_chat(services: Services, body: ChatCompletionRequest) -> Answer | Completion:
    """The answer to a chat request, whichever model and path it takes."""
    # A chat UI's own title / tags / follow-up prompt quotes the conversation, link included: it is plain chat.
    background = recognise(body.messages)
    ref = find_video(body.messages) if background is None else None
    if background is not None:
        services.metrics.background_prompts.labels(background.client, background.task).inc()
        logger.info("background prompt (%s %s) answered as plain chat", background.client, background.task)
    if ref is not None:
        _check_video_question(body)
    route = await route_model(services, body.model, body.vchat.merge)
    warnings: list[str] = []
    if ref is not None:
        try:
            return await answer_about_video(services, body, ref, route)
        except UrlNotAllowed as exc:
            if not ref.from_text:
                raise
            # A link the gateway may not fetch, quoted in prose, is part of the text, not a video to refuse.
            warnings.append(f"The link in the message was not fetched ({exc.message}); it was answered as text.")
    if route.local is None:
        return await answer_with_gemini(services, body, route)
    return await answer_with_vllm(services, body, route.local, warnings)
