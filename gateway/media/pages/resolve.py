"""``resolve_page``: a page URL to the one progressive file it offers (``PageMedia``), yt-dlp running in a worker
thread under a deadline it cannot outlive by much."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import MediaRejected, MediaTimeout
from gateway.media.guard import HostPolicy, check_url
from gateway.media.pages.captions import CaptionTrack, choose_captions
from gateway.media.pages.errors import translate
from gateway.media.pages.handler import GuardedYoutubeDL
from gateway.media.pages.session import Session

_SAFE_MEDIA_HEADERS = ("User-Agent", "Referer", "Origin", "Accept", "Accept-Language")


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
    captions: CaptionTrack | None = None  # the caption track chosen (fetched by the caller, as the media is)


async def resolve_page(
    url: str, *, policy: HostPolicy, max_duration_s: float, max_bytes: int, timeout_s: float, max_redirects: int,
    caption_languages: Sequence[str] = (),
) -> PageMedia:
    """Resolve a page URL to one progressive media URL without downloading it (yt-dlp in a worker thread);
    each request yt-dlp makes follows at most ``max_redirects`` redirects. A caption track in one of
    ``caption_languages`` is chosen too (``captions.choose_captions``)."""
    check_url(url, policy)
    session = Session(policy, time.monotonic() + timeout_s, max_duration_s=max_duration_s, max_bytes=max_bytes,
                       max_redirects=max_redirects)
    try:
        return await asyncio.wait_for(asyncio.to_thread(_resolve, url, session, caption_languages), timeout_s)
    except TimeoutError:
        raise MediaTimeout(f"resolving the video page took longer than {timeout_s:g} s") from None
    finally:
        session.cancelled.set()  # a still-running worker refuses its next request or read


def _resolve(url: str, session: Session, caption_languages: Sequence[str]) -> PageMedia:
    ydl = GuardedYoutubeDL(session)
    try:
        info = ydl.extract_info(url, download=False)
    except Exception as exc:
        if session.refusal is not None:
            raise session.refusal from exc
        raise translate(exc) from exc
    finally:
        ydl.close()
    if session.refusal is not None:  # refused somewhere an extractor swallowed the abort: still refused
        raise session.refusal
    return _page_media(info, session.policy, caption_languages)


def _page_media(info: dict[str, Any], policy: HostPolicy, caption_languages: Sequence[str] = ()) -> PageMedia:
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
        captions=choose_captions(info, caption_languages, policy),
    )

