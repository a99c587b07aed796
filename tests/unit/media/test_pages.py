"""Resolving video pages with yt-dlp through the guard: real yt-dlp, real loopback origins, no internet.

Every test runs under an audit hook that refuses socket connects to non-loopback addresses and lookups of real DNS
names, so a broken guard fails the test instead of sending anything off the host.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import MediaFetchFailed, MediaRejected, MediaTimeout, MediaTooLarge, NotAVideo, UrlNotAllowed
from gateway.media.guard import HostPolicy
from gateway.media.pages import (
    STREAMING_ONLY,
    PageMedia,
    check_info,
    choose_format,
    looks_like_page,
    resolve_page,
    youtube_watch_url,
)
from gateway.media.pages.errors import translate
from tests.support.clips import make_clip
from tests.support.origin import Origin

LOOPBACK = HostPolicy.from_settings(["127.0.0.1"])
CAPS: dict[str, Any] = {"max_duration_s": 3600.0, "max_bytes": 2**30, "timeout_s": 8.0, "max_redirects": 3}

@pytest.fixture(scope="module")
def shared_origin() -> Iterator[Origin]:
    server = Origin().start()
    yield server
    server.stop()


@pytest.fixture
def origin(shared_origin: Origin) -> Origin:
    """The conftest origin, but one server for the module: stopping one takes 0.5 s, which adds up."""
    shared_origin.routes.clear()
    shared_origin.hits.clear()
    return shared_origin


@pytest.fixture(scope="module")
def shared_origin2() -> Iterator[Origin]:
    server = Origin(host="127.0.0.2").start()
    yield server
    server.stop()


@pytest.fixture
def origin2(shared_origin2: Origin) -> Origin:
    """A second origin, on 127.0.0.2, so 127.0.0.1 can stay forbidden while this one is allow-listed."""
    shared_origin2.routes.clear()
    shared_origin2.hits.clear()
    return shared_origin2


@pytest.fixture(scope="module")
def clip() -> bytes:
    return make_clip(2.0, size="160x120", fps=10).read_bytes()


def page(body: str, head: str = "") -> str:
    return f"<!DOCTYPE html><html><head><title>A test page</title>{head}</head><body>{body}</body></html>"


async def resolve(url: str, policy: HostPolicy = LOOPBACK, **caps: Any) -> PageMedia:
    return await resolve_page(url, policy=policy, **{**CAPS, **caps})


# --- pages that resolve ----------------------------------------------------------------------------


@pytest.mark.parametrize("video", [
    '<video src="/clip.mp4" controls></video>',
    '<video controls><source src="/clip.mp4" type="video/mp4"></video>',
])
async def test_a_video_element_resolves_to_the_absolute_clip_url(origin: Origin, clip: bytes, video: str) -> None:
    origin.file("/clip.mp4", clip)
    media = await resolve(origin.page("/watch", page(video)))
    assert media.media_url == origin.url("/clip.mp4")
    assert media.extractor == "HTML5MediaEmbed"  # the key yt-dlp's generic extractor gives <video> elements
    assert media.is_youtube is False
    assert media.webpage_url == origin.url("/watch")
    assert set(media.http_headers) <= {"User-Agent", "Referer", "Origin", "Accept", "Accept-Language"}
    assert origin.hits["/watch"] == 1
    assert origin.hits["/clip.mp4"] == 0  # resolved, not downloaded


async def test_yt_dlps_messages_reach_the_debug_log_without_query_strings(
        origin: Origin, clip: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.media.pages")
    origin.file("/clip.mp4", clip)
    watch = origin.page("/watch", page('<video src="/clip.mp4?sig=FORMAT-SECRET" controls></video>'))
    media = await resolve(watch + "?token=PAGE-SECRET")
    assert media.media_url.endswith("?sig=FORMAT-SECRET")  # the URL itself is kept for the download
    assert f"yt-dlp: [generic] Extracting URL: {watch}\n" in caplog.text
    assert "yt-dlp: [generic] watch: Downloading webpage" in caplog.text
    assert "SECRET" not in caplog.text


def test_an_unexpected_yt_dlp_failure_is_logged_with_its_traceback_and_no_query_string(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.media.pages")
    try:
        raise RuntimeError("could not parse https://cdn.example/v.mp4?Signature=TRACE-SECRET")
    except RuntimeError as exc:
        error = translate(exc)
    assert error.message == "could not read a video from this page"
    assert "yt-dlp failed unexpectedly" in caplog.text
    assert "Traceback (most recent call last)" in caplog.text and "raise RuntimeError" in caplog.text
    assert "could not parse https://cdn.example/v.mp4" in caplog.text
    assert "SECRET" not in caplog.text


def json_ld(content_url: str, duration: str) -> str:
    video = {"@context": "https://schema.org", "@type": "VideoObject", "name": "Clip", "duration": duration,
             "contentUrl": content_url, "uploadDate": "2024-01-01"}
    return f'<script type="application/ld+json">{json.dumps(video)}</script>'


async def test_a_duration_the_page_announces_is_reported(origin: Origin, clip: bytes) -> None:
    clip_url = origin.file("/clip.mp4", clip)
    media = await resolve(origin.page("/watch", page("", head=json_ld(clip_url, "PT2S"))))
    assert media.media_url == origin.url("/clip.mp4")
    assert media.duration_s == 2.0


async def test_a_video_longer_than_the_cap_is_refused(origin: Origin, clip: bytes) -> None:
    clip_url = origin.file("/clip.mp4", clip)
    with pytest.raises(MediaTooLarge) as refused:
        await resolve(origin.page("/watch", page("", head=json_ld(clip_url, "PT2H"))), max_duration_s=600.0)
    assert refused.value.code == "video_too_long"
    assert "7200 s" in refused.value.message


async def test_a_url_serving_a_video_itself_resolves_to_itself(origin: Origin, clip: bytes) -> None:
    url = origin.file("/v/123", clip)
    media = await resolve(url)
    assert media.media_url == url
    assert origin.hits["/v/123"] == 1  # yt-dlp's generic extractor sniffs the first bytes, then lets go


@pytest.mark.parametrize(("info", "refusal"), [
    ({"is_live": True}, MediaRejected),
    ({"live_status": "is_upcoming"}, MediaRejected),
    ({"duration": 601}, MediaTooLarge),
])
def test_live_streams_and_videos_over_the_duration_cap_are_refused(
    info: dict[str, Any], refusal: type[Exception]
) -> None:
    with pytest.raises(refusal):
        check_info(info, max_duration_s=600)


def test_a_finished_live_stream_and_a_video_of_unknown_length_pass() -> None:
    check_info({"live_status": "was_live", "duration": 600}, max_duration_s=600)
    check_info({"title": "x"}, max_duration_s=600)


# --- SSRF ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("src", [
    "http://10.0.0.1/x.mp4",
    "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1/x.m3u8",  # a manifest yt-dlp would fetch itself: refused by the handler, before any connect
    "http://[::ffff:10.0.0.1]/x.mp4",
])
async def test_a_video_on_a_private_address_is_refused_without_contacting_it(origin: Origin, src: str) -> None:
    with pytest.raises(UrlNotAllowed):
        await resolve(origin.page("/watch", page(f'<video src="{src}"></video>')))


@pytest.mark.parametrize("target_host", ["127.0.0.1", "localhost"])  # refused by check_url / at connect time
async def test_a_redirect_to_a_loopback_address_not_allow_listed_is_refused_before_it_is_followed(
    origin: Origin, origin2: Origin, clip: bytes, target_host: str
) -> None:
    origin.file("/clip.mp4", clip)
    origin.page("/watch", page('<video src="/clip.mp4"></video>'))
    start = origin2.redirect("/r", f"http://{target_host}:{origin.port}/watch")
    with pytest.raises(UrlNotAllowed, match=f"^{target_host} (is|resolves to) a non-public address"):
        await resolve(start, policy=HostPolicy.from_settings(["127.0.0.2"]))
    assert origin2.hits["/r"] == 1
    assert sum(origin.hits.values()) == 0


async def test_a_page_redirect_chain_within_the_limit_is_followed(origin: Origin, clip: bytes) -> None:
    origin.file("/clip.mp4", clip)
    origin.page("/watch", page('<video src="/clip.mp4"></video>'))
    for hop in range(3):
        origin.redirect(f"/r{hop}", f"/r{hop + 1}" if hop < 2 else "/watch")
    media = await resolve(origin.url("/r0"), max_redirects=3)
    assert media.media_url == origin.url("/clip.mp4")


async def test_a_page_redirect_chain_past_the_limit_says_which_limit(origin: Origin) -> None:
    """Not "the page's server answered HTTP 302": the redirect limit was reached, and it is named."""
    for hop in range(5):
        origin.redirect(f"/r{hop}", f"/r{hop + 1}")
    with pytest.raises(MediaFetchFailed, match=r"redirected more than 3 times: the redirect limit was reached "
                                               r"\(VCHAT_MEDIA_MAX_REDIRECTS=3\)") as caught:
        await resolve(origin.url("/r0"), max_redirects=3)
    assert caught.value.code == "too_many_redirects"
    assert "HTTP 302" not in caught.value.message
    assert [origin.hits[f"/r{hop}"] for hop in range(5)] == [1, 1, 1, 1, 0]


async def test_a_file_url_is_refused(origin: Origin) -> None:
    with pytest.raises(UrlNotAllowed):
        await resolve("file:///etc/passwd")


# --- pages that do not resolve -----------------------------------------------------------------------

HLS = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXTINF:2.0,
seg0.ts
#EXTINF:2.0,
seg1.ts
#EXT-X-ENDLIST
"""


