"""gateway.backends.gemini with the real google-genai SDK against the local fake Gemini (tests/support/fake_gemini)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from google import genai
from google.genai import types
from pydantic import SecretStr

from gateway.backends.gemini import (
    GeminiAnswer,
    GeminiBackend,
    GeminiConfig,
    GeminiDelta,
    GeminiDone,
    GeminiEvent,
    GeminiRefused,
    make_client,
    scrubbed_transport_logs,
)
from gateway.errors import BackendTimeout, BackendUnavailable
from gateway.media.library import Asset, LinkedVideo, VideoFacts
from gateway.media.probe import Probe
from tests.support.clips import make_clip
from tests.support.fake_gemini import DEFAULT_ANSWER as ANSWER
from tests.support.fake_gemini import FAKE_API_KEY, FakeGemini, fake_gemini_fixture  # noqa: F401

YOUTUBE = "https://www.youtube.com/watch?v=jNQXAC9IVRw"
PROMPT = "What happens in this video?"


def asset_for(path: Path, *, youtube: str | None = None) -> Asset:
    """An Asset around a file, as VideoLibrary would build it (facts filled by hand for a 2 s 160x120 clip)."""
    size = path.stat().st_size
    probe = Probe(duration_s=2.0, fps=10.0, width=160, height=120, rotation=0, vcodec="h264", pix_fmt="yuv420p",
                  frame_count=20, has_audio=True, acodec="aac", format_name="mov,mp4,m4a,3gp,3g2,mj2", bytes=size,
                  video_index=0)
    facts = VideoFacts(duration_s=2.0, fps=10.0, width=160, height=120, codec="h264", has_audio=True,
                       audio_codec="aac", bytes=size, source="page" if youtube else "url",
                       source_host="www.youtube.com" if youtube else "example.com")
    return Asset(hashlib.sha256(path.read_bytes()).hexdigest(), path, probe, facts, page_url=youtube,
                 is_youtube=youtube is not None)


@pytest.fixture
def clip() -> Asset:
    return asset_for(make_clip(2.0, "160x120", 10))


@asynccontextmanager
async def backend_for(fake: FakeGemini, **overrides: Any) -> AsyncIterator[GeminiBackend]:
    """The backend as the app's lifespan builds it: make_client on an httpx2 client, closed afterwards."""
    values: dict[str, Any] = {"api_key": SecretStr(fake.api_key), "base_url": fake.url, "retry_initial_s": 0.01,
                              "timeout_s": 10.0}
    values.update(overrides)
    config = GeminiConfig(**values)
    with scrubbed_transport_logs(config.api_key.get_secret_value()):
        async with backend_on(config) as backend:
            yield backend


@asynccontextmanager
async def backend_on(config: GeminiConfig) -> AsyncIterator[GeminiBackend]:
    async with httpx2.AsyncClient() as http:
        client = make_client(config, http)
        backend = GeminiBackend(client, config)
        try:
            yield backend
        finally:
            await backend.aclose()
            client.close()  # the SDK's own (unused) sync client; the async one is ``http``, closed by its owner


async def collect(stream: AsyncIterator[GeminiEvent]) -> tuple[list[str], GeminiAnswer]:
    deltas, done = [], None
    async for event in stream:
        if isinstance(event, GeminiDelta):
            deltas.append(event.text)
        else:
            assert isinstance(event, GeminiDone) and done is None
            done = event.answer
    assert done is not None
    return deltas, done


# --- the fake itself, with the plain SDK ------------------------------------------------------------------------------


