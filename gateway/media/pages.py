"""Resolves a video page (YouTube, Vimeo, any site yt-dlp knows, a plain page with ``<video>``) to one file URL.

yt-dlp runs as a library in a worker thread and downloads no media here: ``extract_info(url, download=False)``.

SSRF: every HTTP request yt-dlp makes (the page, each redirect hop, extractors' API calls, HLS/DASH manifests)
goes through ``GuardedRH``, a yt-dlp request handler (``yt_dlp/networking/common.py: RequestHandler``) that sends
over httpx2 with ``transport.GuardedTransport`` (each connect checks the resolved IP) and follows redirects with
``redirects.send_following_sync`` (``guard.check_url`` on the first URL and on every hop before it is sent).
``_GuardedYoutubeDL`` makes it the *only* handler: it overrides ``YoutubeDL._request_director``
(``yt_dlp/YoutubeDL.py``, the cached ``RequestDirector`` behind ``YoutubeDL.urlopen``, through which all extractor
traffic passes) with one built by the public ``build_request_director([GuardedRH])``, so yt-dlp's
urllib/requests/curl_cffi/websockets handlers are never instantiated. The chosen media URL is checked with
``check_url`` as well; the gateway downloads it later with its own guarded client.

A refusal (guard, live stream, too long, no progressive format) is recorded on the run's ``_Session`` and
yt-dlp is aborted with an exception it does not swallow; whatever yt-dlp then raises, the recorded refusal is
what the caller sees. Other yt-dlp errors become ``MediaFetchFailed`` / ``MediaRejected`` in plain words.

Timeout: a thread cannot be killed, so ``resolve_page`` stops *waiting* after ``timeout_s`` and marks the
session cancelled; the handler refuses every later request and every body read checks the deadline, and each
request's socket timeout is ``min(10 s, time left)``, so the worker thread ends soon after the deadline.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import httpx2
import yt_dlp  # type: ignore[import-untyped]
from yt_dlp.networking.common import Request, RequestHandler, Response  # type: ignore[import-untyped]
from yt_dlp.networking.exceptions import HTTPError, RequestError, TransportError  # type: ignore[import-untyped]
from yt_dlp.utils import (  # type: ignore[import-untyped]
    DownloadCancelled,
    ExtractorError,
    UnsupportedError,
    determine_protocol,
)

from gateway.errors import (
    MediaFetchFailed,
    MediaRejected,
    MediaTimeout,
    MediaTooLarge,
    NotAVideo,
    UrlNotAllowed,
    VChatError,
)
from gateway.media.guard import HostPolicy, check_url
from gateway.media.redirects import send_following_sync
from gateway.media.transport import guarded_sync_client

logger = logging.getLogger(__name__)

SOCKET_TIMEOUT_S = 10.0  # per request; bounds how long the worker thread can outlive resolve_page's deadline
MAX_BODY_BYTES = 32 * 2**20  # a page, player script or API answer larger than this is not a video page
MAX_HEIGHT = 1080  # preferred, not required: a taller file is taken when nothing at or under it exists

STREAMING_ONLY = "this page only offers streaming formats (HLS/DASH); send a direct video link"
_SAFE_MEDIA_HEADERS = ("User-Agent", "Referer", "Origin", "Accept", "Accept-Language")

# looks_like_page: hosts whose video URLs are pages (watch pages, share links), never files.
_VIDEO_SITES = (
    "youtube.com", "youtu.be", "youtube-nocookie.com", "vimeo.com", "dailymotion.com", "dai.ly", "twitch.tv",
    "tiktok.com", "x.com", "twitter.com", "facebook.com", "fb.watch", "instagram.com", "bilibili.com", "b23.tv",
    "reddit.com", "streamable.com", "rumble.com", "vk.com", "ok.ru", "nicovideo.jp", "loom.com", "ted.com",
)
_VIDEO_FILE_SUFFIXES = (
    ".mp4", ".m4v", ".mov", ".qt", ".webm", ".mkv", ".avi", ".ts", ".mts", ".m2ts", ".ogv", ".ogg", ".3gp",
    ".3g2", ".flv", ".wmv", ".asf", ".mpg", ".mpeg", ".mpe", ".vob", ".divx", ".f4v",
)


def _classify(url: str) -> tuple[bool, bool, bool]:
    """(is http(s), host is a known video site, path ends in a video file extension)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        return False, False, False
    host = (parts.hostname or "").rstrip(".")
    site = any(host == known or host.endswith("." + known) for known in _VIDEO_SITES)
    return True, site, urllib.parse.unquote(parts.path).lower().endswith(_VIDEO_FILE_SUFFIXES)