async def test_a_page_offering_only_hls_is_refused_as_not_progressive(origin: Origin) -> None:
    origin.file("/live.m3u8", HLS.encode(), "application/vnd.apple.mpegurl")
    with pytest.raises(MediaRejected) as refused:
        await resolve(origin.page("/watch", page('<video src="/live.m3u8"></video>')))
    assert type(refused.value) is MediaRejected
    assert refused.value.message == STREAMING_ONLY
    assert origin.hits["/live.m3u8"] == 1
    assert origin.hits["/seg0.ts"] == 0


async def test_a_missing_page_is_a_fetch_failure(origin: Origin) -> None:
    with pytest.raises(MediaFetchFailed) as failed:
        await resolve(origin.url("/nowhere"))
    assert "404" in failed.value.message
    assert "yt-dlp" not in failed.value.message and "\x1b" not in failed.value.message


async def test_a_page_without_a_video_is_refused(origin: Origin) -> None:
    with pytest.raises(NotAVideo) as refused:
        await resolve(origin.page("/about", page("<p>No video here.</p>")))
    assert refused.value.message == "no video was found at this URL"
    assert refused.value.status_code == 415  # as the README promises for an HTML page


@pytest.mark.timing
async def test_a_page_slower_than_the_timeout_is_abandoned(origin: Origin) -> None:
    release = threading.Event()
    origin.page("/slow", page('<video src="/clip.mp4"></video>'))
    origin.routes["/slow"].before = lambda: release.wait(5)
    try:
        with pytest.raises(MediaTimeout):
            await resolve(origin.url("/slow"), timeout_s=0.5)
    finally:
        release.set()


