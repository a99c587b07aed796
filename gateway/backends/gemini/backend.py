"""``GeminiBackend``: the questions (about a video, or plain chat, whole or streamed), how the video is sent
(its YouTube URL, inline bytes, or an uploaded file), and the one path every answer is read through."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TypeVar

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from gateway.backends.gemini.answers import (
    Conversation,
    GeminiAnswer,
    GeminiDelta,
    GeminiDone,
    GeminiEvent,
    GeminiUsage,
    VideoVia,
    text_of,
    why_empty,
)
from gateway.backends.gemini.config import GeminiConfig
from gateway.backends.gemini.deadline import Deadline
from gateway.backends.gemini.errors import GeminiRefused, key_rejected, translated
from gateway.backends.gemini.retries import retrying
from gateway.backends.gemini.uploads import Uploads
from gateway.media.library import Asset, LinkedVideo

logger = logging.getLogger("gateway.backends.gemini")  # the package's one logger, named as before its split

T = TypeVar("T")

REQUEST_LIMIT_BYTES = 20 * 2**20  # Gemini's limit for one request, inline data (base64) included
_REQUEST_OVERHEAD = 64 * 1024  # JSON around the inline video and the prompt
_RESOLUTIONS = {"low": types.MediaResolution.MEDIA_RESOLUTION_LOW,
                "medium": types.MediaResolution.MEDIA_RESOLUTION_MEDIUM,
                "high": types.MediaResolution.MEDIA_RESOLUTION_HIGH}
# A stream whose request was sent, and its first piece (None: Gemini closed it without one).
_Opened = tuple[AsyncIterator[types.GenerateContentResponse], types.GenerateContentResponse | None]


class GeminiBackend:
    """Asks Gemini about videos; the ``genai.Client`` is injected and owned by the app's lifespan."""

    def __init__(self, client: genai.Client, config: GeminiConfig) -> None:
        self.config = config
        self._client = client
        self._uploads = Uploads(client, config)

    @property
    def model(self) -> str:
        return self.config.model

    # --- the questions --------------------------------------------------------------------------------------------

    async def describe(self, asset: Asset | LinkedVideo, prompt: str, *, temperature: float | None = None,
                       max_output_tokens: int | None = None, deadline_s: float) -> GeminiAnswer:
        """Gemini's answer to ``prompt`` about ``asset``, within ``deadline_s`` seconds (upload included)."""
        deadline, started = Deadline(deadline_s), time.monotonic()

        async def ask(part: types.Part) -> types.GenerateContentResponse:
            return await self._generate(_contents(part, prompt), self._generation(temperature, max_output_tokens),
                                        deadline)

        with translated(deadline, self.config):
            async with asyncio.timeout(deadline_s):
                response, via = await self._with_video(asset, prompt, deadline, ask)
            return self._answered([response], via, started)

    async def describe_stream(self, asset: Asset | LinkedVideo, prompt: str, *, temperature: float | None = None,
                              max_output_tokens: int | None = None,
                              deadline_s: float) -> AsyncGenerator[GeminiEvent, None]:
        """Gemini's answer as ``GeminiDelta`` pieces, then one ``GeminiDone``. The stream is opened (video sent,
        first piece received) before this returns, so a refusing or unreachable Gemini raises here; later failures
        raise from the iterator. Each wait for a piece is bounded by ``timeout_s`` and by the deadline."""
        deadline, started = Deadline(deadline_s), time.monotonic()

        async def open_stream(part: types.Part) -> _Opened:
            return await self._opened(_contents(part, prompt), self._generation(temperature, max_output_tokens),
                                      deadline)

        with translated(deadline, self.config):
            async with asyncio.timeout(deadline_s):
                (stream, first), via = await self._with_video(asset, prompt, deadline, open_stream)
        return self._events(stream, first, via, deadline, started)

    async def chat(self, conversation: Conversation, *, temperature: float | None = None,
                   max_output_tokens: int | None = None, deadline_s: float) -> GeminiAnswer:
        """Gemini's reply to a conversation without a video (the Gemini-only model asked plain questions)."""
        deadline, started = Deadline(deadline_s), time.monotonic()
        with translated(deadline, self.config):
            async with asyncio.timeout(deadline_s):
                response = await self._generate(*self._chat_request(conversation, temperature, max_output_tokens),
                                                deadline)
            return self._answered([response], None, started)

    async def chat_stream(self, conversation: Conversation, *, temperature: float | None = None,
                          max_output_tokens: int | None = None,
                          deadline_s: float) -> AsyncGenerator[GeminiEvent, None]:
        """``chat`` streamed, opened before this returns as ``describe_stream`` is."""
        deadline, started = Deadline(deadline_s), time.monotonic()
        with translated(deadline, self.config):
            async with asyncio.timeout(deadline_s):
                stream, first = await self._opened(*self._chat_request(conversation, temperature, max_output_tokens),
                                                   deadline)
        return self._events(stream, first, None, deadline, started)

    async def health(self, timeout_s: float | None = None) -> None:
        """Return when Gemini knows the configured model; raise ``BackendUnavailable`` saying why otherwise."""
        deadline = Deadline(timeout_s or self.config.timeout_s)
        with translated(deadline, self.config):
            async with asyncio.timeout(deadline.budget()):
                await self._client.aio.models.get(model=self.config.model)

    async def aclose(self) -> None:
        """Cancel uploads still in flight (the SDK client itself belongs to the lifespan)."""
        await self._uploads.aclose()

    # --- the video ------------------------------------------------------------------------------------------------

    async def _with_video(self, video: Asset | LinkedVideo, prompt: str, deadline: Deadline,
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
                if key_rejected(exc) or exc.code not in (400, 403, 404):
                    raise
                logger.info("gemini could not fetch the YouTube video; sending the video itself",
                            extra={"video": video.id[:12], "gemini_status": exc.code})
        asset = video if isinstance(video, Asset) else await video.fetch()
        part, via = await self._video_part(asset, prompt, meta, deadline)
        try:
            return await call(part), via
        except genai_errors.ClientError as exc:
            if via != "file" or key_rejected(exc) or exc.code not in (403, 404):
                raise
            logger.info("gemini lost the uploaded video; uploading it again",
                        extra={"video": asset.id[:12], "gemini_status": exc.code})
            self._uploads.forget(asset.id)
        part, via = await self._video_part(asset, prompt, meta, deadline)
        return await call(part), via

    async def _video_part(self, asset: Asset, prompt: str, meta: types.VideoMetadata | None,
                          deadline: Deadline) -> tuple[types.Part, VideoVia]:
        size = (await asyncio.to_thread(asset.video.stat)).st_size
        encoded = 4 * math.ceil(size / 3) + len(prompt.encode()) + _REQUEST_OVERHEAD
        if size <= self.config.inline_max_bytes and encoded <= REQUEST_LIMIT_BYTES:
            data = await asyncio.to_thread(asset.video.read_bytes)
            return types.Part(inline_data=types.Blob(data=data, mime_type="video/mp4"), video_metadata=meta), "inline"
        remote = await self._uploads.remote_file(asset, deadline)
        return types.Part(file_data=types.FileData(file_uri=remote.uri, mime_type=remote.mime_type),
                          video_metadata=meta), "file"

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
                        deadline: Deadline) -> types.GenerateContentResponse:
        return await retrying(lambda: self._client.aio.models.generate_content(
            model=self.config.model, contents=contents, config=config), deadline, self.config,
            cap=self.config.timeout_s)

    async def _opened(self, contents: list[types.Content], config: types.GenerateContentConfig,
                      deadline: Deadline) -> _Opened:
        return await retrying(lambda: self._open_stream(contents, config), deadline, self.config,
                              cap=self.config.timeout_s)

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
                      first: types.GenerateContentResponse | None, via: VideoVia | None, deadline: Deadline,
                      started: float) -> AsyncGenerator[GeminiEvent, None]:
        chunks: list[types.GenerateContentResponse] = []
        chunk = first
        try:
            while chunk is not None:
                chunks.append(chunk)
                if text := text_of(chunk):
                    yield GeminiDelta(text)
                with translated(deadline, self.config):
                    async with asyncio.timeout(deadline.budget(self.config.timeout_s)):
                        chunk = await anext(stream, None)
            yield GeminiDone(self._answered(chunks, via, started))
        finally:
            await _close(stream)

    # --- answers ---------------------------------------------------------------------------------------------

    def _answered(self, chunks: list[types.GenerateContentResponse], via: VideoVia | None,
                  started: float) -> GeminiAnswer:
        """The one response-processing path of both ``describe`` and ``describe_stream``."""
        text = "".join(text_of(chunk) for chunk in chunks)
        version = next((chunk.model_version for chunk in reversed(chunks) if chunk.model_version), None)
        meta = next((chunk.usage_metadata for chunk in reversed(chunks) if chunk.usage_metadata), None)
        usage = GeminiUsage(meta.prompt_token_count or 0, meta.candidates_token_count or 0) if meta else GeminiUsage()
        logger.info("gemini answered", extra={
            "gemini_model": self.config.model, "gemini_model_version": version, "video_via": via,
            "prompt_tokens": usage.prompt_tokens, "candidates_tokens": usage.candidates_tokens,
            "elapsed_s": round(time.monotonic() - started, 3)})
        if not text.strip():
            raise GeminiRefused(f"Gemini returned no answer ({why_empty(chunks)}).", code="gemini_empty_answer")
        return GeminiAnswer(text, version, usage, via)


def _contents(video: types.Part, prompt: str) -> list[types.Content]:
    # The video before the question, as Google recommends for a single video.
    return [types.Content(role="user", parts=[video, types.Part(text=prompt)])]


async def _close(stream: AsyncIterator[types.GenerateContentResponse]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
