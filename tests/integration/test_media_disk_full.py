"""The media folder on a small filesystem: a video that does not fit is a 507 naming the folder's setting, leaves
nothing behind, and the next small video works; the cache evicts what it can before giving up.

Each case runs on a tmpfs the test mounts (where the machine allows; else ENOSPC injected at the write seams, see
``tests/support/small_disk.py``) and once more with the injection, so the fallback is known to read the same.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.conftest import GatewayFactory, LiveGateway
from tests.support.clips import make_clip
from tests.support.media_api import media_entries, tool_pids
from tests.support.origin import Origin
from tests.support.small_disk import SmallDisk, small_disk
from vchat_settings import Settings

MiB = 2**20
MEDIA_DIR_VAR = f"{Settings.model_config.get('env_prefix', '')}media_dir".upper()

DiskFactory = Callable[[int], SmallDisk]
DiskGateway = Callable[[int], tuple[LiveGateway, SmallDisk]]


@pytest.fixture(params=["as-the-machine-allows", "injected"])
def disks(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DiskFactory]:
    """Small disks for the test: mounted as the machine allows, or injected; each gone at the end of the test."""
    with ExitStack() as stack:
        def make(size: int) -> SmallDisk:
            return stack.enter_context(small_disk(tmp_path / f"disk{size}", size, monkeypatch,
                                                  inject=request.param == "injected"))
        yield make


@pytest.fixture
def disk_gateway(disks: DiskFactory, gateway_factory: GatewayFactory) -> DiskGateway:
    """A gateway whose media folder is a small disk (set up after the disks, so it is stopped before they go)."""

    def start(size: int) -> tuple[LiveGateway, SmallDisk]:
        disk = disks(size)
        return gateway_factory(media_dir=disk.path), disk

    return start


def clip_bytes(seconds: float, size: str = "640x480", fps: int = 30) -> bytes:
    return make_clip(seconds, size, fps).read_bytes()


def small_clip() -> bytes:
    return clip_bytes(1.0, "160x120", 10)


def add_url(gw: LiveGateway, url: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/videos", json={"url": url}, timeout=120)


def upload(gw: LiveGateway, data: bytes) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/files", files={"file": ("clip.mp4", data)}, timeout=120)


def insufficient_storage(response: httpx.Response) -> str:
    """Assert the 507 envelope (type and code insufficient_storage, Retry-After); return its message."""
    assert response.status_code == 507, response.text
    error = response.json()["error"]
    assert error["type"] == "insufficient_storage" and error["code"] == "insufficient_storage", error
    assert int(response.headers["Retry-After"]) > 0
    message = error["message"]
    assert MEDIA_DIR_VAR == "VCHAT_MEDIA_DIR" and MEDIA_DIR_VAR in message, message
    assert "damaged" not in message and "codec" not in message and "/" not in message, message
    return str(message)


def assert_nothing_partial(disk: SmallDisk) -> None:
    """No temp file, half-built object or URL entry, and no ffmpeg still writing."""
    entries = media_entries(disk.path)
    assert entries["tmp"] == [] and entries["objects"] == [] and entries["urls"] == [], entries
    assert not [name for name in disk.files() if name.endswith((".part", ".tmp")) or "upload-" in name]
    assert tool_pids() == []


def warned_about(caplog: pytest.LogCaptureFixture, disk: SmallDisk) -> None:
    """A warning naming the filesystem that was full (the tmpfs itself, or the injected folder's)."""
    full = [r for r in caplog.records if r.name == "gateway.media.space" and r.levelno == logging.WARNING]
    assert full, [r.getMessage() for r in caplog.records]
    mount = str(disk.path.resolve()) if disk.mode == "tmpfs" else None
    for record in full:
        assert "no space left on device" in record.getMessage()
        assert mount is None or getattr(record, "filesystem", None) == mount, record.__dict__


def small_video_works(gw: LiveGateway, origin: Origin) -> None:
    response = add_url(gw, origin.file("/small.mp4", small_clip()))
    assert response.status_code == 200, response.text


# --- 507 where the video cannot fit ---------------------------------------------------------------------------


def test_a_download_that_does_not_fit(disk_gateway: DiskGateway, origin: Origin,
                                      caplog: pytest.LogCaptureFixture) -> None:
    gw, disk = disk_gateway(1 * MiB)
    big = clip_bytes(12.0)  # 1.4 MiB
    assert len(big) > disk.size
    insufficient_storage(add_url(gw, origin.file("/big.mp4", big)))
    warned_about(caplog, disk)
    assert_nothing_partial(disk)
    small_video_works(gw, origin)


def test_an_upload_that_does_not_fit(disk_gateway: DiskGateway, origin: Origin,
                                     caplog: pytest.LogCaptureFixture) -> None:
    gw, disk = disk_gateway(1 * MiB)
    insufficient_storage(upload(gw, clip_bytes(12.0)))
    warned_about(caplog, disk)
    assert_nothing_partial(disk)
    assert media_entries(disk.path)["files"] == []
    response = upload(gw, small_clip())
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("via", ["url", "upload"])
def test_a_download_that_fits_whose_sanitized_copy_does_not(disk_gateway: DiskGateway, origin: Origin,
                                                           caplog: pytest.LogCaptureFixture, via: str) -> None:
    gw, disk = disk_gateway(1 * MiB)
    video = clip_bytes(5.0)  # 0.6 MiB: the download fits, a second copy beside it does not
    assert len(video) < disk.size < 2 * len(video)
    response = add_url(gw, origin.file("/clip.mp4", video)) if via == "url" else upload(gw, video)
    insufficient_storage(response)
    warned_about(caplog, disk)
    assert_nothing_partial(disk)
    small_video_works(gw, origin)


# --- the cache makes room first -------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["url", "upload"])
def test_the_cache_evicts_least_recently_used_videos_to_make_room(disk_gateway: DiskGateway, origin: Origin,
                                                                  via: str) -> None:
    gw, disk = disk_gateway(1126 * 1024)
    first, second, third = clip_bytes(3.0, fps=25), clip_bytes(3.0), clip_bytes(4.0)
    # Each cached video fits beside the next one's download and copy; the third only once both are gone: its
    # download alone runs out of room (while the first is still there), then its copy (while the second is).
    assert len(first) + 2 * len(second) < disk.size < len(first) + len(second) + len(third)
    assert len(second) + 2 * len(third) > disk.size > 2 * len(third)
    cached = [add_url(gw, origin.file(f"/{n}.mp4", data)) for n, data in (("1", first), ("2", second))]
    assert [r.status_code for r in cached] == [200, 200], [r.text for r in cached]
    response = add_url(gw, origin.file("/3.mp4", third)) if via == "url" else upload(gw, third)
    assert response.status_code == 200, response.text
    left = media_entries(disk.path)
    assert len(left["objects"]) == 1 and left["objects"][0] not in {r.json()["id"] for r in cached}, left
    assert left["tmp"] == []
    if via == "url":
        assert left["objects"] == [response.json()["id"]]


def test_the_fixture_mounts_a_tmpfs_where_the_machine_allows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The control for "as-the-machine-allows": as root the disk is a real filesystem of that size, not an injection.
    with small_disk(tmp_path / "disk", MiB, monkeypatch) as disk:
        if os.geteuid() == 0:
            assert disk.mode == "tmpfs" and os.path.ismount(disk.path)
            stats = os.statvfs(disk.path)
            assert stats.f_blocks * stats.f_frsize == MiB
        else:
            assert disk.mode == "injected"
