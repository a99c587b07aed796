"""The gateway's videos: every way a client refers to one, resolved to a sanitized, cached asset and its frames."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx2

from gateway.errors import InsufficientStorage, MediaRejected, MediaTooLarge, NotAVideo, NotFound, VChatError
from gateway.media.fetch import FetchLimits, fetch_text, fetch_to_file
from gateway.media.files import FileRecord, FileRegistry
from gateway.media.framecache import FrameCache, Frames
from gateway.media.guard import HostPolicy, check_url
from gateway.media.hearing import TRANSCRIPT, Hearing
from gateway.media.pages import CaptionTrack, looks_like_page, resolve_page, youtube_watch_url
from gateway.media.probe import Probe, ProbeLimits, probe
from gateway.media.redirects import loggable_url
from gateway.media.sanitize import sanitize
from gateway.media.space import full_disk_refused
from gateway.media.speech import Asr
from gateway.media.store import MediaStore, StoredObject, write_json_atomic
from gateway.media.subtitles import TextLimits, Transcript, extract, read_text
from gateway.media.subtitles import load as load_transcript
from gateway.media.transport import guarded_async_client
from gateway.metrics import Metrics
from vchat_settings import Settings

logger = logging.getLogger(__name__)

SourceKind = Literal["url", "page", "data_url", "upload"]
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)


@dataclass(frozen=True)
class VideoFacts:
    """What a client is told about the video: as sanitized, plus where it came from."""

    duration_s: float
    fps: float
    width: int
    height: int
    codec: str
    has_audio: bool
    audio_codec: str | None
    bytes: int
    source: SourceKind
    source_host: str | None


@dataclass(frozen=True)
class Asset:
    """A sanitized video in the cache, ready for frames (and for Gemini)."""

    id: str
    video: Path
    probe: Probe
    facts: VideoFacts
    page_url: str | None = None  # the page a video was resolved from (e.g. the YouTube URL)
    is_youtube: bool = False
    transcript: Transcript | None = None  # its timed text: the container's subtitles, the page's captions, or speech


@dataclass(frozen=True)
class LinkedVideo:
    """A YouTube video not fetched here: Gemini watches it by its URL. ``fetch`` gets the video itself, for when
    Gemini will not (private, age-gated, region-locked…)."""

    id: str
    page_url: str  # canonical https://www.youtube.com/watch?v=ID
    fetch: Callable[[], Awaitable[Asset]]


class VideoLibrary:
    """Resolves URLs, pages, data URLs, uploads and file ids to assets; extracts the frames rounds ask for.

    Each stage of a new video (fetch, probe, sanitize, then index and frames) is timed on ``metrics``
    (``vchat_media_stage_seconds``); what comes from the cache is not.
    """

    def __init__(self, settings: Settings, store: MediaStore, files: FileRegistry, http: httpx2.AsyncClient,
                 policy: HostPolicy, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.files = files
        self.http = http
        self.policy = policy
        self.fetch_limits = FetchLimits.from_settings(settings)
        self.probe_limits = ProbeLimits.from_settings(settings)
        self.text_limits = TextLimits(settings.subtitles_max_bytes, settings.subtitles_max_lines)
        self.hearing = Hearing(Asr.from_settings(settings), settings.transcribe, self.text_limits, metrics,
                               store.temp_dir)
        self.frame_cache = FrameCache(max_frames=settings.frame_cache_frames,
                                      workers=settings.frame_workers or os.cpu_count() or 1,
                                      timeout_s=settings.ffmpeg_timeout_s, metrics=metrics)

    # --- the ways in ------------------------------------------------------------------------------

    async def from_url(self, url: str) -> Asset:
        """A video file URL, or a page yt-dlp knows; the same URL is fetched once, however often it is asked."""
        check_url(url, self.policy)
        cached = await asyncio.to_thread(self.store.lookup_url, url)
        if cached is not None:
            return await self.load(*cached)
        return await self.store.single_flight(f"url:{url}", lambda: self._fetch_url(url))

    async def linked_or_cached(self, url: str) -> Asset | LinkedVideo | None:
        """For a YouTube link: the asset when it was fetched before, else a ``LinkedVideo`` (nothing downloaded).
        None for any other URL."""
        watch = youtube_watch_url(url)
        if watch is None:
            return None
        check_url(url, self.policy)
        cached = await asyncio.to_thread(self.store.lookup_url, url)
        if cached is not None:
            return await self.load(*cached)
        return LinkedVideo("yt-" + hashlib.sha256(watch.encode()).hexdigest()[:40], watch,
                           lambda: self.from_url(url))

    async def from_data_url(self, data_url: str) -> Asset:
        """A ``data:`` URL carrying base64 video bytes."""
        match = _DATA_URL.match(data_url[:512])
        if match is None or not match.group("b64"):
            raise MediaRejected("The data URL must look like 'data:video/mp4;base64,<bytes>'.", code="invalid_data_url")
        mime = (match.group("mime") or "").lower()
        if mime.startswith(("image/", "audio/", "text/")):
            raise NotAVideo(f"The data URL carries {mime}, not a video.")
        payload = data_url[match.end():]
        if len(payload) * 3 // 4 > self.settings.media_max_bytes:
            raise MediaTooLarge(f"The video is larger than the limit of {self.settings.media_max_bytes} bytes.")
        async with self.store.temp_dir() as work:
            path, digest = await self.store.with_room(
                lambda: asyncio.to_thread(_decode_base64_to, payload, work / "data"), needed=len(payload) * 3 // 4)
            return await self.store.single_flight(
                f"obj:{digest}", lambda: self._ingest(path, digest, "data_url", None))

    async def from_upload(self, path: Path, sha256: str) -> Asset:
        """An uploaded file already on disk (under the store's temp space)."""
        return await self.store.single_flight(f"obj:{sha256}", lambda: self._ingest(path, sha256, "upload", None))

    async def from_file_id(self, file_id: str) -> Asset:
        """A file uploaded earlier through ``POST /v1/files``."""
        record = await self.files.get(file_id)
        if record is None:
            raise NotFound(f"No file with id '{file_id}'.", param="file_id", code="file_not_found")
        stored = await self.store.get(record.object_id)
        if stored is None:
            raise NotFound(f"The video of file '{file_id}' is no longer cached; upload it again.",
                           param="file_id", code="file_not_found")
        return await self.load(stored, {})

    async def remove_file(self, file_id: str) -> FileRecord | None:
        """Delete a file record and its cached video, unless another file still points at the same bytes.

        The video goes even if a URL's cache entry points at it (that URL is simply fetched again next time):
        someone deleting their upload expects its content gone.
        """
        record = await self.files.remove(file_id)
        if record is not None and not any(r.object_id == record.object_id for r in await self.files.list()):
            await self.store.delete(record.object_id)
        return record

    # --- frames -----------------------------------------------------------------------------------

    async def frame_count(self, asset: Asset) -> int:
        """How many frames the asset's video has, counted from its packets (not the container's estimate)."""
        return len(await self.frame_cache.index(asset.video, asset.probe))

    async def frames(self, asset: Asset, indices: list[int], *, width: int, height: int, snap_s: float = 0.0,
                     keep: Sequence[tuple[int, int]] = ()) -> Frames:
        """These frames of the asset (indices in presentation order) at this size, with their times.

        Frames are extracted by seeking, only where not cached already, and kept for later rounds and questions.
        snap_s > 0 lets a frame outside the keep ranges move to a keyframe that near (decoded alone); the indices
        and times returned are always those of the frames shown.
        """
        # A JPEG of w x h takes well under w x h bytes (about 1-2 bits a pixel at this quality).
        return await self.store.with_room(
            lambda: self.frame_cache.frames(asset.video, asset.probe, indices, width=width, height=height,
                                            snap_s=snap_s, keep=keep),
            needed=len(set(indices)) * width * height)

    # --- internals --------------------------------------------------------------------------------

    async def _fetch_url(self, url: str) -> Asset:
        # A caller whose cache lookup missed just before the previous flight for this URL landed starts a new one.
        cached = await asyncio.to_thread(self.store.lookup_url, url)
        if cached is not None:
            return await self.load(*cached)
        page_url: str | None = None
        is_youtube = False
        media_url = url
        kind: SourceKind = "url"
        captions: Transcript | None = None
        if looks_like_page(url):
            page = await resolve_page(url, policy=self.policy, max_duration_s=self.settings.media_max_duration_s,
                                      max_bytes=self.settings.media_max_bytes,
                                      timeout_s=self.settings.media_fetch_timeout_s,
                                      max_redirects=self.settings.media_max_redirects,
                                      caption_languages=self.settings.caption_languages)
            media_url, page_url, is_youtube, kind = page.media_url, page.webpage_url or url, page.is_youtube, "page"
            if page.captions is not None:
                captions = await self._captions(page.captions)
        async with self.store.temp_dir() as work:
            with self.metrics.media_stage("fetch"):
                fetched = await fetch_to_file(self.http, media_url, work, self.fetch_limits, self.policy,
                                              make_room=self.store.make_room)
            asset = await self.store.single_flight(
                f"obj:{fetched.sha256}",
                lambda: self._ingest(fetched.path, fetched.sha256, kind, loggable_url(url), page_url, is_youtube,
                                     captions))
        # Without room for the URL's index entry the video is still good: the URL is fetched again next time, and
        # its bytes find this object by their hash.
        with contextlib.suppress(InsufficientStorage):
            await asyncio.to_thread(self.store.remember_url, url, asset.id, page_url=page_url, is_youtube=is_youtube)
        logger.info("video fetched", extra={"video": asset.id[:12], "source": loggable_url(url),
                                            "bytes": asset.facts.bytes})
        return asset

    async def _captions(self, track: CaptionTrack) -> Transcript | None:
        """A page's caption track as a transcript; None when it cannot be fetched or read (the video is still good)."""
        limits = dataclasses.replace(self.fetch_limits, max_bytes=self.settings.subtitles_max_bytes)
        try:
            data = await fetch_text(self.http, track.url, limits, self.policy)
        except VChatError as exc:
            logger.warning("captions not fetched: %s", exc.message, extra={"source": loggable_url(track.url)})
            return None
        return read_text(data, self.text_limits, "captions", track.language)

    async def _ingest(self, src: Path, digest: str, kind: SourceKind, source_host: str | None,
                      page_url: str | None = None, is_youtube: bool = False,
                      captions: Transcript | None = None) -> Asset:
        stored = await self.store.get(digest)
        if stored is not None:
            if captions is not None and not await asyncio.to_thread((stored.dir / TRANSCRIPT).exists):
                # The same bytes came without timed text before (an upload, another page): keep this page's.
                with contextlib.suppress(InsufficientStorage):
                    await asyncio.to_thread(write_json_atomic, stored.dir / TRANSCRIPT, captions.to_json(),
                                            self.store.tmp)
            return await self.load(stored, {"page_url": page_url, "is_youtube": is_youtube})
        with self.metrics.media_stage("probe"):
            found = await probe(src, self.probe_limits)
        # The copy takes about what its source does; twice that leaves room for a re-encode that comes out larger.
        built, written, facts = await self.store.with_room(
            lambda: self._build(src, found, digest, kind, source_host, captions), needed=2 * found.bytes)
        self.store.schedule_eviction()
        return Asset(built.id, built.video, written, facts, page_url, is_youtube, await self._transcript(built))

    async def _build(self, src: Path, found: Probe, digest: str, kind: SourceKind, source_host: str | None,
                     captions: Transcript | None = None) -> tuple[StoredObject, Probe, VideoFacts]:
        """The sanitized object of ``src``, built in the temp space and committed (nothing is left on failure)."""
        async with self.store.temp_dir() as build:
            obj = build / digest
            with full_disk_refused(build):
                await asyncio.to_thread(obj.mkdir)
            # Sanitizing drops subtitle streams (and the source is deleted after): their text is read first. The
            # video's own subtitles come before a page's captions: they were made for exactly these frames.
            transcript = captions
            if found.subtitle_index is not None:
                transcript = await extract(src, found.subtitle_index, found.subtitle_language, build, self.text_limits,
                                           timeout_s=self.settings.ffmpeg_timeout_s) or captions
            with self.metrics.media_stage("sanitize"):
                written = await sanitize(src, found, obj / "video.mp4", timeout_s=self.settings.ffmpeg_timeout_s)
            # Speech is heard in the sanitized copy (one audio stream, a codec ffmpeg just wrote), once per video.
            heard = None
            if self.hearing.needed(written.has_audio, transcript):
                heard = await self.hearing.hear(obj / "video.mp4", build)
                await asyncio.to_thread(self.hearing.mark, obj, heard, build)
            if heard is not None:
                transcript = heard
            elif transcript is not None:
                await asyncio.to_thread(write_json_atomic, obj / TRANSCRIPT, transcript.to_json(), build)
            facts = _facts(written, kind, source_host)
            meta = {"probe": dataclasses.asdict(written), "facts": dataclasses.asdict(facts)}
            await asyncio.to_thread(write_json_atomic, obj / "facts.json", meta, build)
            with full_disk_refused(build):
                stored = await asyncio.to_thread(self.store.commit, digest, obj)
        return stored, written, facts

    async def load(self, stored: StoredObject, record: dict[str, object] | None = None) -> Asset:
        """The asset of a cached object (``record``: what the URL index remembered about its source)."""
        record = record or {}
        meta = json.loads(await asyncio.to_thread(stored.facts_path.read_text))
        page_url = record.get("page_url")
        found = Probe(**meta["probe"])
        # Stored before transcription was on (or before "always"): heard now, once.
        transcript = await self.hearing.stored(stored, found.has_audio, await self._transcript(stored))
        return Asset(stored.id, stored.video, found, VideoFacts(**meta["facts"]),
                     page_url if isinstance(page_url, str) else None, bool(record.get("is_youtube", False)),
                     transcript)

    async def _transcript(self, stored: StoredObject) -> Transcript | None:
        return await asyncio.to_thread(load_transcript, stored.dir / TRANSCRIPT)


def _facts(found: Probe, kind: SourceKind, source_host: str | None) -> VideoFacts:
    width, height = found.display_size
    host = None
    if source_host:
        host = httpx2.URL(source_host).host or None
    return VideoFacts(duration_s=round(found.duration_s, 3), fps=round(found.fps, 3), width=width, height=height,
                      codec=found.vcodec, has_audio=found.has_audio, audio_codec=found.acodec, bytes=found.bytes,
                      source=kind, source_host=host)


def _decode_base64_to(payload: str, path: Path) -> tuple[Path, str]:
    """Decode strictly (no stray characters) to ``path``; return it and the SHA-256 of the bytes.

    Raises InsufficientStorage when they do not fit (nothing is left).
    """
    try:
        data = base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaRejected("The data URL is not valid base64.", code="invalid_data_url") from exc
    if not data:
        raise MediaRejected("The data URL is empty.", code="invalid_data_url")
    try:
        with full_disk_refused(path.parent):
            path.write_bytes(data)
    except BaseException:
        path.unlink(missing_ok=True)  # a retry after eviction must not meet half a file
        raise
    return path, hashlib.sha256(data).hexdigest()


@asynccontextmanager
async def open_library(settings: Settings, metrics: Metrics) -> AsyncIterator[VideoLibrary]:
    """The media library the app's lifespan (and the benchmarks) use: cache and file records opened (crash
    leftovers swept), and the guarded HTTP client, closed on exit; its stages timed on the app's ``metrics``."""
    store = MediaStore(settings.media_dir, settings.media_cache_bytes)
    registry = FileRegistry(settings.media_dir, store.tmp)
    await asyncio.to_thread(store.open)
    await asyncio.to_thread(registry.open)
    policy = HostPolicy.from_settings(settings.media_allowed_hosts)
    try:
        async with guarded_async_client(policy) as http:
            yield VideoLibrary(settings, store, registry, http, policy, metrics)
    finally:
        await store.aclose()  # the background eviction is the library's: it ends with it