async def test_fake_serves_the_plain_sdk_sync_and_async(fake_gemini: FakeGemini) -> None:
    """The SDK as documented (its default API version, v1; sync and aio) against the fake: the wire format holds."""
    fake_gemini.processing_s = 600  # PROCESSING until the test ends it below
    video = make_clip(2.0, "160x120", 10)
    client = genai.Client(api_key=FAKE_API_KEY, http_options=types.HttpOptions(base_url=fake_gemini.url))
    uploaded = await asyncio.to_thread(client.files.upload, file=video,
                                       config=types.UploadFileConfig(mime_type="video/mp4"))
    assert uploaded.name and uploaded.name.startswith("files/") and uploaded.state == types.FileState.PROCESSING
    assert uploaded.size_bytes == video.stat().st_size and uploaded.expiration_time is not None
    # A client waits for a file by polling its state: PROCESSING, then (the fake's processing ended here, not by a
    # timer) ACTIVE.
    assert (await client.aio.files.get(name=uploaded.name)).state == types.FileState.PROCESSING
    fake_gemini.finish_processing()
    ready = await client.aio.files.get(name=uploaded.name)
    assert ready.state == types.FileState.ACTIVE and ready.uri == uploaded.uri
    answer = await client.aio.models.generate_content(model="gemini-flash-latest", contents=[
        types.Part(file_data=types.FileData(file_uri=ready.uri, mime_type="video/mp4")), "Describe it."])
    assert answer.text == ANSWER and answer.model_version == fake_gemini.model_version
    pieces = [chunk.text async for chunk in await client.aio.models.generate_content_stream(
        model="gemini-flash-latest", contents="Describe it.")]
    assert len(pieces) == 3 and "".join(p or "" for p in pieces) == ANSWER
    await client.aio.files.delete(name=uploaded.name)
    await client.aio.aclose()
    client.close()

    routes = [r.route for r in fake_gemini.requests]
    routes = [route for i, route in enumerate(routes) if route != "files.get" or routes[i - 1] != route]  # polled
    assert routes == ["upload.start", "upload.chunk", "files.get", "generate", "stream", "files.delete"]
    assert {r.api_version for r in fake_gemini.requests} == {"v1"}
    assert fake_gemini.seen("stream")[0].query == {"alt": "sse"}
    assert all(r.key_in_header for r in fake_gemini.requests if r.route != "upload.chunk")
    assert fake_gemini.key_leaks == []


# --- how the video travels --------------------------------------------------------------------------------------------