def looks_like_page(url: str) -> bool:
    """Whether ``url`` should be resolved with yt-dlp rather than downloaded directly.

    The rule: a known video site's host (or any subdomain of it) is a page; otherwise a path ending in a video
    file extension (``.mp4``, ``.webm``, ``.mov``, ``.mkv``, ``.m4v``, ``.avi``, ``.ts``, ``.ogv``…; query and
    fragment ignored, case-insensitive) is a file; any other http(s) URL is a page. Non-http(s) URLs are not
    pages (the direct path refuses them).
    """
    web, site, file = _classify(url)
    return web and (site or not file)


def is_video_link(url: str) -> bool:
    """Whether a link found in a user's text is worth treating as the video: a known video site's page or a
    URL whose path ends in a video file extension (a link to any other page is left as text)."""
    web, site, file = _classify(url)
    return web and (site or file)


_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")


def youtube_watch_url(url: str) -> str | None:
    """The canonical ``https://www.youtube.com/watch?v=ID`` of a YouTube video link (watch, share, shorts, embed,
    live and mobile forms), or None for anything else (channels, playlists, other sites)."""
    parts = urllib.parse.urlsplit(url.strip())
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme.lower() not in ("http", "https"):
        return None
    segments = [s for s in parts.path.split("/") if s]
    found: str | None = None
    if host == "youtu.be" and segments:
        found = segments[0]
    elif host in ("youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtube-nocookie.com",
                  "www.youtube-nocookie.com"):
        if segments == ["watch"]:
            found = (urllib.parse.parse_qs(parts.query).get("v") or [""])[0]
        elif len(segments) == 2 and segments[0] in ("shorts", "embed", "live", "v"):
            found = segments[1]
    return f"https://www.youtube.com/watch?v={found}" if found and _YOUTUBE_ID.match(found) else None


@dataclass(frozen=True, slots=True)
class PageMedia:
    """The one progressive file a page resolved to, and what the request for it needs."""

    media_url: str
    http_headers: dict[str, str]
    duration_s: float | None
    title: str | None
    extractor: str
    webpage_url: str
    is_youtube: bool
    filesize: int | None


async def resolve_page(
    url: str, *, policy: HostPolicy, max_duration_s: float, max_bytes: int, timeout_s: float, max_redirects: int
) -> PageMedia:
    """Resolve a page URL to one progressive media URL without downloading it (yt-dlp in a worker thread);
    each request yt-dlp makes follows at most ``max_redirects`` redirects."""
    check_url(url, policy)
    session = _Session(policy, time.monotonic() + timeout_s, max_duration_s=max_duration_s, max_bytes=max_bytes,
                       max_redirects=max_redirects)
    try:
        return await asyncio.wait_for(asyncio.to_thread(_resolve, url, session), timeout_s)
    except TimeoutError:
        raise MediaTimeout(f"resolving the video page took longer than {timeout_s:g} s") from None
    finally:
        session.cancelled.set()  # a still-running worker refuses its next request or read


def choose_format(formats: list[dict[str, Any]], *, policy: HostPolicy, max_bytes: int) -> dict[str, Any]:
    """The one format to fetch from yt-dlp's list (worst first, as yt-dlp sorts it), or the refusal saying why.

    Only progressive files qualify: protocol http/https, a video stream, no DRM, no fragments. Among them, with
    audio beats video-only, then height ≤ ``MAX_HEIGHT`` (the best such by yt-dlp's order) beats taller (the
    least tall). A format whose announced ``filesize`` exceeds ``max_bytes`` or whose URL the guard refuses is
    skipped.
    """
    progressive = [fmt for fmt in formats if _is_progressive(fmt)]
    if not progressive:
        raise MediaRejected(STREAMING_ONLY)
    allowed: list[dict[str, Any]] = []
    refusal: UrlNotAllowed | None = None
    for fmt in progressive:
        try:
            check_url(fmt["url"], policy)
        except UrlNotAllowed as exc:
            refusal = refusal or exc
            continue
        allowed.append(fmt)
    if not allowed:
        assert refusal is not None
        raise refusal
    fitting = [fmt for fmt in allowed if not (isinstance(fmt.get("filesize"), int) and fmt["filesize"] > max_bytes)]
    if not fitting:
        raise MediaTooLarge(f"every file this page offers is larger than the {max_bytes} byte limit")

    def rank(item: tuple[int, dict[str, Any]]) -> tuple[bool, bool, float]:
        index, fmt = item
        height = fmt.get("height")
        fits = not isinstance(height, int | float) or height <= MAX_HEIGHT
        return fmt.get("acodec") != "none", fits, index if fits else -float(height)  # type: ignore[arg-type]

    return max(enumerate(fitting), key=rank)[1]


