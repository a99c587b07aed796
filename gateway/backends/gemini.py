"""The Gemini backend: one question about one video to Google Gemini, through google-genai's async client.

The video goes the cheapest way that works: the original YouTube URL as ``file_data.file_uri`` (nothing uploaded),
inline bytes when the sanitized mp4 keeps the request under Gemini's 20 MB limit, otherwise a Files API upload that
is waited on until ``ACTIVE`` and reused (per asset, in memory) while the file lives. Calls are retried for
408/429/5xx honouring ``Retry-After``, bounded by the caller's deadline, and SDK / transport errors are translated
here into the gateway's errors — with the API key scrubbed from every text that leaves this module:

    APIError 408, 504, a deadline, an httpx timeout  → BackendTimeout (504)
    APIError 429, 5xx, transport errors, unreadable  → BackendUnavailable (503, Retry-After from Gemini or 5 s)
    APIError 401, 403, 404, a rejected API key       → BackendUnavailable (503): Gemini is unusable as configured
    APIError 400 and other 4xx, a FAILED video, an
    answer without text (blocked, MAX_TOKENS…)       → GeminiRefused (502 gemini_refused): this request, not Gemini
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import ClassVar, Literal, TypeVar

import httpx2
import tenacity
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import SecretStr
from tenacity.stop import stop_base

from gateway.errors import BackendRefused, BackendTimeout, BackendUnavailable, VChatError
from gateway.media.library import Asset, LinkedVideo

logger = logging.getLogger(__name__)

T = TypeVar("T")
VideoVia = Literal["youtube", "inline", "file"]
MediaResolution = Literal["low", "medium", "high"]

RETRY_AFTER_S = 5
REQUEST_LIMIT_BYTES = 20 * 2**20  # Gemini's limit for one request, inline data (base64) included
FILE_LIFETIME = timedelta(hours=48)  # how long Gemini keeps an uploaded file
_REQUEST_OVERHEAD = 64 * 1024  # JSON around the inline video and the prompt
_EXPIRY_MARGIN = timedelta(minutes=15)  # a cached file this close to expiry is uploaded again
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
_POLL_FIRST_S, _POLL_MAX_S = 0.2, 5.0
_RESOLUTIONS = {"low": types.MediaResolution.MEDIA_RESOLUTION_LOW,
                "medium": types.MediaResolution.MEDIA_RESOLUTION_MEDIUM,
                "high": types.MediaResolution.MEDIA_RESOLUTION_HIGH}
# Loggers that write URLs or response headers (an upload URL Gemini hands out may repeat the key).
_TRANSPORT_LOGGERS = ("httpx2", "httpcore2.connection", "httpcore2.http11", "httpcore2.http2", "httpcore2.proxy",
                      "httpcore2.socks")
_KEY_SHAPES = re.compile(r"AIza[0-9A-Za-z_\-]{35}|(?<=key=)[^&\s\"'<>]+")


class GeminiRefused(BackendRefused):
    """Raised when Gemini refuses one request the gateway built (a 400, a video it cannot process, no answer)."""

    default_code: ClassVar[str | None] = "gemini_refused"


@dataclass(frozen=True)
class GeminiConfig:
    """What the backend needs from the settings (built by the app from ``Settings``; never reads the environment)."""

    api_key: SecretStr
    model: str = "gemini-flash-latest"
    base_url: str | None = None  # None: Google's endpoint
    timeout_s: float = 120.0  # one call: generate, file status, health
    inline_max_bytes: int = 15_000_000  # larger sanitized videos are uploaded through the Files API
    upload_ready_timeout_s: float = 300.0  # upload plus processing until ACTIVE
    video_fps: float | None = None  # frames per second Gemini samples (its default: 1)
    media_resolution: MediaResolution | None = None
    max_retries: int = 3
    retry_initial_s: float = 1.0  # first backoff when Gemini gives no Retry-After
    retry_max_s: float = 30.0


@dataclass(frozen=True)
class GeminiUsage:
    """Tokens Gemini counted for one answer."""

    prompt_tokens: int = 0
    candidates_tokens: int = 0


@dataclass(frozen=True)
class GeminiAnswer:
    """Gemini's whole answer, the model version it reports, and how the video reached it."""

    text: str
    model_version: str | None
    usage: GeminiUsage
    video_via: VideoVia | None  # None: a conversation without a video


@dataclass(frozen=True)
class Conversation:
    """A text-only chat for Gemini: the system instruction and the turns, ``user`` and ``model`` alternating."""

    system: str | None
    turns: tuple[tuple[Literal["user", "model"], str], ...]


