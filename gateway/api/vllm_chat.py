"""Plain chat (no video) answered by the local model: vLLM's own answer, relayed under the gateway's envelope."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from gateway.api.background import text_only
from gateway.api.respond import Answer
from gateway.api.schemas import ChatCompletionRequest
from gateway.api.services import Services
from gateway.api.wire import Chunk, Completion, Envelope
from gateway.backends.vllm import ChatCall
from gateway.logs import request_id_var


async def answer_with_vllm(services: Services, body: ChatCompletionRequest, model: str,
                           warnings: list[str]) -> Answer | Completion:
    """vLLM's completion (``body.stream`` false) or its chunks, as the gateway's answer to ``body``: named for the
    model the client asked for (``videochat-r1.5+gemini`` answers plain chat with its local ``model``), with
    ``warnings`` on the completion or on the first chunk."""
    vllm = services.require_vllm()
    call = ChatCall(model, text_only(body.messages), {**body.sampling(), **body.plain_chat_only()},
                    request_id=request_id_var.get() or "req",
                    include_usage=body.stream_options.include_usage if body.stream and body.stream_options else None)
    envelope = Envelope(body.model)
    extras = {"warnings": warnings} if warnings else {}
    if not body.stream:
        completion = Completion.model_validate((await vllm.chat(call)).model_dump(exclude_unset=True))
        return envelope.relabel(completion).model_copy(update=extras)

    async def relayed() -> AsyncGenerator[Chunk, None]:
        first = extras
        # Closed with the answer, so vLLM aborts at once when the client leaves.
        async with aclosing(await vllm.chat_stream(call)) as chunks:
            async for chunk in chunks:
                yield envelope.relabel(Chunk.model_validate(chunk.model_dump(exclude_unset=True))).model_copy(
                    update=first)
                first = {}  # warnings on the first chunk only

    return Answer(envelope, relayed())
