"""gateway.media.space, and ffmpeg's writers on a small disk: a full disk is InsufficientStorage (507, naming the
media folder's setting), never "damaged", and leaves no partial file."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import InsufficientStorage
from gateway.media import framecache, space
from gateway.media.ffmpeg import ToolResult
from gateway.media.framecache import FrameCache
from gateway.media.probe import ProbeLimits, probe
from gateway.media.sanitize import sanitize
from gateway.media.space import Spool, out_of_space, tool_ran_out
from gateway.metrics import Metrics
from tests.support.clips import make_clip
from tests.support.small_disk import SmallDisk, small_disk

KiB = 1024
LIMITS = ProbeLimits(max_duration_s=3600.0, max_side=7680, timeout_s=60.0)
FULL = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(params=["as-the-machine-allows", "injected"])
def disk(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallDisk]:
    """A 256 KiB disk: a tmpfs where the machine allows, and (every time) the injected fallback."""
    with small_disk(tmp_path / "disk", 256 * KiB, monkeypatch, inject=request.param == "injected") as made:
        yield made


class FakeFile:
    """Writes into ``data``, at most ``room`` bytes before the next write fails with ENOSPC (short writes too)."""

    def __init__(self, room: int) -> None:
        self.data = bytearray()
        self.room = room

    def write(self, view: memoryview) -> int:
        if self.room <= 0:
            raise FULL
        taken = bytes(view[:self.room])
        self.data += taken
        self.room -= len(taken)
        return len(taken)


def spool(out: FakeFile, rooms: list[int], *, freed: bool = True, expected: int = 1000) -> Spool:
    async def make_room(needed: int) -> bool:
        rooms.append(needed)
        out.room = 10**6 if freed else 0
        return freed

    return Spool(out, Path("/media/tmp/x.part"), expected, make_room)  # type: ignore[arg-type]


# --- the spool streamed bodies are written to ---------------------------------------------------------------


async def test_a_full_disk_asks_for_room_once_and_goes_on_from_the_first_unwritten_byte() -> None:
    out, rooms = FakeFile(room=300), []
    body = bytes(range(256)) * 4
    writer = spool(out, rooms, expected=len(body))
    await writer.append(body[:200])
    await writer.append(body[200:])
    assert bytes(out.data) == body
    assert rooms == [len(body) - 300]  # what the body could still need when the disk filled up
    assert writer.size == len(body)


async def test_a_second_full_disk_is_insufficient_storage(caplog: pytest.LogCaptureFixture) -> None:
    out, rooms = FakeFile(room=100), []
    writer = spool(out, rooms)
    await writer.append(b"x" * 200)
    out.room = 0
    with pytest.raises(InsufficientStorage) as caught:
        await writer.append(b"y")
    assert rooms == [900]
    assert caught.value.status_code == 507 and caught.value.code == "insufficient_storage"
    assert "VCHAT_MEDIA_DIR" in caught.value.message
    assert any(r.levelno == logging.WARNING and "no space left" in r.getMessage() for r in caplog.records)


async def test_nothing_to_evict_is_insufficient_storage_at_once() -> None:
    out, rooms = FakeFile(room=0), []
    with pytest.raises(InsufficientStorage):
        await spool(out, rooms, freed=False).append(b"x")
    assert rooms == [1000]


async def test_other_write_errors_pass_through() -> None:
    class Broken(FakeFile):
        def write(self, view: memoryview) -> int:
            raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        await spool(Broken(0), []).append(b"x")


# --- recognising a full disk --------------------------------------------------------------------------------


def test_the_507_names_the_setting_and_says_when_to_retry(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    error = out_of_space(tmp_path / "media" / "tmp" / "x")
    assert error.status_code == 507 and error.error_type == "insufficient_storage"
    assert error.body()["error"]["code"] == "insufficient_storage"
    assert "VCHAT_MEDIA_DIR" in error.message and str(tmp_path) not in error.message
    assert int(error.headers()["Retry-After"]) > 0
    [record] = [r for r in caplog.records if r.name == "gateway.media.space"]
    assert record.levelno == logging.WARNING and record.__dict__["filesystem"].startswith("/")


def test_full_disk_refused_translates_only_enospc(tmp_path: Path) -> None:
    with pytest.raises(InsufficientStorage), space.full_disk_refused(tmp_path):
        raise FULL
    with pytest.raises(PermissionError), space.full_disk_refused(tmp_path):
        raise PermissionError(errno.EACCES, "Permission denied")


def test_a_tool_ran_out_by_its_words_whatever_its_status(tmp_path: Path) -> None:
    said = "Error writing trailer of file:/x.mp4: No space left on device"
    assert tool_ran_out(ToolResult(b"", said, 0), tmp_path)
    assert tool_ran_out(ToolResult(b"", said, 1), tmp_path)
    # A failure on a disk with room is the video's (or ffmpeg's), not the disk's.
    assert not tool_ran_out(ToolResult(b"", "Invalid data found when processing input", 1), tmp_path)


async def test_a_tool_that_failed_silently_on_a_full_disk_ran_out(disk: SmallDisk) -> None:
    if disk.mode == "tmpfs":
        _fill(disk.path)
    else:
        (disk.path / "filler").write_bytes(b"\0" * disk.size)
    assert tool_ran_out(ToolResult(b"", "", 1), disk.path / "out.mp4")
    assert not tool_ran_out(ToolResult(b"", "", 0), disk.path / "out.mp4")


def _fill(folder: Path) -> None:
    with (folder / "filler").open("wb") as out, pytest.raises(OSError) as caught:
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    assert caught.value.errno == errno.ENOSPC


# --- ffmpeg's writers on a small disk ------------------------------------------------------------------------


async def test_a_sanitized_copy_that_does_not_fit(disk: SmallDisk, tmp_path: Path) -> None:
    src = make_clip(3.0, "640x480", 30)  # about 350 KiB: more than the disk
    found = await probe(src, LIMITS)
    with pytest.raises(InsufficientStorage):
        await sanitize(src, found, disk.path / "video.mp4", timeout_s=60)
    assert disk.files() == []


async def test_frames_that_do_not_fit(disk: SmallDisk) -> None:
    video = disk.path / "obj" / "video.mp4"
    video.parent.mkdir()
    video.write_bytes(make_clip(2.0, "160x120", 30).read_bytes())  # 60 frames, ~40 KiB
    found = await probe(video, LIMITS)
    frames = FrameCache(max_frames=4096, workers=2, timeout_s=60, metrics=Metrics())
    with pytest.raises(InsufficientStorage):  # 60 frames of 640x480 take far more than the disk's 256 KiB
        await frames.frames(video, found, list(range(60)), width=640, height=480)
    assert not [name for name in disk.files() if ".extract-" in name or name.endswith(".tmp")]


async def test_a_frame_index_that_does_not_fit_is_kept_in_memory(disk: SmallDisk,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    video = disk.path / "obj" / "video.mp4"
    video.parent.mkdir()
    video.write_bytes(make_clip(1.0, "160x120", 10).read_bytes())
    found = await probe(video, LIMITS)
    if disk.mode == "tmpfs":
        _fill(disk.path)
    else:  # the index is JSON written in place, not through an injected seam: refuse it as the tmpfs would
        def full(*_: object) -> None:
            raise FULL

        monkeypatch.setattr(framecache, "_save_index", full)
    index = await FrameCache(max_frames=64, workers=1, timeout_s=60, metrics=Metrics()).index(video, found)
    assert len(index) == 10
    assert not (video.parent / "frames" / "index.json").exists()
