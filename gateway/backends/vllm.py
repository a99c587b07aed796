"""The vLLM backend: health, model listing, plain chat and perception rounds, through the openai SDK over httpx2;
vLLM's refusals become the gateway's errors here, the limits it names (encoder cache, context) typed."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast, overload

import anyio
import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import Choice, ChoiceDelta

from gateway.errors import (
    BackendTimeout,
    BackendUnavailable,
    ContextExceeded,
    EncoderCacheExceeded,
    InvalidRequest,
    VChatError,
)

RETRY_AFTER_S = 5
BUSY_GRACE_S = 1.0  # how long a request waits for a fresh model list when an older copy is at hand


@dataclass(frozen=True)
class ServedModel:
    """A model vLLM serves: the base model or a LoRA adapter (``parent`` names its base)."""

    id: str
    created: int
    owned_by: str
    parent: str | None
    root: str | None
    max_model_len: int | None


@dataclass(frozen=True)
class ChatCall:
    """A plain chat call: the messages as vLLM takes them and the client's own options (sampling, tools, …)."""

    model: str
    messages: list[dict[str, object]]
    options: Mapping[str, object] = field(default_factory=dict)
    request_id: str = "req"  # one id across the gateway's and vLLM's logs (vLLM names its request after it)
    include_usage: bool | None = None  # streamed only: the client's stream_options.include_usage

    def params(self) -> dict[str, object]:
        """The openai SDK's keyword arguments."""
        usage = {} if self.include_usage is None else {"stream_options": {"include_usage": self.include_usage}}
        return {"model": self.model, "messages": self.messages, **self.options, **usage,
                "extra_headers": {"X-Request-Id": self.request_id}}


@dataclass(frozen=True)
class RoundCall:
    """One perception round: the frames as one video (a data URL), read at ``sample_fps`` at exactly their size."""

    model: str
    video_url: str
    prompt: str
    sample_fps: float
    width: int
    height: int
    max_tokens: int
    sampling: Mapping[str, object] = field(default_factory=dict)
    request_id: str = "req"
    video_id: str = ""
    video_uuid: str = ""  # names these very frames: vLLM keys its caches on it instead of hashing them

    def params(self) -> dict[str, object]:
        """The openai SDK's keyword arguments."""
        # Frames are already multiples of 28 inside the budget: pin vLLM's resize window to exactly their area.
        area = self.width * self.height
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": [
                # Video before text, under its uuid: a follow-up question about the video reuses round 1's encoded
                # frames and KV.
                {"type": "video_url", "video_url": {"url": self.video_url},
                 **({"uuid": self.video_uuid} if self.video_uuid else {})},
                {"type": "text", "text": self.prompt},
            ]}],
            "stream_options": {"include_usage": True},
            # A router in front of several vLLM replicas hashes on the video id (k8s/overlays/multi-replica), so
            # every round and follow-up about one video lands where its prefix and encoder caches are.
            "extra_headers": {"X-Request-Id": self.request_id, "x-vchat-video-id": self.video_id},
            **self.sampling,
            "max_tokens": self.max_tokens,
            "extra_body": {
                # The gateway's own kwargs, never a client's: vLLM must use exactly these frames at this rate.
                "media_io_kwargs": {"video": {"num_frames": -1, "fps": self.sample_fps}},
                "mm_processor_kwargs": {"size": {"shortest_edge": area, "longest_edge": area}},
            },
        }


