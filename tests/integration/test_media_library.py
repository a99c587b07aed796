"""VideoLibrary built as the app's lifespan builds it, with real ffmpeg and yt-dlp: frames extracted once per
size and kept, pinned videos kept through eviction, and every form of chat video reference resolved to one asset."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import gateway.media.frames as frames_module
from gateway.api.schemas import ChatMessage
from gateway.api.video_refs import find_video, resolve
from gateway.errors import MediaRejected, NotFound
from gateway.media.ffmpeg import ToolResult
from gateway.media.library import VideoLibrary
from gateway.media.library import open_library as library_of
from gateway.metrics import Metrics
from tests.support.clips import make_clip
from tests.support.media_api import probe_file
from tests.support.origin import Origin
from vchat_settings import Settings


@pytest.fixture(scope="module")
def clip() -> bytes:
    return make_clip(3.0, "160x120", 10).read_bytes()


@asynccontextmanager
async def open_library(media_dir: Path, **overrides: object) -> AsyncIterator[VideoLibrary]:
    """What ``gateway.app``'s lifespan builds, over ``media_dir``."""
    values: dict[str, object] = {"vllm_url": None, "media_dir": media_dir, "media_allowed_hosts": "127.0.0.1"}
    settings = Settings(**{**values, **overrides})  # type: ignore[arg-type]
    async with library_of(settings, Metrics()) as library:
        yield library