@dataclass(frozen=True)
class GeminiDelta:
    """A piece of a streamed answer."""

    text: str


@dataclass(frozen=True)
class GeminiDone:
    """The last item of a stream: the whole answer (text, model version, usage)."""

    answer: GeminiAnswer


GeminiEvent = GeminiDelta | GeminiDone
# A stream whose request was sent, and its first piece (None: Gemini closed it without one).
_Opened = tuple[AsyncIterator[types.GenerateContentResponse], types.GenerateContentResponse | None]


@dataclass(frozen=True)
class _RemoteFile:
    name: str
    uri: str
    mime_type: str
    expires: datetime

    def usable(self) -> bool:
        return datetime.now(UTC) + _EXPIRY_MARGIN < self.expires


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._at - time.monotonic()

    def budget(self, cap: float | None = None) -> float:
        """Seconds the next call may take; TimeoutError once the deadline has passed."""
        left = self.remaining()
        if left <= 0:
            raise TimeoutError
        return left if cap is None else min(left, cap)


class _StopAtDeadline(stop_base):
    def __init__(self, deadline: _Deadline) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return retry_state.upcoming_sleep >= self.deadline.remaining()


class KeyScrubber(logging.Filter):
    """Rewrites log records that carry the key (httpx2 logs every URL, and an upload URL may repeat the key)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _scrub(message, self.key)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


@contextlib.contextmanager
def scrubbed_transport_logs(key: str) -> Iterator[None]:
    """While the app runs, the key is scrubbed from the records of httpx2 (it logs every URL) and httpcore2 (it logs
    response headers at DEBUG). Those loggers are process-wide, so the lifespan that owns the key adds the filters
    and takes them off again: a client factory leaves logging alone, and apps built one after another (tests,
    benchmarks) do not pile filters up."""
    scrubber = KeyScrubber(key)
    loggers = [logging.getLogger(name) for name in _TRANSPORT_LOGGERS]
    for log in loggers:
        log.addFilter(scrubber)
    try:
        yield
    finally:
        for log in loggers:
            log.removeFilter(scrubber)


def make_client(config: GeminiConfig, http: httpx2.AsyncClient) -> genai.Client:
    """The SDK client the app's lifespan creates, on the lifespan's own httpx2 client (which pins the SDK to httpx2;
    the lifespan closes ``http``, and ``client.close()`` the SDK's unused sync client).

    The API version is pinned to v1beta, where Google documents the Files API and ``videoMetadata``. Keeping the key
    out of transport logs is ``scrubbed_transport_logs``'s job, entered by the same lifespan.
    """
    options = types.HttpOptions(base_url=config.base_url, api_version="v1beta", httpx_async_client=http,
                                timeout=math.ceil(config.timeout_s * 1000))
    return genai.Client(api_key=config.api_key.get_secret_value(), http_options=options)


class GeminiBackend:
    """Asks Gemini about videos; the ``genai.Client`` is injected and owned by the app's lifespan."""

    def __init__(self, client: genai.Client, config: GeminiConfig) -> None:
        self.config = config
        self._client = client
        self._key = config.api_key.get_secret_value()
        self._files: dict[str, _RemoteFile] = {}  # asset id → its uploaded copy
        self._flights: dict[str, asyncio.Task[_RemoteFile]] = {}  # asset id → the upload in progress

    @property
    def model(self) -> str:
        return self.config.model

    # --- the questions --------------------------------------------------------------------------------------------

    async def describe(self, asset: Asset | LinkedVideo, prompt: str, *, temperature: float | None = None,
                       max_output_tokens: int | None = None, deadline_s: float) -> GeminiAnswer:
        """Gemini's answer to ``prompt`` about ``asset``, within ``deadline_s`` seconds (upload included)."""
        deadline, started = _Deadline(deadline_s), time.monotonic()

        async def ask(part: types.Part) -> types.GenerateContentResponse:
            return await self._generate(_contents(part, prompt), self._generation(temperature, max_output_tokens),
                                        deadline)

        with self._translated(deadline):
            async with asyncio.timeout(deadline_s):
                response, via = await self._with_video(asset, prompt, deadline, ask)
            return self._answered([response], via, started)

    async def describe_stream(self, asset: Asset | LinkedVideo, prompt: str, *, temperature: float | None = None,
                              max_output_tokens: int | None = None,
                              deadline_s: float) -> AsyncGenerator[GeminiEvent, None]:
        """Gemini's answer as ``GeminiDelta`` pieces, then one ``GeminiDone``. The stream is opened (video sent,
        first piece received) before this returns, so a refusing or unreachable Gemini raises here; later failures
        raise from the iterator. Each wait for a piece is bounded by ``timeout_s`` and by the deadline."""
        deadline, started = _Deadline(deadline_s), time.monotonic()

        async def open_stream(part: types.Part) -> _Opened:
            return await self._opened(_contents(part, prompt), self._generation(temperature, max_output_tokens),
                                      deadline)

        with self._translated(deadline):
            async with asyncio.timeout(deadline_s):
                (stream, first), via = await self._with_video(asset, prompt, deadline, open_stream)
        return self._events(stream, first, via, deadline, started)

    async def chat(self, conversation: Conversation, *, temperature: float | None = None,
                   max_output_tokens: int | None = None, deadline_s: float) -> GeminiAnswer:
        """Gemini's reply to a conversation without a video (the Gemini-only model asked plain questions)."""
        deadline, started = _Deadline(deadline_s), time.monotonic()
        with self._translated(deadline):
            async with asyncio.timeout(deadline_s):
                response = await self._generate(*self._chat_request(conversation, temperature, max_output_tokens),
                                                deadline)
            return self._answered([response], None, started)

    async def chat_stream(self, conversation: Conversation, *, temperature: float | None = None,
                          max_output_tokens: int | None = None,
                          deadline_s: float) -> AsyncGenerator[GeminiEvent, None]:
        """``chat`` streamed, opened before this returns as ``describe_stream`` is."""
        deadline, started = _Deadline(deadline_s), time.monotonic()
        with self._translated(deadline):
            async with asyncio.timeout(deadline_s):
                stream, first = await self._opened(*self._chat_request(conversation, temperature, max_output_tokens),
                                                   deadline)
        return self._events(stream, first, None, deadline, started)

    async def health(self, timeout_s: float | None = None) -> None:
        """Return when Gemini knows the configured model; raise ``BackendUnavailable`` saying why otherwise."""
        deadline = _Deadline(timeout_s or self.config.timeout_s)
        with self._translated(deadline):
            async with asyncio.timeout(deadline.budget()):
                await self._client.aio.models.get(model=self.config.model)

    async def aclose(self) -> None:
        """Cancel uploads still in flight (the SDK client itself belongs to the lifespan)."""
        flights = list(self._flights.values())
        for flight in flights:
            flight.cancel()
        await asyncio.gather(*flights, return_exceptions=True)

    # --- the video ------------------------------------------------------------------------------------------------

    async def _with_video(self, video: Asset | LinkedVideo, prompt: str, deadline: _Deadline,
                          call: Callable[[types.Part], Awaitable[T]]) -> tuple[T, VideoVia]:
        """``call`` with the video part. A YouTube source goes by its URL (nothing uploaded, and for a
        ``LinkedVideo`` nothing downloaded either); when Gemini will not fetch it (private, age-gated,
        region-locked…), the video itself goes instead. A video sent as an uploaded file that Gemini lost is
        uploaded once more."""
        meta = types.VideoMetadata(fps=self.config.video_fps) if self.config.video_fps else None
        url = video.page_url if isinstance(video, LinkedVideo) else video.page_url if video.is_youtube else None
        if url:
            try:
                return await call(types.Part(file_data=types.FileData(file_uri=url), video_metadata=meta)), "youtube"
            except genai_errors.ClientError as exc:
                if _key_rejected(exc) or exc.code not in (400, 403, 404):
                    raise
                logger.info("gemini could not fetch the YouTube video; sending the video itself",
                            extra={"video": video.id[:12], "gemini_status": exc.code})
        asset = video if isinstance(video, Asset) else await video.fetch()
        part, via = await self._video_part(asset, prompt, meta, deadline)
        try:
            return await call(part), via
        except genai_errors.ClientError as exc:
            if via != "file" or _key_rejected(exc) or exc.code not in (403, 404):
                raise
            logger.info("gemini lost the uploaded video; uploading it again",
                        extra={"video": asset.id[:12], "gemini_status": exc.code})
            self._files.pop(asset.id, None)
        part, via = await self._video_part(asset, prompt, meta, deadline)
        return await call(part), via

    async def _video_part(self, asset: Asset, prompt: str, meta: types.VideoMetadata | None,
                          deadline: _Deadline) -> tuple[types.Part, VideoVia]:
        size = (await asyncio.to_thread(asset.video.stat)).st_size
        encoded = 4 * math.ceil(size / 3) + len(prompt.encode()) + _REQUEST_OVERHEAD
        if size <= self.config.inline_max_bytes and encoded <= REQUEST_LIMIT_BYTES:
            data = await asyncio.to_thread(asset.video.read_bytes)
            return types.Part(inline_data=types.Blob(data=data, mime_type="video/mp4"), video_metadata=meta), "inline"
        remote = await self._remote_file(asset, deadline)
        return types.Part(file_data=types.FileData(file_uri=remote.uri, mime_type=remote.mime_type),
                          video_metadata=meta), "file"

    async def _remote_file(self, asset: Asset, deadline: _Deadline) -> _RemoteFile:
        """The asset's uploaded copy: cached, joined while another question uploads it, or uploaded now."""
        cached = self._files.get(asset.id)
        if cached is not None and cached.usable():
            return cached
        flight = self._flights.get(asset.id)
        if flight is None:
            flight = asyncio.create_task(self._upload(asset), name=f"gemini-upload-{asset.id[:12]}")
            self._flights[asset.id] = flight
            flight.add_done_callback(lambda done: self._landed(asset.id, done))
        async with asyncio.timeout(deadline.budget()):
            # Shielded: a question that gives up does not cancel the upload the others (and later ones) wait for.
            return await asyncio.shield(flight)

    def _landed(self, asset_id: str, flight: asyncio.Task[_RemoteFile]) -> None:
        if self._flights.get(asset_id) is flight:
            del self._flights[asset_id]
        if not flight.cancelled() and flight.exception() is not None:
            logger.info("gemini upload failed", extra={"video": asset_id[:12],
                                                       "gemini_error": self._scrub(_summary(flight.exception()))})

    async def _upload(self, asset: Asset) -> _RemoteFile:
        deadline, started = _Deadline(self.config.upload_ready_timeout_s), time.monotonic()
        upload_config = types.UploadFileConfig(mime_type="video/mp4", display_name=f"vchat-{asset.id[:16]}")
        try:
            found = await self._retrying(
                lambda: self._client.aio.files.upload(file=asset.video, config=upload_config), deadline, cap=None)
            name, pause = found.name or "", _POLL_FIRST_S
            while found.state == types.FileState.PROCESSING:
                await asyncio.sleep(min(pause, deadline.budget()))
                pause = min(pause * 1.5, _POLL_MAX_S)
                found = await self._retrying(lambda: self._client.aio.files.get(name=name), deadline,
                                             cap=self.config.timeout_s)
        except TimeoutError:
            raise BackendTimeout(f"Gemini did not finish processing the video within "
                                 f"{self.config.upload_ready_timeout_s:g} s.", retry_after=RETRY_AFTER_S) from None
        if found.state != types.FileState.ACTIVE or not found.uri:
            reason = found.error.message if found.error and found.error.message else f"state {found.state}"
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.aio.files.delete(name=name), self.config.timeout_s)
            raise GeminiRefused(f"Gemini could not process the video ({self._scrub(reason)}).",
                                code="gemini_video_failed")
        remote = _RemoteFile(name, found.uri, found.mime_type or "video/mp4",
                             found.expiration_time or datetime.now(UTC) + FILE_LIFETIME)
        self._files = {key: kept for key, kept in self._files.items() if kept.usable()} | {asset.id: remote}
        logger.info("video uploaded to gemini", extra={"video": asset.id[:12], "gemini_file": name,
                                                       "elapsed_s": round(time.monotonic() - started, 3)})
        return remote

    # --- calls ----------------------------------------------------------------------------------------------------

    def _generation(self, temperature: float | None, max_output_tokens: int | None,
                    system: str | None = None) -> types.GenerateContentConfig:
        resolution = _RESOLUTIONS[self.config.media_resolution] if self.config.media_resolution else None
        return types.GenerateContentConfig(
            temperature=temperature, max_output_tokens=max_output_tokens, media_resolution=resolution,
            system_instruction=system,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))

    def _chat_request(self, conversation: Conversation, temperature: float | None,
                      max_output_tokens: int | None) -> tuple[list[types.Content], types.GenerateContentConfig]:
        contents = [types.Content(role=role, parts=[types.Part(text=text)]) for role, text in conversation.turns]
        return contents, self._generation(temperature, max_output_tokens, conversation.system)

    async def _generate(self, contents: list[types.Content], config: types.GenerateContentConfig,
                        deadline: _Deadline) -> types.GenerateContentResponse:
        return await self._retrying(lambda: self._client.aio.models.generate_content(
            model=self.config.model, contents=contents, config=config), deadline, cap=self.config.timeout_s)

    async def _opened(self, contents: list[types.Content], config: types.GenerateContentConfig,
                      deadline: _Deadline) -> _Opened:
        return await self._retrying(lambda: self._open_stream(contents, config), deadline, cap=self.config.timeout_s)

    async def _open_stream(self, contents: list[types.Content], config: types.GenerateContentConfig) -> _Opened:
        stream = await self._client.aio.models.generate_content_stream(
            model=self.config.model, contents=contents, config=config)
        try:
            # google-genai sends the request on the first read: errors before the first byte surface here.
            return stream, await anext(stream, None)
        except BaseException:
            await _close(stream)
            raise

    async def _events(self, stream: AsyncIterator[types.GenerateContentResponse],
                      first: types.GenerateContentResponse | None, via: VideoVia | None, deadline: _Deadline,
                      started: float) -> AsyncGenerator[GeminiEvent, None]:
        chunks: list[types.GenerateContentResponse] = []
        chunk = first
        try:
            while chunk is not None:
                chunks.append(chunk)
                if text := _text_of(chunk):
                    yield GeminiDelta(text)
                with self._translated(deadline):
                    async with asyncio.timeout(deadline.budget(self.config.timeout_s)):
                        chunk = await anext(stream, None)
            yield GeminiDone(self._answered(chunks, via, started))
        finally:
            await _close(stream)

    async def _retrying(self, call: Callable[[], Awaitable[T]], deadline: _Deadline, *, cap: float | None) -> T:
        """``call`` under a per-attempt timeout, retried for 408/429/5xx and transport errors while the deadline
        allows, waiting what Gemini's ``Retry-After`` asks or an exponential backoff with jitter."""

        async def attempt() -> T:
            async with asyncio.timeout(deadline.budget(cap)):
                return await call()

        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_retryable),
            stop=tenacity.stop_any(tenacity.stop_after_attempt(self.config.max_retries + 1), _StopAtDeadline(deadline)),
            wait=self._wait, before_sleep=self._log_retry, reraise=True)
        return await retrying(attempt)

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hinted = _retry_after_s(exc) if isinstance(exc, genai_errors.APIError) else None
        if hinted is not None:
            return hinted
        backoff = min(self.config.retry_max_s, self.config.retry_initial_s * 2.0 ** (retry_state.attempt_number - 1))
        return backoff * random.uniform(0.5, 1.0)

    def _log_retry(self, retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        logger.info("gemini call failed; retrying", extra={
            "gemini_error": self._scrub(_summary(exc)), "attempt": retry_state.attempt_number,
            "retry_in_s": round(retry_state.upcoming_sleep, 3)})

    # --- answers and errors ---------------------------------------------------------------------------------------

    def _answered(self, chunks: list[types.GenerateContentResponse], via: VideoVia | None,
                  started: float) -> GeminiAnswer:
        """The one response-processing path of both ``describe`` and ``describe_stream``."""
        text = "".join(_text_of(chunk) for chunk in chunks)
        version = next((chunk.model_version for chunk in reversed(chunks) if chunk.model_version), None)
        meta = next((chunk.usage_metadata for chunk in reversed(chunks) if chunk.usage_metadata), None)
        usage = GeminiUsage(meta.prompt_token_count or 0, meta.candidates_token_count or 0) if meta else GeminiUsage()
        logger.info("gemini answered", extra={
            "gemini_model": self.config.model, "gemini_model_version": version, "video_via": via,
            "prompt_tokens": usage.prompt_tokens, "candidates_tokens": usage.candidates_tokens,
            "elapsed_s": round(time.monotonic() - started, 3)})
        if not text.strip():
            raise GeminiRefused(f"Gemini returned no answer ({_why_empty(chunks)}).", code="gemini_empty_answer")
        return GeminiAnswer(text, version, usage, via)

    @contextlib.contextmanager
    def _translated(self, deadline: _Deadline) -> Iterator[None]:
        """SDK, transport and timeout errors → the gateway's errors, with the API key scrubbed from every text."""
        try:
            yield
        except VChatError:
            raise
        except TimeoutError:
            raise BackendTimeout(f"Gemini did not answer within {deadline.seconds:g} s.",
                                 retry_after=RETRY_AFTER_S) from None
        except genai_errors.APIError as exc:
            raise self._from_api_error(exc) from None
        except httpx2.TimeoutException as exc:
            raise BackendTimeout(f"Gemini did not answer in time ({type(exc).__name__}).",
                                 retry_after=RETRY_AFTER_S) from None
        except httpx2.TransportError as exc:
            raise BackendUnavailable(f"Gemini is unreachable ({type(exc).__name__}).",
                                     retry_after=RETRY_AFTER_S) from None
        except (ValueError, KeyError) as exc:  # the SDK's unreadable answers (JSON, validation, upload protocol)
            raise BackendUnavailable(f"Gemini answered with something the gateway cannot read "
                                     f"({type(exc).__name__}).", retry_after=RETRY_AFTER_S) from None

    def _from_api_error(self, exc: genai_errors.APIError) -> VChatError:
        what = f"HTTP {exc.code}" + (f" {exc.status}" if exc.status else "")
        said = self._scrub(str(exc.message or ""))[:300]
        hinted = _retry_after_s(exc)
        retry_after = math.ceil(hinted) if hinted is not None else RETRY_AFTER_S
        if exc.code in (408, 504):
            return BackendTimeout(f"Gemini timed out ({what}): {said}", retry_after=retry_after)
        if exc.code == 429:
            return BackendUnavailable(f"Gemini is rate-limiting the gateway ({what}): {said}", retry_after=retry_after,
                                      code="gemini_rate_limited")
        if exc.code >= 500:
            return BackendUnavailable(f"Gemini is unavailable ({what}): {said}", retry_after=retry_after)
        if exc.code in (401, 403) or _key_rejected(exc):
            return BackendUnavailable(f"Gemini refused the gateway's credentials ({what}): {said}",
                                      retry_after=RETRY_AFTER_S, code="gemini_auth_failed")
        if exc.code == 404:
            return BackendUnavailable(f"Gemini does not serve model '{self.config.model}' ({what}): {said}",
                                      retry_after=RETRY_AFTER_S, code="gemini_model_not_found")
        return GeminiRefused(f"Gemini refused the request ({what}): {said}")

    def _scrub(self, text: str) -> str:
        return _scrub(text, self._key)


def _scrub(text: str, key: str) -> str:
    """``text`` without the key, nor anything shaped like a Google API key or a ``key=`` parameter."""
    if key:
        text = text.replace(key, "[redacted]")
    return _KEY_SHAPES.sub("[redacted]", text)


def _contents(video: types.Part, prompt: str) -> list[types.Content]:
    # The video before the question, as Google recommends for a single video.
    return [types.Content(role="user", parts=[video, types.Part(text=prompt)])]


def _text_of(chunk: types.GenerateContentResponse) -> str:
    if not chunk.candidates or chunk.candidates[0].content is None:
        return ""
    return "".join(part.text for part in chunk.candidates[0].content.parts or [] if part.text and not part.thought)


def _why_empty(chunks: list[types.GenerateContentResponse]) -> str:
    for chunk in reversed(chunks):
        if chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason is not None:
            return f"prompt blocked: {chunk.prompt_feedback.block_reason.value}"
        if chunk.candidates and chunk.candidates[0].finish_reason is not None:
            return f"finish reason {chunk.candidates[0].finish_reason.value}"
    return "no text"


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, genai_errors.APIError):
        return exc.code in _RETRYABLE
    return isinstance(exc, TimeoutError | httpx2.TransportError)


def _key_rejected(exc: genai_errors.APIError) -> bool:
    return "API_KEY_INVALID" in str(exc.details) or "API key not valid" in str(exc.message or "")


def _retry_after_s(exc: genai_errors.APIError) -> float | None:
    """Seconds Gemini asks to wait: the Retry-After header, else a google.rpc.RetryInfo ``retryDelay``."""
    headers = getattr(exc.response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    error = exc.details.get("error", exc.details) if isinstance(exc.details, dict) else {}
    for detail in (error.get("details") or []) if isinstance(error, dict) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            with contextlib.suppress(ValueError):
                return max(0.0, float(delay[:-1]))
    return None


def _summary(exc: BaseException | None) -> str:
    if isinstance(exc, VChatError):
        return exc.message
    if isinstance(exc, genai_errors.APIError):
        return f"HTTP {exc.code} {exc.status or ''}: {exc.message or ''}".strip()
    return type(exc).__name__ if exc is not None else "unknown"


async def _close(stream: AsyncIterator[types.GenerateContentResponse]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
