"""Which of a page's formats the gateway fetches (one progressive file), and which pages it refuses outright
(live streams, videos over the duration limit): rules over yt-dlp's info dicts, nothing fetched."""

from __future__ import annotations

from typing import Any

from yt_dlp.utils import determine_protocol  # type: ignore[import-untyped]

from gateway.errors import MediaRejected, MediaTooLarge, UrlNotAllowed
from gateway.media.guard import HostPolicy, check_url

MAX_HEIGHT = 1080  # preferred, not required: a taller file is taken when nothing at or under it exists

STREAMING_ONLY = "this page only offers streaming formats (HLS/DASH); send a direct video link"


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
