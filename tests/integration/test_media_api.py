"""/v1/videos over real HTTP, real ffmpeg and real yt-dlp: every way in becomes the same sanitized, playable asset."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import httpx
import pytest

from tests.conftest import GatewayFactory, LiveGateway
from tests.support.media_api import error_of, media_entries, probe_file, tagged_clip
from tests.support.netaudit import NetAudit
from tests.support.origin import Origin

PAGE = """<!doctype html><html><head><title>A clip</title></head>
<body><h1>Watch</h1><video controls src="{src}"></video></body></html>"""


@pytest.fixture(scope="module")
def clip() -> bytes:
    return tagged_clip()


@pytest.fixture
def gw(gateway_factory: GatewayFactory) -> LiveGateway:
    return gateway_factory()


def add(gw: LiveGateway, **body: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/videos", json=body, timeout=60)


def check_asset(body: dict[str, object], clip: bytes, source: str, host: str | None) -> None:
    digest = hashlib.sha256(clip).hexdigest()
    assert body["id"] == digest and body["object"] == "video"
    assert body["content_url"] == f"/v1/videos/{digest}/content"
    facts = body["facts"]
    assert isinstance(facts, dict)
    assert facts["duration_s"] == pytest.approx(3.0, abs=0.1)
    assert (facts["fps"], facts["width"], facts["height"]) == (10.0, 160, 120)
    assert (facts["codec"], facts["has_audio"], facts["audio_codec"]) == ("h264", True, "aac")
    assert (facts["source"], facts["source_host"]) == (source, host)


def test_direct_mp4_url(gw: LiveGateway, origin: Origin, clip: bytes, net: NetAudit, tmp_path: Path) -> None:
    response = add(gw, url=origin.file("/clip.mp4", clip) + "?token=abc")
    assert response.status_code == 200, response.text
    body = response.json()
    check_asset(body, clip, "url", "127.0.0.1")
    again = httpx.get(f"{gw.url}/v1/videos/{body['id']}")
    assert again.status_code == 200 and again.json() == body
    # Playable, and sanitized: H.264 + AAC in MP4, the source's metadata gone.
    content = httpx.get(f"{gw.url}{body['content_url']}")
    assert content.status_code == 200
    assert content.headers["content-type"] == "video/mp4"
    (tmp_path / "got.mp4").write_bytes(content.content)
    info = probe_file(tmp_path / "got.mp4")
    fmt, streams = info["format"], info["streams"]
    assert isinstance(fmt, dict) and isinstance(streams, list)
    assert "mp4" in fmt["format_name"]
    assert [s["codec_name"] for s in streams] == ["h264", "aac"]
    assert "secret-title" not in content.text and "secret-title" in clip.decode("latin-1")
    assert not fmt.get("tags", {}).get("title")
    assert {host for host, _ in net.connects} == {"127.0.0.1"}


def test_content_supports_range_requests(gw: LiveGateway, origin: Origin, clip: bytes) -> None:
    video_id = add(gw, url=origin.file("/clip.mp4", clip)).json()["id"]
    url = f"{gw.url}/v1/videos/{video_id}/content"
    whole = httpx.get(url).content
    head = httpx.get(url, headers={"Range": "bytes=0-99"})
    assert head.status_code == 206
    assert head.headers["content-range"] == f"bytes 0-99/{len(whole)}"
    assert head.content == whole[:100]
    tail = httpx.get(url, headers={"Range": f"bytes={len(whole) - 10}-"})
    assert tail.status_code == 206 and tail.content == whole[-10:]
    assert whole[4:8] == b"ftyp"


def test_html_page_with_a_video_element(gw: LiveGateway, origin: Origin, clip: bytes) -> None:
    origin.file("/media/clip.mp4", clip)
    page = origin.page("/watch/42", PAGE.format(src="/media/clip.mp4"))
    response = add(gw, url=page)
    assert response.status_code == 200, response.text
    check_asset(response.json(), clip, "page", "127.0.0.1")
    assert (origin.hits["/watch/42"], origin.hits["/media/clip.mp4"]) == (1, 1)


def test_data_url(gw: LiveGateway, clip: bytes) -> None:
    response = add(gw, data_url="data:video/mp4;base64," + base64.b64encode(clip).decode())
    assert response.status_code == 200, response.text
    check_asset(response.json(), clip, "data_url", None)


def test_upload_then_file_id(gw: LiveGateway, clip: bytes) -> None:
    uploaded = httpx.post(f"{gw.url}/v1/files", files={"file": ("holiday.mp4", clip, "video/mp4")},
                          data={"purpose": "vision"}, timeout=60)
    assert uploaded.status_code == 200, uploaded.text
    file_id = uploaded.json()["id"]
    response = add(gw, file_id=file_id)
    assert response.status_code == 200, response.text
    check_asset(response.json(), clip, "upload", None)


def test_unknown_video_ids_are_404(gw: LiveGateway) -> None:
    for video_id in ("0" * 64, "F" * 64, "not-an-id", "video.mp4"):
        for suffix in ("", "/content"):
            response = httpx.get(f"{gw.url}/v1/videos/{video_id}{suffix}")
            assert "No cached video" in error_of(response, 404, "video_not_found")


def test_exactly_one_source_is_required(gw: LiveGateway, origin: Origin) -> None:
    for body in ({}, {"url": origin.url("/a.mp4"), "file_id": "file-x"}, {"url": ""}):
        response = httpx.post(f"{gw.url}/v1/videos", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_value"
    assert origin.hits == {}
    assert media_entries(gw.settings.media_dir)["objects"] == []
