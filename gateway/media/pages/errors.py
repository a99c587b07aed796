"""yt-dlp's errors (and the chain behind each) as the gateway's, in plain words."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterator

import httpx2
from yt_dlp.networking.exceptions import HTTPError, TransportError  # type: ignore[import-untyped]
from yt_dlp.utils import ExtractorError, UnsupportedError  # type: ignore[import-untyped]

from gateway.errors import MediaFetchFailed, MediaRejected, NotAVideo, VChatError
from gateway.media.redirects import redact_urls

logger = logging.getLogger("gateway.media.pages")  # the package's one logger, named as before its split


def translate(exc: BaseException) -> VChatError:
    """yt-dlp's error (and the chain behind it) as one of ours, in plain words."""
    links = list(chain(exc))
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
    # The traceback's messages may quote the page's or a format's URL whole: cut as every other logged URL is.
    logger.warning("yt-dlp failed unexpectedly\n%s", redact_urls("".join(traceback.format_exception(exc)).rstrip()))
    return MediaFetchFailed("could not read a video from this page")


def chain(exc: BaseException) -> Iterator[BaseException]:
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

