"""Hostile inputs to /v1/videos and /v1/files: each is a clear 4xx envelope, and leaves nothing on disk or running.

SSRF cases run the origin on 127.0.0.2 with only that address allowed, so loopback 127.0.0.1 is as forbidden as
any private address; the suite-wide ``net`` audit records every connect (and fails a test reaching past loopback),
so "never contacted" is observed, not assumed.
"""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.conftest import GatewayFactory, LiveGateway
from tests.support.clips import make_clip
from tests.support.media_api import assert_nothing_left, error_of
from tests.support.netaudit import NetAudit
from tests.support.origin import Origin

PAGE = "<!doctype html><html><head><title>t</title></head><body><video src=\"{src}\"></video></body></html>"
HLS = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
PRIVATE = "http://10.0.0.1/internal/video.mp4"


@pytest.fixture(scope="module")
def clip() -> bytes:
    return make_clip(3.0, "160x120", 10).read_bytes()


def add(gw: LiveGateway, **body: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/videos", json=body, timeout=60)


def refused(gw: LiveGateway, response: httpx.Response, status: int, code: str) -> str:
    """The refusal's message, after checking the envelope and that the cache is as empty as before."""
    message = error_of(response, status, code)
    assert_nothing_left(gw.settings.media_dir)
    return message


def only_contacted(net: NetAudit, gw: LiveGateway, *origins: Origin) -> None:
    allowed = {("127.0.0.1", gw.port)} | {(o.host, o.port) for o in origins}
    assert set(net.connects) <= allowed, net.connects


# --- SSRF: redirects and embedded media pointing inside ------------------------------------------------


@pytest.fixture
def strict(gateway_factory: GatewayFactory) -> LiveGateway:
    """A gateway that may fetch only from 127.0.0.2 (origin2)."""
    return gateway_factory(media_allowed_hosts="127.0.0.2")


@pytest.mark.parametrize("path", ["/go.mp4", "/watch"], ids=["direct", "page"])
@pytest.mark.parametrize("target", ["loopback", METADATA, PRIVATE], ids=["127.0.0.1", "metadata", "10.0.0.1"])
def test_redirect_inside_is_refused(strict: LiveGateway, origin: Origin, origin2: Origin, clip: bytes,
                                    net: NetAudit, path: str, target: str) -> None:
    location = origin.file("/clip.mp4", clip) if target == "loopback" else target
    response = add(strict, url=origin2.redirect(path, location))
    message = refused(strict, response, 400, "url_not_allowed")
    assert "non-public address" in message
    assert origin2.hits[path] == 1
    assert origin.hits["/clip.mp4"] == 0
    only_contacted(net, strict, origin2)


@pytest.mark.parametrize("target", ["loopback", METADATA, PRIVATE], ids=["127.0.0.1", "metadata", "10.0.0.1"])
def test_page_whose_video_is_inside_is_refused(strict: LiveGateway, origin: Origin, origin2: Origin, clip: bytes,
                                               net: NetAudit, target: str) -> None:
    src = origin.file("/clip.mp4", clip) if target == "loopback" else target
    response = add(strict, url=origin2.page("/watch", PAGE.format(src=src)))
    assert "non-public address" in refused(strict, response, 400, "url_not_allowed")
    assert origin.hits["/clip.mp4"] == 0
    only_contacted(net, strict, origin2)


def test_allow_list_is_what_lets_the_origin_through(strict: LiveGateway, origin2: Origin, clip: bytes) -> None:
    # The control for the SSRF cases: the same gateway fetches from its allowed origin.
    origin2.file("/clip.mp4", clip)
    response = add(strict, url=origin2.page("/watch", PAGE.format(src="/clip.mp4")))
    assert response.status_code == 200, response.text
    assert add(strict, url=origin2.url("/clip.mp4")).json()["id"] == response.json()["id"]


# --- HLS playlists pointing at local files ------------------------------------------------------------


def test_hls_playlist_as_a_direct_url(gateway_factory: GatewayFactory, origin: Origin) -> None:
    gw = gateway_factory()
    response = add(gw, url=origin.file("/live.m3u8", HLS, "application/vnd.apple.mpegurl"))
    assert "direct video link" in refused(gw, response, 400, "invalid_video")


def test_hls_playlist_named_mp4(gateway_factory: GatewayFactory, origin: Origin) -> None:
    gw = gateway_factory()
    response = add(gw, url=origin.file("/clip.mp4", HLS))
    assert "HLS playlist" in refused(gw, response, 415, "not_a_video")


@pytest.mark.parametrize("name", ["live.m3u8", "clip.mp4"])
def test_hls_playlist_inside_a_page(gateway_factory: GatewayFactory, origin: Origin, name: str) -> None:
    gw = gateway_factory()
    origin.file(f"/{name}", HLS, "application/vnd.apple.mpegurl")
    response = add(gw, url=origin.page("/watch", PAGE.format(src=f"/{name}")))
    if name.endswith(".m3u8"):
        assert "streaming formats" in refused(gw, response, 400, "invalid_video")
    else:
        assert "HLS playlist" in refused(gw, response, 415, "not_a_video")


# --- files that are not (whole) videos ------------------------------------------------------------------


def test_text_file_named_mp4(gateway_factory: GatewayFactory, origin: Origin) -> None:
    gw = gateway_factory()
    response = add(gw, url=origin.file("/clip.mp4", b"hello, this is not a video\n" * 100))
    assert "text file" in refused(gw, response, 415, "not_a_video")


@pytest.mark.parametrize("faststart", [False, True], ids=["index-at-end", "index-first"])
def test_truncated_mp4(gateway_factory: GatewayFactory, origin: Origin, faststart: bool) -> None:
    gw = gateway_factory()
    whole = make_clip(3.0, "160x120", 10, extra=("-movflags", "+faststart") if faststart else ()).read_bytes()
    assert (whole.find(b"moov") < whole.find(b"mdat")) is faststart
    response = add(gw, url=origin.file("/clip.mp4", whole[: len(whole) // 2]))
    assert "truncated" in refused(gw, response, 415, "not_a_video")


# --- caps -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("announced", [False, True], ids=["no-length", "content-length"])
def test_body_over_the_cap(gateway_factory: GatewayFactory, origin: Origin, clip: bytes, announced: bool) -> None:
    gw = gateway_factory(media_max_bytes=20_000)
    response = add(gw, url=origin.file("/clip.mp4", clip, send_length=announced, chunk=4096))
    assert "20000" in refused(gw, response, 413, "video_too_large")


@pytest.mark.timing
def test_server_trickling_slower_than_the_idle_timeout(gateway_factory: GatewayFactory, origin: Origin,
                                                       clip: bytes) -> None:
    gw = gateway_factory(media_idle_timeout_s=0.3)
    response = add(gw, url=origin.file("/clip.mp4", clip, chunk=1024, delay_s=1.0))
    assert "sent nothing for 0.3 s" in refused(gw, response, 408, "video_fetch_timeout")


def test_video_longer_than_the_cap(gateway_factory: GatewayFactory, origin: Origin, clip: bytes) -> None:
    gw = gateway_factory(media_max_duration_s=2)
    response = add(gw, url=origin.file("/clip.mp4", clip))
    assert "3 s long; the limit is 2 s" in refused(gw, response, 413, "video_too_long")


def test_frames_larger_than_the_cap(gateway_factory: GatewayFactory, origin: Origin, clip: bytes) -> None:
    gw = gateway_factory(media_max_side=128)
    response = add(gw, url=origin.file("/clip.mp4", clip))
    assert "160x120" in refused(gw, response, 413, "frame_too_large")


# --- URLs that are not http(s) ------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/clip.mp4", "javascript:alert(1)//.mp4"])
def test_non_http_urls(gateway_factory: GatewayFactory, net: NetAudit, url: str) -> None:
    gw = gateway_factory()
    response = add(gw, url=url)
    message = refused(gw, response, 400, "url_not_allowed")
    assert "only http:// and https:// URLs" in message and url.split(":")[0] in message
    assert response.json()["error"]["param"] == "url"
    only_contacted(net, gw)


# --- data URLs ----------------------------------------------------------------------------------------


def test_data_url_not_base64(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    for data_url in ("data:video/mp4,AAAA", "data:video/mp4;base64,not*base64!", "data:,", "data:video/mp4;base64,"):
        message = refused(gw, add(gw, data_url=data_url), 400, "invalid_data_url")
        assert "data URL" in message


def test_data_url_over_the_cap(gateway_factory: GatewayFactory, clip: bytes) -> None:
    gw = gateway_factory(media_max_bytes=20_000)
    response = add(gw, data_url="data:video/mp4;base64," + base64.b64encode(clip).decode())
    assert "20000" in refused(gw, response, 413, "video_too_large")


def test_data_url_with_an_image_type(gateway_factory: GatewayFactory, clip: bytes) -> None:
    gw = gateway_factory()
    response = add(gw, data_url="data:image/png;base64," + base64.b64encode(clip).decode())
    assert "image/png" in refused(gw, response, 415, "not_a_video")


# --- multipart uploads --------------------------------------------------------------------------------


def upload(gw: LiveGateway, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/files", timeout=60, **kwargs)  # type: ignore[arg-type]


def raw_upload(gw: LiveGateway, body: bytes) -> httpx.Response:
    return upload(gw, content=body, headers={"Content-Type": "multipart/form-data; boundary=XyZ"})


FILE_HEAD = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'


def test_upload_without_a_file_field(gateway_factory: GatewayFactory, clip: bytes) -> None:
    gw = gateway_factory()
    form = b'--XyZ\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nvision\r\n--XyZ--\r\n'
    assert "exactly one file" in refused(gw, raw_upload(gw, form), 400, "invalid_upload")
    assert "exactly one file" in refused(gw, upload(gw, files={"video": ("a.mp4", clip)}), 400, "invalid_upload")


def test_upload_with_two_files(gateway_factory: GatewayFactory, clip: bytes) -> None:
    gw = gateway_factory()
    for second in (b"tiny", clip):
        response = upload(gw, files=[("file", ("a.mp4", clip)), ("file", ("b.mp4", second))])
        assert "exactly one file" in refused(gw, response, 400, "invalid_upload")


def test_upload_of_an_empty_file(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    assert "empty" in refused(gw, upload(gw, files={"file": ("a.mp4", b"")}), 400, "invalid_upload")


def test_upload_over_the_cap(gateway_factory: GatewayFactory, clip: bytes) -> None:
    gw = gateway_factory(media_max_bytes=20_000)
    response = upload(gw, files={"file": ("a.mp4", clip)})
    assert "20000" in refused(gw, response, 413, "video_too_large")


def test_upload_that_is_not_multipart(gateway_factory: GatewayFactory, clip: bytes) -> None:
    gw = gateway_factory()
    for kwargs in ({"json": {"file": "x"}}, {"content": clip, "headers": {"Content-Type": "video/mp4"}},
                   {"content": clip, "headers": {"Content-Type": "multipart/form-data"}}):
        assert "multipart/form-data" in refused(gw, upload(gw, **kwargs), 400, "invalid_upload")


def test_upload_malformed_or_cut_short(gateway_factory: GatewayFactory, clip: bytes) -> None:
    gw = gateway_factory()
    assert "malformed" in refused(gw, raw_upload(gw, b"this is no multipart body at all"), 400, "invalid_upload")
    assert "malformed" in refused(gw, raw_upload(gw, b"--XyZ\r\nno colon here\r\n\r\nx\r\n--XyZ--\r\n"),
                                  400, "invalid_upload")
    # A complete-looking file with no closing boundary: the client stopped early; the video must not be used.
    assert "closing boundary" in refused(gw, raw_upload(gw, FILE_HEAD + clip), 400, "invalid_upload")


def test_upload_of_a_text_file(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    response = upload(gw, files={"file": ("notes.mp4", b"just some notes\n" * 50, "video/mp4")})
    assert "text file" in refused(gw, response, 415, "not_a_video")


def test_refusals_leave_no_files_behind_in_a_used_cache(gateway_factory: GatewayFactory, origin: Origin,
                                                        clip: bytes) -> None:
    # The other tests start from an empty cache; here a refusal must not disturb what is already cached.
    gw = gateway_factory(media_max_duration_s=5)
    good = add(gw, url=origin.file("/good.mp4", clip)).json()["id"]
    long_clip = make_clip(6.0, "160x120", 10).read_bytes()
    error_of(add(gw, url=origin.file("/long.mp4", long_clip)), 413, "video_too_long")
    media = gw.settings.media_dir
    assert sorted(p.name for p in (media / "objects").iterdir()) == [good]
    assert len(list((media / "urls").iterdir())) == 1
    assert list((media / "tmp").iterdir()) == []
