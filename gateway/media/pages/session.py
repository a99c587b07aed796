"""One resolution's shared state (``Session``): the guard policy, the deadline, the caps, the first refusal, and
the yt-dlp parameters built from them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, NoReturn

from yt_dlp.networking.exceptions import RequestError  # type: ignore[import-untyped]
from yt_dlp.utils import DownloadCancelled  # type: ignore[import-untyped]

from gateway.errors import MediaTimeout, VChatError
from gateway.media.guard import HostPolicy
from gateway.media.pages.formats import check_info, choose_format
from gateway.media.redirects import redact_urls

logger = logging.getLogger("gateway.media.pages")  # the package's one logger, named as before its split

SOCKET_TIMEOUT_S = 10.0  # per request; bounds how long the worker thread can outlive resolve_page's deadline


class Session:
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
    """yt-dlp's ``logger`` param: everything to our debug log (errors are translated, not printed), with every URL
    its messages quote cut to scheme, host and path: a page's or a format's query string may be a credential."""

    def debug(self, msg: str) -> None:
        logger.debug("yt-dlp: %s", redact_urls(msg))

    def info(self, msg: str) -> None:
        logger.debug("yt-dlp: %s", redact_urls(msg))

    def warning(self, msg: str) -> None:
        logger.debug("yt-dlp warning: %s", redact_urls(msg))

    def error(self, msg: str) -> None:
        logger.debug("yt-dlp error: %s", redact_urls(msg))