@dataclass(frozen=True)
class Generated:
    """A step of a streamed round: text the model produced, its finish reason, or (at the end) the token counts."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None  # set on the usage step only
    completion_tokens: int = 0


_INFO_LABEL = re.compile(r'(\w+)="([^"]*)"')


def kv_cache_tokens(metrics_text: str, context: int) -> int | None:
    """The tokens vLLM's KV cache holds, from its Prometheus text (``vllm:cache_config_info``): GPU blocks × block
    size where it says them, else its ``kv_cache_max_concurrency`` × ``context`` (vLLM's figure is that size ÷ its
    context); None when neither is there."""
    for line in metrics_text.splitlines():
        if not line.startswith("vllm:cache_config_info{"):
            continue
        labels = dict(_INFO_LABEL.findall(line))
        blocks, size = labels.get("num_gpu_blocks", ""), labels.get("block_size", "")
        if blocks.isdigit() and size.isdigit():
            return int(blocks) * int(size)
        try:
            return int(float(labels["kv_cache_max_concurrency"]) * context)
        except (KeyError, ValueError):
            pass
    return None


class VllmBackend:
    """Talks to one vLLM OpenAI server; the HTTP client is injected and owned by the app's lifespan."""

    def __init__(self, http: httpx2.AsyncClient, base_url: str, api_key: str | None, timeout_s: float) -> None:
        self.base_url = base_url
        self._http = http
        self._timeout_s = timeout_s
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._models: tuple[float, list[ServedModel]] | None = None  # (when the listing began, the list)
        self._listing: tuple[float, asyncio.Future[list[ServedModel]]] | None = None  # the one in flight
        self.openai = openai.AsyncOpenAI(
            base_url=f"{base_url}/v1", api_key=api_key or "unused", http_client=http,
            max_retries=0, timeout=timeout_s,
        )

    async def health(self, timeout_s: float) -> None:
        """Return when vLLM's engine is up; raise ``BackendUnavailable`` saying why otherwise."""
        response = await self._get("/health", "answer /health", timeout_s)
        if response.status_code != 200:
            raise BackendUnavailable(
                f"vLLM at {self.base_url} reports itself unhealthy (HTTP {response.status_code}).",
                retry_after=RETRY_AFTER_S,
            )

    async def model_ids(self, max_age_s: float = 2.0) -> list[str]:
        """The served model ids, from a copy at most ``max_age_s`` old (routing every request must not cost a
        round trip to vLLM); callers refresh with ``max_age_s=0`` when a name is missing."""
        return [model.id for model in await self._served(max_age_s)]

    async def max_model_len(self, model: str) -> int | None:
        """The context vLLM serves ``model`` with; None when it is not listed. vLLM's card says it for base models
        only, and it is one engine's: an adapter's is its base's. A running vLLM never changes it, so a minute-old
        copy of the list will do."""
        for fresh in (60.0, 0.0):
            served = await self._served(fresh)
            if any(m.id == model for m in served):
                return next((m.max_model_len for m in served if m.max_model_len), None)
        return None

    async def kv_cache_tokens(self, context: int) -> int | None:
        """The tokens vLLM's KV cache holds (``context``: the model's, to read vLLM's sequence count by); None when
        its /metrics does not say."""
        response = await self._get("/metrics", "answer /metrics", self._timeout_s)
        return kv_cache_tokens(response.text, context) if response.status_code == 200 else None

    async def _served(self, max_age_s: float) -> list[ServedModel]:
        """The model list, from a copy or a listing begun at most ``max_age_s`` ago.

        Concurrent callers share one listing, and a copy at hand serves while vLLM is slow to answer. Each used to
        send its own GET and wait for it: under load twenty requests at once did, and some gave up after vLLM's
        timeout with a 504 "did not list models". A caller that leaves does not cancel the listing for the others.
        """
        now = time.monotonic()
        if self._models is not None and now - self._models[0] <= max_age_s:
            return self._models[1]
        if self._listing is None or self._listing[0] < now - max_age_s:
            flight = asyncio.ensure_future(self._list_from(now))
            flight.add_done_callback(_retrieve)
            self._listing = (now, flight)
        listing = self._listing[1]
        if self._models is not None and max_age_s > 0:
            # A loaded vLLM answers /v1/models late (its one API-server process also decodes every round's frames
            # and streams every reply): routing goes on with the list vLLM last gave rather than queue behind that
            # work. asyncio.wait neither cancels the shared listing nor loses this caller's cancellation.
            done, _ = await asyncio.wait({listing}, timeout=BUSY_GRACE_S)
            if not done:
                return self._models[1]
        return await asyncio.shield(listing)

    async def _list_from(self, started: float) -> list[ServedModel]:
        try:
            served = await self.list_models()
        finally:
            if self._listing is not None and self._listing[0] == started:
                self._listing = None
        if self._models is None or self._models[0] <= started:
            self._models = (started, served)
        return served

    async def list_models(self) -> list[ServedModel]:
        """Every model vLLM serves right now, base model first as vLLM lists it."""
        # A plain GET: this sits on every request's path, and the SDK's request machinery costs more than
        # vLLM's own answer (bench/models_overhead.py).
        response = await self._get("/v1/models", "list models", self._timeout_s)
        if response.status_code != 200:
            raise BackendUnavailable(f"vLLM failed to list models (HTTP {response.status_code}).",
                                     retry_after=RETRY_AFTER_S)
        try:
            cards = response.json()["data"]
            return [
                ServedModel(id=str(card["id"]), created=int(card.get("created", 0)),
                            owned_by=str(card.get("owned_by", "vllm")), parent=card.get("parent"),
                            root=card.get("root"), max_model_len=card.get("max_model_len"))
                for card in cards
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendUnavailable("vLLM answered /v1/models with something unexpected.",
                                     retry_after=RETRY_AFTER_S) from exc

    async def _get(self, path: str, what: str, timeout_s: float) -> httpx2.Response:
        try:
            return await self._http.get(f"{self.base_url}{path}", timeout=timeout_s, headers=self._auth)
        except httpx2.TimeoutException as exc:
            raise BackendTimeout(f"vLLM at {self.base_url} did not {what} in {timeout_s:g} s.",
                                 retry_after=RETRY_AFTER_S) from exc
        except httpx2.TransportError as exc:
            raise BackendUnavailable(self._unreachable(f"{what}: {type(exc).__name__}"),
                                     retry_after=RETRY_AFTER_S) from exc

    async def chat(self, call: ChatCall) -> ChatCompletion:
        """One non-streaming chat completion."""
        params = call.params()
        async with self._translate_errors("complete the chat", client_input=True, sent=params):
            return await self.openai.chat.completions.create(**params, stream=False)  # type: ignore[call-overload, no-any-return]

    async def chat_stream(self, call: ChatCall) -> AsyncGenerator[ChatCompletionChunk, None]:
        """A streaming chat completion. The call is made before this returns, so a refused or unreachable
        vLLM raises here (before any byte reaches the client); later failures raise from the iterator."""
        return await self._stream(call.params())

    async def round_stream(self, call: RoundCall) -> AsyncGenerator[Generated, None]:
        """A perception round, streamed, made before this returns as ``chat_stream`` is. A round that does not fit
        raises ``EncoderCacheExceeded`` or ``ContextExceeded`` with the limit vLLM named.

        The chunks stay vLLM's JSON objects: only their text, finish reason and usage are read. Built into the SDK's
        ``ChatCompletionChunk`` models they cost the gateway's one event loop about a third of its CPU per round (256
        tokens: 67-75 ms a round that way, 41-47 ms this way on 2 CPU cores; bench/gateway_cpu.py)."""
        chunks = await self._stream(call.params(), raw=True)

        async def generated() -> AsyncGenerator[Generated, None]:
            async with aclosing(chunks):  # closed with the round, so vLLM aborts when the round is abandoned
                async for chunk in chunks:
                    usage = chunk.get("usage")
                    if isinstance(usage, dict):
                        yield Generated(prompt_tokens=int(usage["prompt_tokens"]),
                                        completion_tokens=int(usage.get("completion_tokens") or 0))
                    for choice in chunk["choices"]:
                        yield Generated(choice["delta"].get("content") or "", choice.get("finish_reason"))

        return generated()

    @overload
    async def _stream(self, params: dict[str, object],
                      raw: Literal[False] = False) -> AsyncGenerator[ChatCompletionChunk, None]: ...

    @overload
    async def _stream(self, params: dict[str, object], raw: Literal[True]) -> AsyncGenerator[dict[str, Any], None]: ...

    async def _stream(self, params: dict[str, object], raw: bool = False) -> AsyncGenerator[Any, None]:
        """The streamed call; ``raw``: each chunk as vLLM's JSON object (checked for the fields a round reads)
        instead of the SDK's model. Both go through the SDK's client (its request options, SSE decoding, error
        events and status errors); raw is its documented ``post`` with ``cast_to=object``, the body and headers
        exactly as ``chat.completions.create`` sends them."""
        async with self._translate_errors("complete the chat", client_input=True, sent=params):
            if raw:
                body = {key: value for key, value in params.items() if key not in ("extra_headers", "extra_body")}
                headers = cast(dict[str, str], params.get("extra_headers") or {})
                extra = cast(dict[str, object], params.get("extra_body") or {})
                stream: Any = await self.openai.post(
                    "/chat/completions", body={**body, "stream": True}, cast_to=object, stream=True,
                    stream_cls=openai.AsyncStream[object], options={"headers": headers, "extra_json": extra})
            else:
                stream = await self.openai.chat.completions.create(**params, stream=True)  # type: ignore[call-overload]
        well_formed = _well_formed_raw if raw else _well_formed

        async def chunks() -> AsyncGenerator[Any, None]:
            async with self._translate_errors("stream the chat", client_input=True, sent=params):
                try:
                    async for chunk in stream:
                        if not well_formed(chunk):
                            raise ValueError("a chunk without choices and deltas")
                        yield chunk
                finally:
                    # Closing the response is what makes vLLM abort the request when our client went away. On a
                    # disconnect this task is being cancelled (level-triggered, under anyio): shield the close.
                    with anyio.CancelScope(shield=True):
                        await stream.close()

        return chunks()

    def _unreachable(self, what: str) -> str:
        # Said plainly, with the setting that holds the address: whoever reads it (a client, an operator) was
        # asking a question, not thinking of the gateway's second process, which may simply not be running.
        return (f"The local model server could not be reached: vLLM at {self.base_url} (VCHAT_VLLM_URL) refused "
                f"or dropped the connection ({what}).")

    @asynccontextmanager
    async def _translate_errors(self, what: str, *, client_input: bool = False,
                                sent: Mapping[str, object] | None = None) -> AsyncIterator[None]:
        try:
            yield
        except openai.APITimeoutError as exc:
            raise BackendTimeout(f"vLLM did not answer in time ({what}).", retry_after=RETRY_AFTER_S) from exc
        except openai.APIConnectionError as exc:
            raise BackendUnavailable(self._unreachable(what), retry_after=RETRY_AFTER_S) from exc
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise BackendUnavailable(f"vLLM failed to {what} (HTTP {exc.status_code}).",
                                         retry_after=RETRY_AFTER_S) from exc
            if client_input and exc.status_code in (400, 422):
                raise _refusal(_message_of(exc), exc.body, sent or {}) from exc
            # Any other 4xx from vLLM on a request the gateway built is the gateway's fault, not the client's.
            raise VChatError(f"vLLM refused to {what} (HTTP {exc.status_code}).") from exc
        except ValueError as exc:
            # The SDK builds chunks without validating them: a chunk that is not JSON or not a chunk lands here.
            raise BackendUnavailable(f"vLLM sent a malformed answer ({what}).", retry_after=RETRY_AFTER_S) from exc
        except openai.APIError as exc:
            # An error event inside a stream that had already started (vLLM validates multimodal input late).
            code = exc.body.get("code") if isinstance(exc.body, dict) else None
            if client_input and isinstance(code, int) and 400 <= code < 500:
                raise _refusal(exc.message, exc.body, sent or {}) from exc
            raise BackendUnavailable(f"vLLM failed to {what}: {exc.message}", retry_after=RETRY_AFTER_S) from exc


# Request fields a vLLM refusal may be about, in the order a message naming several most likely means.
_FIELDS = ("max_completion_tokens", "max_tokens", "logit_bias", "top_logprobs", "logprobs", "response_format",
           "tool_choice", "tools", "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty",
           "messages")
_CONTEXT_WORDS = ("context length", "maximum context", "too long", "max_model_len")
# How vLLM names the limit a request broke (vLLM 0.11–0.12 wording); the limit becomes the error's.
_ENCODER_CACHE = re.compile(r"encoder cache size (\d+)")
_CONTEXT = re.compile(r"maximum (?:model|context) length (?:of |is |\()?(\d+)")


def _refusal(message: str, body: object, sent: Mapping[str, object]) -> InvalidRequest:
    """vLLM's 4xx as the client's error, with a ``param`` (vLLM's own, else a field the request set that its message
    names) and a ``code`` (vLLM's numeric code says nothing a client can act on)."""
    inner = body.get("error", body) if isinstance(body, dict) else None
    param = inner.get("param") if isinstance(inner, dict) else None
    lowered = message.lower()
    if not isinstance(param, str) or not param:
        param = next((name for name in _FIELDS if name in sent and name in lowered), "messages")
    code = "context_length_exceeded" if any(w in lowered for w in _CONTEXT_WORDS) else "rejected_by_model_server"
    text = f"vLLM refused the request: {message}"
    if found := _ENCODER_CACHE.search(message):
        return EncoderCacheExceeded(text, limit=int(found[1]), param=param, code=code)
    if found := _CONTEXT.search(message):
        return ContextExceeded(text, limit=int(found[1]), param=param, code=code)
    return InvalidRequest(text, param=param, code=code)


def _retrieve(listing: asyncio.Future[list[ServedModel]]) -> None:
    """Fetch a finished listing's error, so a listing all of whose callers left is not reported as never retrieved."""
    if not listing.cancelled():
        listing.exception()


def _well_formed(chunk: ChatCompletionChunk) -> bool:
    choices: object = chunk.choices
    return isinstance(choices, list) and all(
        isinstance(choice, Choice) and isinstance(choice.delta, ChoiceDelta) for choice in choices)


def _well_formed_raw(chunk: object) -> bool:
    """A chunk as vLLM's JSON: an object whose ``choices`` are objects with an object ``delta`` (its text a string or
    null), and whose ``usage``, when there, says its prompt tokens."""
    if not isinstance(chunk, dict):
        return False
    choices, usage = chunk.get("choices"), chunk.get("usage")
    if usage is not None and not (isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int)):
        return False
    return isinstance(choices, list) and all(
        isinstance(choice, dict) and isinstance(delta := choice.get("delta"), dict)
        and isinstance(delta.get("content") or "", str) for choice in choices)


def _message_of(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return exc.message