# --- choosing one format -----------------------------------------------------------------------------


def fmt(name: str, *, height: int | None = None, acodec: str | None = "aac", protocol: str = "https",
        filesize: int | None = None) -> dict[str, Any]:
    return {"format_id": name, "url": f"https://cdn.example/{name}", "protocol": protocol, "height": height,
            "vcodec": "avc1", "acodec": acodec, "filesize": filesize}


def chosen(*formats: dict[str, Any], max_bytes: int = 2**30) -> str:
    return str(choose_format(list(formats), policy=HostPolicy(), max_bytes=max_bytes)["format_id"])


def test_a_file_with_audio_beats_a_sharper_video_only_file() -> None:
    assert chosen(fmt("360", height=360), fmt("1080v", height=1080, acodec="none")) == "360"


def test_the_best_file_at_or_under_1080p_wins_and_a_taller_one_only_when_nothing_else_exists() -> None:
    assert chosen(fmt("480", height=480), fmt("1080", height=1080), fmt("2160", height=2160)) == "1080"
    assert chosen(fmt("2160", height=2160), fmt("1440", height=1440)) == "1440"


def test_a_file_announced_over_the_byte_cap_is_skipped() -> None:
    assert chosen(fmt("small", height=360, filesize=10), fmt("big", height=720, filesize=10_000), max_bytes=100) == (
        "small")
    with pytest.raises(MediaTooLarge):
        chosen(fmt("big", height=720, filesize=10_000), max_bytes=100)