async def test_small_video_goes_inline(fake_gemini: FakeGemini, clip: Asset,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.backends.gemini")
    async with backend_for(fake_gemini, video_fps=2.0, media_resolution="low") as gemini:
        answer = await gemini.describe(clip, PROMPT, temperature=0.2, max_output_tokens=256, deadline_s=10)

    assert answer == GeminiAnswer(ANSWER, fake_gemini.model_version, answer.usage, "inline")
    assert answer.usage.prompt_tokens > 0 and answer.usage.candidates_tokens == len(ANSWER.split())
    [sent] = fake_gemini.seen("generate")
    assert sent.path == "/v1beta/models/gemini-flash-latest:generateContent" and sent.api_version == "v1beta"
    assert sent.inline_sizes == [clip.video.stat().st_size] and sent.file_uris == [] and sent.texts == [PROMPT]
    assert sent.video_metadata == [{"fps": 2.0}]
    assert sent.generation_config == {"temperature": 0.2, "maxOutputTokens": 256,
                                      "mediaResolution": "MEDIA_RESOLUTION_LOW"}
    assert fake_gemini.uploads == 0
    logged = [r for r in caplog.records if getattr(r, "gemini_model_version", None) == fake_gemini.model_version]
    assert logged and logged[0].levelno == logging.INFO


async def test_large_video_is_uploaded_once_and_reused(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.processing_s = 0.5
    async with backend_for(fake_gemini, inline_max_bytes=1000) as gemini:
        first = await gemini.describe(clip, PROMPT, deadline_s=10)
        second = await gemini.describe(clip, "And the sound?", deadline_s=10)

    assert first.video_via == second.video_via == "file"
    assert fake_gemini.uploads == 1
    [name] = fake_gemini.files
    assert len(fake_gemini.seen("files.get")) >= 2  # polled through PROCESSING until ACTIVE
    uris = [r.file_uris for r in fake_gemini.seen("generate")]
    assert uris == [[f"{fake_gemini.url}/v1beta/{name}"]] * 2
    start = fake_gemini.seen("upload.start")[0]
    assert start.headers["x-goog-upload-protocol"] == "resumable"
    assert start.headers["x-goog-upload-header-content-type"] == "video/mp4"
    assert start.headers["x-goog-upload-header-content-length"] == str(clip.video.stat().st_size)


async def test_concurrent_first_questions_share_one_upload(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.processing_s = 0.4
    async with backend_for(fake_gemini, inline_max_bytes=1000) as gemini:
        answers = await asyncio.gather(*(gemini.describe(clip, f"Question {i}", deadline_s=10) for i in range(4)))
    assert [a.video_via for a in answers] == ["file"] * 4
    assert fake_gemini.uploads == 1 and len(fake_gemini.seen("generate")) == 4


async def test_upload_larger_than_one_sdk_chunk_arrives_whole(fake_gemini: FakeGemini, tmp_path: Path) -> None:
    data = os.urandom(9 * 2**20)  # the SDK sends 8 MiB chunks: two here
    (tmp_path / "big.mp4").write_bytes(data)
    async with backend_for(fake_gemini, inline_max_bytes=1000) as gemini:
        answer = await gemini.describe(asset_for(tmp_path / "big.mp4"), PROMPT, deadline_s=20)
    assert answer.video_via == "file"
    chunks = fake_gemini.seen("upload.chunk")
    assert [c.headers["x-goog-upload-offset"] for c in chunks] == ["0", str(8 * 2**20)]
    assert [c.headers["x-goog-upload-command"] for c in chunks] == ["upload", "upload, finalize"]
    [stored] = fake_gemini.files.values()
    assert stored.sha256 == hashlib.sha256(data).digest()


async def test_expired_file_is_uploaded_again(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.file_ttl_s = 60  # inside the backend's safety margin: never reused
    async with backend_for(fake_gemini, inline_max_bytes=1000) as gemini:
        await gemini.describe(clip, PROMPT, deadline_s=10)
        await gemini.describe(clip, PROMPT, deadline_s=10)
    assert fake_gemini.uploads == 2


async def test_file_gemini_lost_is_uploaded_again(fake_gemini: FakeGemini, clip: Asset) -> None:
    async with backend_for(fake_gemini, inline_max_bytes=1000) as gemini:
        await gemini.describe(clip, PROMPT, deadline_s=10)
        [name] = fake_gemini.files
        fake_gemini.forget(name)
        answer = await gemini.describe(clip, PROMPT, deadline_s=10)
    assert answer.video_via == "file" and fake_gemini.uploads == 2
    assert len(fake_gemini.seen("generate")) == 3  # the second question: refused (403), then asked again


async def test_youtube_asset_sends_the_url_and_uploads_nothing(fake_gemini: FakeGemini) -> None:
    fake_gemini.answer = lambda request: f"Watched {request.file_uris[0]}"
    asset = asset_for(make_clip(2.0, "160x120", 10), youtube=YOUTUBE)
    async with backend_for(fake_gemini, inline_max_bytes=1000) as gemini:
        answer = await gemini.describe(asset, PROMPT, deadline_s=10)
    assert answer.video_via == "youtube" and answer.text == f"Watched {YOUTUBE}"
    [sent] = fake_gemini.seen("generate")
    assert sent.file_uris == [YOUTUBE] and sent.inline_sizes == []
    assert fake_gemini.seen("upload.start", "upload.chunk") == []


async def test_youtube_url_gemini_cannot_fetch_falls_back_to_the_video(fake_gemini: FakeGemini) -> None:
    fake_gemini.fail(400, message="Cannot fetch content from the provided URL.")
    asset = asset_for(make_clip(2.0, "160x120", 10), youtube=YOUTUBE)
    async with backend_for(fake_gemini) as gemini:
        answer = await gemini.describe(asset, PROMPT, deadline_s=10)
    assert answer.video_via == "inline"
    assert [r.file_uris for r in fake_gemini.seen("generate")] == [[YOUTUBE], []]


async def test_linked_youtube_video_is_never_fetched_when_gemini_watches_it(fake_gemini: FakeGemini) -> None:
    fetched: list[str] = []

    async def fetch() -> Asset:
        fetched.append(YOUTUBE)
        return asset_for(make_clip(2.0, "160x120", 10), youtube=YOUTUBE)

    async with backend_for(fake_gemini) as gemini:
        answer = await gemini.describe(LinkedVideo("yt-1", YOUTUBE, fetch), PROMPT, deadline_s=10)
        assert answer.video_via == "youtube" and fetched == []
        # Gemini cannot fetch it (private, region-locked…): the video is fetched here and sent itself.
        fake_gemini.fail(403, message="The caller does not have permission")
        stream = await gemini.describe_stream(LinkedVideo("yt-1", YOUTUBE, fetch), PROMPT, deadline_s=10)
        items = [item async for item in stream]
    assert isinstance(items[-1], GeminiDone) and items[-1].answer.video_via == "inline" and fetched == [YOUTUBE]
    assert [r.file_uris for r in fake_gemini.seen("generate")] == [[YOUTUBE], [YOUTUBE], []]


async def test_a_refusal_other_than_fetching_is_not_retried_with_the_video(fake_gemini: FakeGemini) -> None:
    async def fetch() -> Asset:
        raise AssertionError("must not fetch")

    fake_gemini.fail(429, times=10, route="any")
    async with backend_for(fake_gemini) as gemini:
        with pytest.raises(BackendUnavailable):
            await gemini.describe(LinkedVideo("yt-1", YOUTUBE, fetch), PROMPT, deadline_s=10)


# --- streaming --------------------------------------------------------------------------------------------------------


async def test_stream_yields_deltas_then_the_whole_answer(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.chunk_delay_s = 0.05
    async with backend_for(fake_gemini) as gemini:
        stream = await gemini.describe_stream(clip, PROMPT, deadline_s=10)
        deltas, answer = await collect(stream)
    assert len(deltas) == 3 and "".join(deltas) == answer.text == ANSWER
    assert answer.model_version == fake_gemini.model_version and answer.video_via == "inline"
    assert answer.usage.candidates_tokens == len(ANSWER.split())
    [sent] = fake_gemini.seen("stream")
    assert sent.path.endswith(":streamGenerateContent") and sent.query == {"alt": "sse"}


async def test_stream_retries_before_the_first_byte(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.fail(503, route="stream", times=2)
    async with backend_for(fake_gemini) as gemini:
        _, answer = await collect(await gemini.describe_stream(clip, PROMPT, deadline_s=10))
    assert answer.text == ANSWER and len(fake_gemini.seen("stream")) == 3


async def test_error_inside_a_stream_raises_from_the_iterator(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.stream_error_after = 1
    async with backend_for(fake_gemini) as gemini:
        stream = await gemini.describe_stream(clip, PROMPT, deadline_s=10)
        first = await anext(stream)
        assert isinstance(first, GeminiDelta)
        with pytest.raises(BackendUnavailable, match="Gemini is unavailable"):
            await anext(stream)


@pytest.mark.timing
async def test_stalled_stream_times_out(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.chunk_delay_s = 5
    async with backend_for(fake_gemini, timeout_s=0.3) as gemini:
        stream = await gemini.describe_stream(clip, PROMPT, deadline_s=10)
        started = time.monotonic()
        with pytest.raises(BackendTimeout):
            await collect(stream)
    assert time.monotonic() - started < 2


# --- retries, timeouts, refusals --------------------------------------------------------------------------------------


async def test_503_twice_then_success(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.fail(503, times=2)
    async with backend_for(fake_gemini) as gemini:
        answer = await gemini.describe(clip, PROMPT, deadline_s=10)
    assert answer.text == ANSWER and len(fake_gemini.seen("generate")) == 3


async def test_429_retry_after_is_honoured(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.fail(429, retry_after=1)
    fake_gemini.fail(429, retry_delay="0.5s")  # google.rpc.RetryInfo, no header
    async with backend_for(fake_gemini) as gemini:
        started = time.monotonic()
        await gemini.describe(clip, PROMPT, deadline_s=10)
    assert time.monotonic() - started >= 1.5 and len(fake_gemini.seen("generate")) == 3


async def test_persistent_503_is_backend_unavailable(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.fail(503, times=10)
    async with backend_for(fake_gemini, max_retries=2) as gemini:
        with pytest.raises(BackendUnavailable) as caught:
            await gemini.describe(clip, PROMPT, deadline_s=10)
    assert caught.value.status_code == 503 and caught.value.retry_after == 5
    assert caught.value.message.startswith("Gemini is unavailable (HTTP 503 UNAVAILABLE)")
    assert len(fake_gemini.seen("generate")) == 3


async def test_retry_after_beyond_the_deadline_gives_up_at_once(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.fail(429, retry_after=30)
    async with backend_for(fake_gemini) as gemini:
        with pytest.raises(BackendUnavailable) as caught:
            await gemini.describe(clip, PROMPT, deadline_s=5)
    assert caught.value.retry_after == 30 and caught.value.code == "gemini_rate_limited"
    assert len(fake_gemini.seen("generate")) == 1


@pytest.mark.timing
async def test_slow_gemini_times_out_at_the_deadline(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.latency_s = 5
    async with backend_for(fake_gemini) as gemini:
        started = time.monotonic()
        with pytest.raises(BackendTimeout) as caught:
            await gemini.describe(clip, PROMPT, deadline_s=0.5)
    assert 0.4 < time.monotonic() - started < 2 and caught.value.status_code == 504


async def test_unreachable_gemini_is_unavailable(clip: Asset) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    fake = FakeGemini()  # not started: only its key and URL are used
    fake.url = url
    async with backend_for(fake, max_retries=1) as gemini:
        with pytest.raises(BackendUnavailable, match="unreachable"):
            await gemini.describe(clip, PROMPT, deadline_s=5)
    fake.server.server_close()


async def test_failed_processing_is_refused_and_cleaned_up(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.processing_s, fake_gemini.fail_processing = 0.2, True
    async with backend_for(fake_gemini, inline_max_bytes=1000) as gemini:
        with pytest.raises(GeminiRefused) as caught:
            await gemini.describe(clip, PROMPT, deadline_s=10)
    assert caught.value.status_code == 502 and caught.value.code == "gemini_video_failed"
    assert "could not process the video" in caught.value.message
    assert len(fake_gemini.seen("files.delete")) == 1 and fake_gemini.files == {}


@pytest.mark.timing
async def test_processing_that_never_ends_times_out(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.processing_s = 30
    async with backend_for(fake_gemini, inline_max_bytes=1000, upload_ready_timeout_s=0.6) as gemini:
        with pytest.raises(BackendTimeout, match="processing the video"):
            await gemini.describe(clip, PROMPT, deadline_s=10)


async def test_bad_request_is_refused_not_retried(fake_gemini: FakeGemini, clip: Asset) -> None:
    fake_gemini.fail(400, message="Unsupported MIME type: video/x-unknown")
    async with backend_for(fake_gemini) as gemini:
        with pytest.raises(GeminiRefused, match="Unsupported MIME type") as caught:
            await gemini.describe(clip, PROMPT, deadline_s=10)
    assert caught.value.status_code == 502 and len(fake_gemini.seen("generate")) == 1


async def test_health(fake_gemini: FakeGemini) -> None:
    async with backend_for(fake_gemini) as gemini:
        await gemini.health()
        fake_gemini.fail(503, route="models")
        with pytest.raises(BackendUnavailable):
            await gemini.health()
        fake_gemini.models = {"gemini-2.5-pro"}
        with pytest.raises(BackendUnavailable) as caught:
            await gemini.health()
    assert caught.value.code == "gemini_model_not_found"
    assert [r.path for r in fake_gemini.seen("models.get")] == ["/v1beta/models/gemini-flash-latest"] * 3


# --- the key ----------------------------------------------------------------------------------------------------------


async def test_the_key_appears_in_no_log_line_and_no_error(fake_gemini: FakeGemini, clip: Asset,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: the gateway's, google-genai's, httpx2's, httpcore's
    raised: list[str] = []
    fake_gemini.processing_s = 0.2
    # A server echoing the key back in its error messages, in both spellings a key travels in.
    fake_gemini.fail(503, message=f"backend overloaded for key {FAKE_API_KEY}")
    fake_gemini.fail(500, route="files", message=f"internal error at /v1beta/files?key={FAKE_API_KEY}")
    async with backend_for(fake_gemini, inline_max_bytes=1000) as gemini:
        await gemini.describe(clip, PROMPT, deadline_s=10)
        await collect(await gemini.describe_stream(clip, PROMPT, deadline_s=10))
        await gemini.health()
        fake_gemini.fail(400, message=f"Invalid request from {FAKE_API_KEY}")
        fake_gemini.fail(429, times=10, message=f"Quota exceeded for {FAKE_API_KEY}")
        for _ in range(2):
            with pytest.raises(Exception) as caught:
                await gemini.describe(clip, PROMPT, deadline_s=3)
            raised.append(f"{caught.value!s} {caught.value!r} {getattr(caught.value, 'body', dict)()}")
    answered_with_key = len(fake_gemini.requests)
    async with backend_for(fake_gemini, api_key=SecretStr("AIzaSyWRONG-wrong-wrong-wrong-wrong-wro")) as gemini:
        with pytest.raises(BackendUnavailable) as wrong:
            await gemini.describe(clip, PROMPT, deadline_s=3)
    assert wrong.value.code == "gemini_auth_failed"
    raised.append(str(wrong.value))

    assert any("[redacted]" in text for text in raised)
    assert not any(FAKE_API_KEY in text for text in raised)
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert {"httpx2", "httpcore2"} & {r.name.split(".")[0] for r in caplog.records}, "transport logs not captured"
    assert FAKE_API_KEY not in logged and "AIzaSyWRONG" not in logged
    assert fake_gemini.key_leaks == []
    assert all(r.key_in_header for r in fake_gemini.requests[:answered_with_key] if r.route != "upload.chunk")


async def test_an_upload_url_carrying_the_key_is_not_logged(fake_gemini: FakeGemini, clip: Asset,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake_gemini.upload_url_has_key = True  # Google's upload URL may repeat a key= it was given
    async with backend_for(fake_gemini, inline_max_bytes=1000) as gemini:
        await gemini.describe(clip, PROMPT, deadline_s=10)
    assert fake_gemini.key_leaks == ["upload.chunk: request line"]  # the SDK used the URL as given
    upload_lines = [r.getMessage() for r in caplog.records if "upload_id=" in r.getMessage()]
    assert upload_lines and all("key=[redacted]" in line for line in upload_lines)
    assert FAKE_API_KEY not in "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


def test_the_key_scrubber_is_taken_off_again() -> None:
    """The transport loggers are process-wide: apps built one after another must not pile scrubbers up."""
    names = ("httpx2", "httpcore2.http11")
    before = {name: list(logging.getLogger(name).filters) for name in names}
    with scrubbed_transport_logs(FAKE_API_KEY):
        record = logging.LogRecord("httpx2", logging.INFO, __file__, 1, "GET /upload?key=%s", (FAKE_API_KEY,), None)
        assert logging.getLogger("httpx2").filter(record) and record.getMessage() == "GET /upload?key=[redacted]"
    assert {name: list(logging.getLogger(name).filters) for name in names} == before