def check_info(info: dict[str, Any], *, max_duration_s: float) -> None:
    """Refuse a live (or not yet started) stream, and a video whose known duration exceeds ``max_duration_s``.

    A finished live stream (``was_live``) is an ordinary recording and passes.
    """
    if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
        raise MediaRejected("live streams are not supported; send a recorded video")
    duration = info.get("duration")
    if isinstance(duration, int | float) and duration > max_duration_s:
        raise MediaTooLarge(f"the video is {duration:.0f} s long; the limit is {max_duration_s:g} s",
                            code="video_too_long")


def _is_progressive(fmt: dict[str, Any]) -> bool:
    return (
        isinstance(fmt.get("url"), str)
        and determine_protocol(fmt) in ("http", "https")
        and fmt.get("vcodec") != "none"
        and not fmt.get("has_drm")
        and not fmt.get("fragments")
    )


class _Session:
    """One resolution's shared state: the guard policy, the deadline, the caps and the first refusal."""

    def __init__(self, policy: HostPolicy, deadline: float, *, max_duration_s: float, max_bytes: int,
                 max_redirects: int) -> None:
        self.policy = policy
        self.deadline = deadline
        self.max_duration_s = max_duration_s
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.cancelled = threading.Event()
        self.refusal: VChatError | None = None

    def refuse(self, error: VChatError, abort: type[Exception]) -> NoReturn:
        """Record ``error`` (the first one wins) and abort yt-dlp with ``abort``, an exception it lets through."""
        if self.refusal is None:
            self.refusal = error
        raise abort(error.message)

    def time_left(self) -> float:
        """Seconds until the deadline; refuses (as a request error) once it has passed or the caller gave up."""
        left = self.deadline - time.monotonic()
        if left <= 0 or self.cancelled.is_set():
            self.refuse(MediaTimeout("resolving the video page took too long"), RequestError)
        return left

    def match_filter(self, info: dict[str, Any], *, incomplete: bool = False) -> str | None:
        """yt-dlp's ``match_filter`` (called again as fields become known): ``check_info``, as an abort."""
        try:
            check_info(info, max_duration_s=self.max_duration_s)
        except VChatError as exc:
            self.refuse(exc, DownloadCancelled)
        return None

    def select_format(self, ctx: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """yt-dlp's ``format`` callable: exactly one progressive format, or a recorded refusal."""
        try:
            yield choose_format(list(ctx["formats"]), policy=self.policy, max_bytes=self.max_bytes)
        except VChatError as exc:
            self.refuse(exc, DownloadCancelled)

    def ydl_params(self) -> dict[str, Any]:
        return {
            "logger": _YtdlpLog(),
            "quiet": True,
            "no_warnings": False,  # warnings go to our debug log
            "noprogress": True,
            "color": "no_color",
            "noplaylist": True,
            "playlistend": 1,  # a playlist resolves to its first video, without resolving the rest
            "format": self.select_format,
            "match_filter": self.match_filter,
            "check_formats": False,  # checking means test downloads, possibly via ffmpeg outside the guard
            "enable_file_urls": False,
            "cachedir": False,
            "proxy": "",  # no proxies: not from the environment either (the guard must see the real peer)
            "geo_bypass": False,  # no fake X-Forwarded-For
            "socket_timeout": SOCKET_TIMEOUT_S,
            "extractor_retries": 1,
        }


class _YtdlpLog:
    """yt-dlp's ``logger`` param: everything to our debug log (errors are translated, not printed)."""

    def debug(self, msg: str) -> None:
        logger.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        logger.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        logger.debug("yt-dlp warning: %s", msg)

    def error(self, msg: str) -> None:
        logger.debug("yt-dlp error: %s", msg)


class GuardedRH(RequestHandler):  # type: ignore[misc]
    """A yt-dlp request handler sending over httpx2 through the guard, checking every redirect hop itself."""

    _SUPPORTED_URL_SCHEMES = ("http", "https")
    _SUPPORTED_PROXY_SCHEMES = ()  # any proxy makes the request unsupported
    _SUPPORTED_FEATURES = ()

    def __init__(self, *, session: _Session, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._session = session
        self._client = guarded_sync_client(session.policy)

    def close(self) -> None:
        self._client.close()

    def _check_extensions(self, extensions: dict[str, Any]) -> None:
        super()._check_extensions(extensions)
        for name in ("cookiejar", "timeout", "legacy_ssl", "keep_header_casing"):
            extensions.pop(name, None)

    def _send(self, request: Request) -> Response:
        headers = httpx2.Headers(self._get_headers(request))
        headers.setdefault("Accept-Encoding", "gzip, deflate")  # httpx2 decodes it; yt-dlp then sees plain bytes
        # yt-dlp's jar: cookies the page sets (on any hop) are kept for its later requests, as yt-dlp expects.
        self._client.cookies = self._get_cookiejar(request)
        timeout = self._calculate_timeout(request)
        try:
            outgoing = self._client.build_request(request.method, request.url, headers=headers,
                                                  content=_body_bytes(request.data), timeout=timeout)
        except httpx2.InvalidURL as exc:
            self._session.refuse(UrlNotAllowed(f"not a valid URL: {exc}"), RequestError)

        def before(hop: httpx2.Request) -> None:
            hop.extensions = {**hop.extensions, "timeout": httpx2.Timeout(min(timeout, self._session.time_left()))
                              .as_dict()}

        try:
            answer = send_following_sync(self._client, outgoing, self._session.policy, self._session.max_redirects,
                                         before)
        except VChatError as exc:  # the guard, the redirect limit (said in plain words, naming the limit)
            self._session.refuse(exc, RequestError)
        except httpx2.HTTPError as exc:
            refusal = next((link for link in _chain(exc) if isinstance(link, UrlNotAllowed)), None)
            if refusal is not None:
                self._session.refuse(refusal, RequestError)
            raise TransportError(cause=exc) from exc
        response = _GuardedResponse(answer, str(answer.url), self._session)
        if not 200 <= answer.status_code < 300:
            raise HTTPError(response)
        return response


class _GuardedResponse(Response):  # type: ignore[misc]
    """yt-dlp's view of a streamed httpx2 response; reads are capped and watch the deadline."""

    def __init__(self, answer: httpx2.Response, url: str, session: _Session) -> None:
        super().__init__(fp=io.BufferedReader(_Body(answer, session)), url=url, headers=_Pairs(answer.headers),
                         status=answer.status_code, reason=answer.reason_phrase or None)


class _Pairs:
    """Headers as yt-dlp's ``Response`` reads them (``.items()``), keeping repeated ones (``Set-Cookie``) apart."""

    def __init__(self, headers: httpx2.Headers) -> None:
        self._pairs = headers.multi_items()

    def items(self) -> list[tuple[str, str]]:
        return self._pairs


class _Body(io.RawIOBase):
    def __init__(self, answer: httpx2.Response, session: _Session) -> None:
        self._answer = answer
        self._chunks = answer.iter_bytes()
        self._session = session
        self._pending = b""
        self._total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            self._session.time_left()
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
            self._total += len(self._pending)
            if self._total > MAX_BODY_BYTES:
                self._session.refuse(MediaFetchFailed(
                    f"the page is larger than {MAX_BODY_BYTES // 2**20} MiB; send a direct video link"),
                    TransportError)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self._answer.close()
        super().close()


class _GuardedYoutubeDL(yt_dlp.YoutubeDL):  # type: ignore[misc]
    """A YoutubeDL whose request director holds ``GuardedRH`` and nothing else."""

    def __init__(self, session: _Session) -> None:
        self._session = session  # before super().__init__, in case it sends anything
        super().__init__(session.ydl_params())

    @functools.cached_property
    def _request_director(self) -> Any:
        return self.build_request_director([functools.partial(GuardedRH, session=self._session)])


def _resolve(url: str, session: _Session) -> PageMedia:
    ydl = _GuardedYoutubeDL(session)
    try:
        info = ydl.extract_info(url, download=False)
    except Exception as exc:
        if session.refusal is not None:
            raise session.refusal from exc
        raise _translate(exc) from exc
    finally:
        ydl.close()
    if session.refusal is not None:  # refused somewhere an extractor swallowed the abort: still refused
        raise session.refusal
    return _page_media(info, session.policy)


def _page_media(info: dict[str, Any], policy: HostPolicy) -> PageMedia:
    if info.get("_type") in ("playlist", "multi_video"):
        entries = [entry for entry in info.get("entries") or () if entry]
        if not entries:
            raise MediaRejected("no video was found at this URL")
        info = entries[0]
    media_url = info.get("url")
    if not isinstance(media_url, str) or not media_url:
        raise MediaRejected("no downloadable video was found on this page")
    check_url(media_url, policy)
    headers = info.get("http_headers") or {}
    duration = info.get("duration")
    filesize = info.get("filesize")
    title = info.get("title")
    extractor = str(info.get("extractor_key") or info.get("extractor") or "Generic")
    return PageMedia(
        media_url=media_url,
        http_headers={name: str(headers[name]) for name in _SAFE_MEDIA_HEADERS
                      if headers.get(name) and not re.search(r"[\r\n]", str(headers[name]))},
        duration_s=float(duration) if isinstance(duration, int | float) else None,
        title=title if isinstance(title, str) else None,
        extractor=extractor,
        webpage_url=str(info.get("webpage_url") or media_url),
        is_youtube=extractor == "Youtube",
        filesize=filesize if isinstance(filesize, int) else None,
    )


def _translate(exc: BaseException) -> VChatError:
    """yt-dlp's error (and the chain behind it) as one of ours, in plain words."""
    links = list(_chain(exc))
    for link in links:
        if isinstance(link, VChatError):
            return link
    for link in links:
        if isinstance(link, HTTPError):
            return MediaFetchFailed(f"the page's server answered HTTP {link.status}")
    for link in links:
        if isinstance(link, UnsupportedError):
            return NotAVideo("no video was found at this URL")  # e.g. an HTML page: 415, as for any non-video
    for link in links:
        if isinstance(link, TransportError):
            if any(isinstance(inner, httpx2.TimeoutException) for inner in links):
                return MediaFetchFailed("the page's server did not answer in time")
            return MediaFetchFailed("the page's server could not be reached or broke the connection")
    for link in links:
        if isinstance(link, ExtractorError) and link.expected:
            return MediaRejected(_plain(link.orig_msg))
    logger.warning("yt-dlp failed unexpectedly", exc_info=exc)
    return MediaFetchFailed("could not read a video from this page")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything behind it: ``__cause__``/``__context__`` and yt-dlp's ``cause``/``exc_info``."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo and len(seen) < 50:
        link = todo.pop(0)
        if not isinstance(link, BaseException) or id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        exc_info = getattr(link, "exc_info", None)
        todo += [link.__cause__, link.__context__, getattr(link, "cause", None),
                 exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None,
                 *getattr(link, "unexpected_errors", ())]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_INTERNAL = re.compile(r"--[a-z]|yt-dlp|youtube-dl|bug report|https?://", re.IGNORECASE)


def _plain(message: str) -> str:
    """An extractor's own explanation without colour codes, CLI advice, links or internals."""
    text = _ANSI.sub("", message).strip()
    text = re.sub(r"^(?:ERROR:\s*)?(?:\[[^\]]+\]\s*)?(?:[\w-]+:\s+)?", "", text)
    text = re.sub(r"\s*\(caused by .*$", "", text, flags=re.DOTALL)
    sentences = [part for part in re.split(r"(?<=[.!?])\s+", text) if part and not _INTERNAL.search(part)]
    plain = " ".join(sentences).strip()
    return plain[:300] if plain else "the video on this page is not available"


def _body_bytes(data: object) -> bytes | None:
    if data is None or isinstance(data, bytes):
        return data
    if hasattr(data, "read"):
        return bytes(data.read())
    return b"".join(cast(Iterable[bytes], data))