def test_streaming_formats_never_qualify() -> None:
    streams = [fmt(name, height=720, protocol=name) for name in ("m3u8_native", "http_dash_segments", "rtmp", "f4m")]
    with pytest.raises(MediaRejected, match="HLS/DASH"):
        chosen(*streams)
    assert chosen(*streams, fmt("video-only", height=720, acodec="none")) == "video-only"


# --- which URLs are pages ----------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "is_page"), [
    ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", True),
    ("https://youtu.be/dQw4w9WgXcQ", True),
    ("https://m.youtube.com/shorts/abc", True),
    ("https://vimeo.com/76979871", True),
    ("https://www.dailymotion.com/video/x7tgad0", True),
    ("https://clips.twitch.tv/SomeClip", True),
    ("https://www.tiktok.com/@user/video/123", True),
    ("https://x.com/user/status/1", True),
    ("https://twitter.com/user/status/1", True),
    ("https://www.facebook.com/watch/?v=1", True),
    ("https://www.instagram.com/reel/abc/", True),
    ("https://www.bilibili.com/video/BV1xx", True),
    ("https://example.com/videos/42", True),
    ("https://example.com/watch?file=clip.mp4", True),
    ("https://example.com/stream/index.m3u8", True),
    ("https://example.com/clip.mp4", False),
    ("https://example.com/a/b/CLIP.MOV?sig=1#t=3", False),
    ("http://example.com/x.webm", False),
    ("http://example.com/x.mkv", False),
    ("http://example.com/x.m4v", False),
    ("http://example.com/x.avi", False),
    ("http://example.com/x.ts", False),
    ("http://example.com/x.ogv", False),
    ("http://example.com/my%20clip.mp4", False),
    ("ftp://example.com/video", False),
])
def test_looks_like_page(url: str, is_page: bool) -> None:
    assert looks_like_page(url) is is_page


def test_the_clip_fixture_is_a_real_video(clip: bytes) -> None:
    assert clip[4:8] == b"ftyp"
    assert Path(make_clip(2.0, size="160x120", fps=10)).stat().st_size == len(clip)


WATCH = "https://www.youtube.com/watch?v=jNQXAC9IVRw"


@pytest.mark.parametrize(("url", "expected"), [
    ("https://www.youtube.com/watch?v=jNQXAC9IVRw", WATCH),
    ("http://youtube.com/watch?feature=share&v=jNQXAC9IVRw&t=12s", WATCH),
    ("https://m.youtube.com/watch?v=jNQXAC9IVRw", WATCH),
    ("https://music.youtube.com/watch?v=jNQXAC9IVRw&list=RDx", WATCH),
    ("https://youtu.be/jNQXAC9IVRw?si=abc", WATCH),
    ("https://www.youtube.com/shorts/jNQXAC9IVRw", WATCH),
    ("https://www.youtube-nocookie.com/embed/jNQXAC9IVRw", WATCH),
    ("https://www.youtube.com/live/jNQXAC9IVRw?feature=share", WATCH),
    ("https://www.youtube.com/playlist?list=PL123", None),
    ("https://www.youtube.com/@somechannel", None),
    ("https://www.youtube.com/watch?v=short", None),
    ("https://www.youtube.com/watch?v=jNQXAC9IVRw%22%3E", None),
    ("https://youtube.com.evil.example/watch?v=jNQXAC9IVRw", None),
    ("https://evil.example/youtu.be/jNQXAC9IVRw", None),
    ("ftp://youtu.be/jNQXAC9IVRw", None),
    ("https://vimeo.com/76979871", None),
])
def test_youtube_links_are_recognised_and_made_canonical(url: str, expected: str | None) -> None:
    assert youtube_watch_url(url) == expected
