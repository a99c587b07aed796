"""Which of a page's caption tracks to fetch: the page's own before automatic ones, languages in the configured order,
only formats the gateway reads (WebVTT, SubRip)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import UrlNotAllowed
from gateway.media.guard import HostPolicy, check_url

READABLE = ("vtt", "srt")  # in order of preference; yt-dlp also lists json3, srv1-3, ttml…


@dataclass(frozen=True, slots=True)
class CaptionTrack:
    """One caption file a page offers: where it is, its format and language, whether the site made it by ASR."""

    url: str
    ext: str
    language: str
    automatic: bool


def choose_captions(info: dict[str, Any], languages: Sequence[str], policy: HostPolicy) -> CaptionTrack | None:
    """The caption track to fetch from yt-dlp's info (``subtitles``, then ``automatic_captions``), or None.

    A language setting "en" takes "en" first, then any "en-…" (en-US, en-orig); tracks on addresses the guard
    refuses are skipped (the fetch checks every hop again).
    """
    for automatic, key in ((False, "subtitles"), (True, "automatic_captions")):
        tracks = info.get(key)
        if not isinstance(tracks, dict):
            continue
        for wanted in languages:
            for language in _matching(tracks, wanted):
                found = _readable(tracks[language], policy)
                if found is not None:
                    return CaptionTrack(found[0], found[1], language, automatic)
    return None


def _matching(tracks: dict[str, Any], wanted: str) -> list[str]:
    exact = [name for name in tracks if isinstance(name, str) and name.lower() == wanted.lower()]
    prefixed = sorted(name for name in tracks
                      if isinstance(name, str) and name.lower().startswith(wanted.lower() + "-"))
    return exact + prefixed


def _readable(formats: object, policy: HostPolicy) -> tuple[str, str] | None:
    if not isinstance(formats, list):
        return None
    for ext in READABLE:
        for entry in formats:
            url = entry.get("url") if isinstance(entry, dict) else None
            if isinstance(url, str) and str(entry.get("ext") or "").lower() == ext:
                try:
                    check_url(url, policy)
                except UrlNotAllowed:
                    continue
                return url, ext
    return None
