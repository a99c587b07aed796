"""The media cache seen through /v1/videos: one download per URL, content addressing, single flight, LRU, crashes."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import gateway.media.library as library_module
from gateway.media.probe import Probe
from tests.conftest import GatewayFactory, LiveGateway
from tests.support.clips import make_clip
from tests.support.media_api import error_of, media_entries
from tests.support.origin import Origin


@pytest.fixture(scope="module")
def clip() -> bytes:
    return make_clip(3.0, "160x120", 10).read_bytes()


def noisy_clip(n: int) -> bytes:
    """About 430 KB (noise does not compress), distinct bytes per ``n``: two fit in 1 MiB, three do not."""
    extra = ("-vf", "noise=alls=40:allf=t", "-crf", "23", "-metadata", f"comment=clip-{n}")
    return make_clip(2.0, "240x180", 10, audio=False, extra=extra).read_bytes()


def add(gw: LiveGateway, url: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/videos", json={"url": url}, timeout=60)


def test_same_url_twice_is_downloaded_once(gateway_factory: GatewayFactory, origin: Origin, clip: bytes) -> None:
    gw = gateway_factory()
    url = origin.file("/clip.mp4", clip)
    first = add(gw, url)
    second = add(gw, url)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert origin.hits["/clip.mp4"] == 1
    assert len(media_entries(gw.settings.media_dir)["urls"]) == 1


def test_same_page_twice_is_resolved_and_downloaded_once(gateway_factory: GatewayFactory, origin: Origin,
                                                         clip: bytes) -> None:
    gw = gateway_factory()
    origin.file("/v/clip.mp4", clip)
    page = origin.page("/watch", '<html><body><video src="/v/clip.mp4"></video></body></html>')
    assert add(gw, page).json() == add(gw, page).json()
    assert (origin.hits["/watch"], origin.hits["/v/clip.mp4"]) == (1, 1)


def test_same_bytes_from_two_urls_are_one_asset(gateway_factory: GatewayFactory, origin: Origin,
                                                clip: bytes) -> None:
    gw = gateway_factory()
    first = add(gw, origin.file("/a.mp4", clip)).json()
    second = add(gw, origin.file("/mirror/b.mp4", clip) + "?x=1").json()
    assert first["id"] == second["id"] == hashlib.sha256(clip).hexdigest()
    assert (origin.hits["/a.mp4"], origin.hits["/mirror/b.mp4"]) == (1, 1)
    entries = media_entries(gw.settings.media_dir)
    assert entries["objects"] == [first["id"]] and len(entries["urls"]) == 2


async def test_concurrent_requests_for_a_new_url_download_once(gateway_factory: GatewayFactory, origin: Origin,
                                                               clip: bytes) -> None:
    gw = gateway_factory()
    # 8 KiB every 0.1 s: the download takes about a second, so all eight requests arrive while it runs.
    url = origin.file("/slow.mp4", clip, chunk=8192, delay_s=0.1)
    async with httpx.AsyncClient(timeout=60) as http:
        started = time.monotonic()
        responses = await asyncio.gather(*(http.post(f"{gw.url}/v1/videos", json={"url": url}) for _ in range(8)))
        elapsed = time.monotonic() - started
    assert elapsed > 0.7  # they really waited on the one slow download
    assert [r.status_code for r in responses] == [200] * 8
    assert len({r.json()["id"] for r in responses}) == 1
    assert origin.hits["/slow.mp4"] == 1


def wait_for(condition: object, timeout_s: float = 5.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_lru_bound_evicts_the_least_recently_used(gateway_factory: GatewayFactory, origin: Origin) -> None:
    gw = gateway_factory(media_cache_bytes=2**20)
    media = gw.settings.media_dir
    ids = [add(gw, origin.file(f"/{i}.mp4", noisy_clip(i))).json()["id"] for i in range(2)]
    assert sorted(media_entries(media)["objects"]) == sorted(ids)  # two fit
    time.sleep(0.05)
    # Using the older one makes the newer one the least recently used.
    assert httpx.get(f"{gw.url}/v1/videos/{ids[0]}").status_code == 200
    ids.append(add(gw, origin.file("/2.mp4", noisy_clip(2))).json()["id"])
    wait_for(lambda: len(media_entries(media)["objects"]) == 2)
    assert sorted(media_entries(media)["objects"]) == sorted([ids[0], ids[2]])
    error_of(httpx.get(f"{gw.url}/v1/videos/{ids[1]}"), 404, "video_not_found")
    assert media_entries(media)["tmp"] == []
    # The evicted video's URL is fetched again rather than pointing at nothing.
    again = add(gw, origin.url("/1.mp4"))
    assert again.status_code == 200 and again.json()["id"] == ids[1]
    assert origin.hits["/1.mp4"] == 2


def test_junk_in_tmp_is_wiped_at_start(gateway_factory: GatewayFactory, tmp_path: Path, clip: bytes) -> None:
    media = tmp_path / "media"
    digest = hashlib.sha256(clip).hexdigest()
    half_built = media / "tmp" / "0f3a" / digest
    half_built.mkdir(parents=True)
    (half_built / "video.mp4").write_bytes(clip)
    (media / "tmp" / ".fetch-x.part").write_bytes(b"partial download")
    (media / "objects").mkdir()
    gw = gateway_factory()
    assert gw.settings.media_dir == media
    assert media_entries(media)["tmp"] == []
    error_of(httpx.get(f"{gw.url}/v1/videos/{digest}"), 404, "video_not_found")


@pytest.fixture
def paused_commit(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Hold every ingest after its sanitized video is written in tmp/, before it is committed to objects/."""
    written, release = threading.Event(), threading.Event()
    real = library_module.sanitize

    async def sanitize_then_wait(src: Path, found: Probe, dest: Path, *, timeout_s: float) -> Probe:
        result = await real(src, found, dest, timeout_s=timeout_s)
        written.set()
        await asyncio.to_thread(release.wait, 30)
        return result

    monkeypatch.setattr(library_module, "sanitize", sanitize_then_wait)
    yield written, release
    release.set()


def test_half_built_object_is_never_visible(gateway_factory: GatewayFactory, origin: Origin, clip: bytes,
                                            paused_commit: tuple[threading.Event, threading.Event]) -> None:
    written, release = paused_commit
    gw = gateway_factory()
    media = gw.settings.media_dir
    digest = hashlib.sha256(clip).hexdigest()
    url = origin.file("/clip.mp4", clip)
    with httpx.Client(timeout=60) as http:
        pending = threading.Thread(target=lambda: results.append(http.post(f"{gw.url}/v1/videos", json={"url": url})))
        results: list[httpx.Response] = []
        pending.start()
        assert written.wait(30)
        # The sanitized video exists, but only under tmp/.
        assert list((media / "tmp").rglob("video.mp4"))
        assert media_entries(media)["objects"] == []
        error_of(http.get(f"{gw.url}/v1/videos/{digest}"), 404, "video_not_found")
        error_of(http.get(f"{gw.url}/v1/videos/{digest}/content"), 404, "video_not_found")
        release.set()
        pending.join(30)
    assert results[0].status_code == 200 and results[0].json()["id"] == digest
    assert httpx.get(f"{gw.url}/v1/videos/{digest}").status_code == 200
    assert media_entries(media)["tmp"] == []
