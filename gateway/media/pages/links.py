"""Which links are video pages (resolved with yt-dlp), which are files, which are worth treating as the video,
and the canonical watch URL of a YouTube link: string rules only, nothing fetched."""

from __future__ import annotations

import re
import urllib.parse

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