@pytest.fixture
def ffmpeg_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every ffmpeg/ffprobe command frame extraction runs (the real tool still runs)."""
    runs: list[list[str]] = []
    real = frames_module.run_tool

    async def counting(args: list[str], *, timeout_s: float, stdin: bytes | None = None) -> ToolResult:
        runs.append(args)
        return await real(args, timeout_s=timeout_s, stdin=stdin)

    monkeypatch.setattr(frames_module, "run_tool", counting)
    return runs


# --- frames ----------------------------------------------------------------------------------------------


async def test_frames_are_extracted_once_per_size(tmp_path: Path, origin: Origin, clip: bytes,
                                                  ffmpeg_runs: list[list[str]]) -> None:
    url = origin.file("/clip.mp4", clip)
    async with open_library(tmp_path / "media") as library:
        asset = await library.from_url(url)
        # 3 s at 10 fps, read from the sanitized MP4's sample tables: no tool run at all (no ffprobe over the packets)
        assert await library.frame_count(asset) == 30 and ffmpeg_runs == []
        shown = await library.frames(asset, [0, 10, 29], width=64, height=48)
        # The clip has a keyframe each second: frames 0 and 10 are keyframes, decoded alone in keyframe-only runs
        # (one per core at most); frame 29 needs its keyframe group, seeked and decoded in one run of its own.
        runs = 1 + min(2, os.cpu_count() or 1)
        assert [a[0] for a in ffmpeg_runs] == ["ffmpeg"] * runs
        assert shown.times == (0.0, 1.0, 2.9)
        first_frame = probe_file(asset.video.parent / "frames" / "64x48" / "00000000.jpg")["streams"]
        assert isinstance(first_frame, list) and (first_frame[0]["width"], first_frame[0]["height"]) == (64, 48)

        # A second question on the same video: the URL index, then the cached frames; no ffmpeg.
        again = await library.frames(await library.from_url(url), [29, 0], width=64, height=48)
        assert again.jpegs == (shown.jpegs[2], shown.jpegs[0]) and len(ffmpeg_runs) == runs
        assert origin.hits["/clip.mp4"] == 1

        # Another size is extracted again; the index is not.
        smaller = await library.frames(asset, [0, 10], width=32, height=24)
        assert (smaller.width, len(smaller.jpegs), len(ffmpeg_runs)) == (32, 2, runs + min(2, os.cpu_count() or 1))
        assert {p.name for p in asset.video.parent.joinpath("frames").iterdir()} == {"index.json", "64x48", "32x24"}


async def test_concurrent_first_requests_for_frames_extract_once(tmp_path: Path, origin: Origin, clip: bytes,
                                                                 ffmpeg_runs: list[list[str]]) -> None:
    async with open_library(tmp_path / "media") as library:
        asset = await library.from_url(origin.file("/clip.mp4", clip))
        await library.frame_count(asset)
        got = await asyncio.gather(*(library.frames(asset, [1, 5, 9], width=96, height=72) for _ in range(6)))
        assert [a[0] for a in ffmpeg_runs] == ["ffmpeg"], ffmpeg_runs  # the index came from the MP4's tables
        assert len({g.jpegs for g in got}) == 1
        # No temporary directory left beside the frames.
        assert sorted(p.name for p in (asset.video.parent / "frames" / "96x72").iterdir()) == [
            "00000001.jpg", "00000005.jpg", "00000009.jpg"]


# --- eviction keeps pinned videos ------------------------------------------------------------------------


def noisy_clip(n: int) -> bytes:
    extra = ("-vf", "noise=alls=40:allf=t", "-crf", "23", "-metadata", f"comment=clip-{n}")
    return make_clip(2.0, "240x180", 10, audio=False, extra=extra).read_bytes()


async def test_pinned_video_survives_eviction(tmp_path: Path, origin: Origin) -> None:
    urls = [origin.file(f"/{n}.mp4", noisy_clip(n)) for n in range(4)]  # ~430 KB each; 1 MiB holds two
    async with open_library(tmp_path / "media", media_cache_bytes=2**20) as library:
        store = library.store
        first = await library.from_url(urls[0])
        async with store.pinned(first.id):
            second = await library.from_url(urls[1])
            third = await library.from_url(urls[2])
            await store.evict()
            # The pinned one is the least recently used, yet the next one went.
            assert await store.get(first.id) is not None and await store.get(third.id) is not None
            assert await store.get(second.id) is None
        await library.from_url(urls[3])
        await store.evict()
        assert await store.get(first.id) is None  # unpinned, it is evicted like any other


# --- chat video references, resolved ---------------------------------------------------------------------


def user(content: object) -> ChatMessage:
    return ChatMessage.model_validate({"role": "user", "content": content})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_every_form_of_reference_resolves_to_the_same_asset(tmp_path: Path, origin: Origin,
                                                                   clip: bytes) -> None:
    digest = hashlib.sha256(clip).hexdigest()
    url = origin.file("/holiday.mp4", clip)
    page = origin.page("/watch", '<html><body><video src="/holiday.mp4"></video></body></html>')
    async with open_library(tmp_path / "media") as library:
        upload = await library.from_upload(await _copy(clip, library.store.tmp / "upload"), digest)
        record = await library.files.add("holiday.mp4", len(clip), "vision", upload.id)
        conversations = {
            "link in text": [user(f"What happens in this video ({url})? Thanks!")],
            "Dify image_url with a video URL": [user([{"type": "text", "text": "Describe"},
                                                      {"type": "image_url", "image_url": {"url": url}}])],
            "Dify image_url with a video data URL": [user([{"type": "image_url", "image_url": {
                "url": f"data:video/mp4;base64,{b64(clip)}"}}])],
            "LibreChat video_url data URI": [user([{"type": "video_url", "video_url": {
                "url": f"data:video/mp4;base64,{b64(clip)}"}}, {"type": "text", "text": "Summarize"}])],
            "file part with a file id": [user([{"type": "file", "file": {"file_id": record.id}}])],
            "file part with bare base64": [user([{"type": "file", "file": {"file_data": b64(clip)}}])],
            "follow-up turn": [
                user([{"type": "video_url", "video_url": {"url": page}}, {"type": "text", "text": "Who is there?"}]),
                ChatMessage(role="assistant", content="Two people, see https://example.com/x.mp4"),
                user("And what do they do at the end?"),
            ],
        }
        for name, messages in conversations.items():
            ref = find_video(messages)
            assert ref is not None, name
            asset = await resolve(ref, library)
            assert asset.id == digest, name
        assert (origin.hits["/holiday.mp4"], origin.hits["/watch"]) == (2, 1)  # one per URL, however often asked


async def test_resolve_names_the_message_part_that_failed(tmp_path: Path) -> None:
    async with open_library(tmp_path / "media") as library:
        ref = find_video([user([{"type": "text", "text": "look"},
                                {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,@@@"}}])])
        assert ref is not None
        with pytest.raises(MediaRejected) as caught:
            await resolve(ref, library)
        assert (caught.value.code, caught.value.param) == ("invalid_data_url", "messages.0.content.1")
        ref = find_video([user([{"type": "file", "file": {"file_id": "file-" + "x" * 24}}])])
        assert ref is not None
        with pytest.raises(NotFound) as missing:
            await resolve(ref, library)
        assert missing.value.code == "file_not_found"


async def _copy(data: bytes, path: Path) -> Path:
    await asyncio.to_thread(path.write_bytes, data)
    return path
