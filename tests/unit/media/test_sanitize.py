"""gateway.media.sanitize with real ffmpeg: copy when possible, else re-encode; no metadata or temp files leak."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from gateway.errors import MediaTimeout, NotAVideo
from gateway.media.probe import ProbeLimits, probe
from gateway.media.sanitize import sanitize
from tests.support.clips import make_clip

LIMITS = ProbeLimits(max_duration_s=3600.0, max_side=7680, timeout_s=60.0)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def ffmpeg(*args: str) -> str:
    return subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=300,
                          capture_output=True, text=True).stdout


def ffprobe_json(path: Path) -> str:
    return subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-show_chapters",
                           "-of", "json", str(path)], check=True, capture_output=True, text=True).stdout


def read(path: Path) -> bytes:
    return path.read_bytes()


def video_packets_md5(path: Path) -> str:
    return ffmpeg("-i", str(path), "-map", "0:v", "-c", "copy", "-f", "streamhash", "-hash", "md5", "-")


def top_level_boxes(path: Path) -> list[str]:
    data, boxes, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        if size == 1:
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        boxes.append(data[offset + 4:offset + 8].decode("latin-1"))
        offset += size if size >= 8 else len(data)
    return boxes


def live_processes_mentioning(token: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if token.encode() in cmdline and state != "Z":
            found.append(int(name))
    return found


@pytest.fixture
def hostile_mkv(tmp_path: Path) -> Path:
    """H.264 + AAC (copyable) carrying a title, stream tags, a chapter, a subtitle and an attachment."""
    (tmp_path / "meta.txt").write_text(";FFMETADATA1\ntitle=secret-meta\n[CHAPTER]\nTIMEBASE=1/1000\n"
                                       "START=0\nEND=1000\ntitle=secret-chapter\n")
    (tmp_path / "subs.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nsecret subtitle\n")
    (tmp_path / "attached.txt").write_text("secret attachment\n")
    out = tmp_path / "hostile.mkv"
    ffmpeg("-i", str(make_clip(2.0, "320x240", 30)), "-i", str(tmp_path / "subs.srt"),
           "-f", "ffmetadata", "-i", str(tmp_path / "meta.txt"), "-attach", str(tmp_path / "attached.txt"),
           "-map", "0", "-map", "1", "-map_chapters", "2", "-c", "copy", "-c:s", "srt",
           "-metadata", "title=secret-title", "-metadata:s:v:0", "title=secret-stream",
           "-metadata:s:t", "mimetype=text/plain", str(out))
    assert b"secret" in out.read_bytes()
    return out


async def test_copy_path_keeps_h264_and_audio_and_drops_everything_else(hostile_mkv: Path, tmp_path: Path) -> None:
    found = await probe(hostile_mkv, LIMITS)
    dest = tmp_path / "clean.mp4"
    written = await sanitize(hostile_mkv, found, dest, timeout_s=60)

    assert (written.vcodec, written.pix_fmt, written.acodec) == ("h264", "yuv420p", "aac")
    assert written == await probe(dest, LIMITS)
    assert abs(written.duration_s - 2.0) < 0.05
    # Stream copy: the H.264 packets are bit for bit the input's.
    assert video_packets_md5(dest) == video_packets_md5(hostile_mkv)
    info = json.loads(ffprobe_json(dest))
    assert [s["codec_type"] for s in info["streams"]] == ["video", "audio"]
    assert info["chapters"] == []
    assert "secret" not in json.dumps(info) and b"secret" not in read(dest)
    assert "encoder" not in info["format"].get("tags", {})
    boxes = top_level_boxes(dest)
    assert boxes.index("moov") < boxes.index("mdat")  # faststart: the index comes before the media data
    assert names(tmp_path) == ["attached.txt", "clean.mp4", "hostile.mkv", "meta.txt", "subs.srt"]


@pytest.mark.parametrize(("clip_args", "size", "acodec"), [
    ((2.0, "321x241", 25, "libvpx-vp9", True, "webm", ("-deadline", "realtime", "-cpu-used", "8")), (320, 240), "aac"),
    ((2.0, "320x240", 25, "mpeg4", False, "avi", ()), (320, 240), None),
    ((2.0, "320x240", 25, "libx265", True, "mp4", ("-preset", "ultrafast", "-x265-params", "log-level=error")),
     (320, 240), "aac"),
], ids=["vp9-webm-odd-size", "mpeg4-avi", "hevc-mp4"])
async def test_other_codecs_are_reencoded_to_h264(
    clip_args: tuple[float, str, int, str, bool, str, tuple[str, ...]], size: tuple[int, int], acodec: str | None,
    tmp_path: Path,
) -> None:
    seconds, frame, fps, vcodec, audio, container, extra = clip_args
    src = make_clip(seconds, frame, fps, vcodec=vcodec, audio=audio, container=container, extra=extra)
    found = await probe(src, LIMITS)
    assert found.vcodec != "h264"
    written = await sanitize(src, found, tmp_path / "out.mp4", timeout_s=120)
    assert (written.vcodec, written.pix_fmt, (written.width, written.height)) == ("h264", "yuv420p", size)
    assert written.acodec == acodec and written.frame_count == found.frame_count
    assert written.format_name.startswith("mov,mp4")
    assert names(tmp_path) == ["out.mp4"]


def faststart_cut(tmp: Path) -> Path:
    """The first 30 % of a faststart MP4 (index first): whole.mp4 and cut.mp4 in tmp."""
    whole, cut = tmp / "whole.mp4", tmp / "cut.mp4"
    ffmpeg("-i", str(make_clip(6.0, "320x240", 30)), "-c", "copy", "-movflags", "+faststart", str(whole))
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 3 // 10])
    return cut


async def test_truncated_faststart_file_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    # With the index up front, ffprobe believes the whole duration; only reading the data shows the cut.
    cut = faststart_cut(tmp_path)
    found = await probe(cut, LIMITS)
    assert found.duration_s == 6.0
    with pytest.raises(NotAVideo, match="truncated") as caught:
        await sanitize(cut, found, tmp_path / "out.mp4", timeout_s=60)
    assert caught.value.code == "not_a_video"
    assert names(tmp_path) == ["cut.mp4", "whole.mp4"]


@pytest.mark.timing
async def test_timeout_kills_ffmpeg_and_removes_the_temp_file(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
                                                               ) -> None:
    found = await probe(make_clip(20.0, "640x360", 30, vcodec="mpeg4", container="mkv"), LIMITS)
    # Held, not outpaced: the input is a FIFO nobody writes to, so ffmpeg blocks opening it and the 0.5 s timeout
    # fires however fast or loaded the machine is.
    src = tmp_path_factory.mktemp("held") / "held.mkv"
    os.mkfifo(src)
    dest = tmp_path / "slow-timeout.mp4"
    with pytest.raises(MediaTimeout) as caught:
        await sanitize(src, found, dest, timeout_s=0.5)
    assert caught.value.status_code == 408
    assert live_processes_mentioning(dest.name) == []
    assert names(tmp_path) == []


async def test_cancellation_kills_ffmpeg_and_removes_the_temp_file(tmp_path: Path) -> None:
    src = make_clip(20.0, "640x360", 30, vcodec="mpeg4", container="mkv")
    found = await probe(src, LIMITS)
    dest = tmp_path / "slow-cancel.mp4"
    task = asyncio.create_task(sanitize(src, found, dest, timeout_s=120))
    for _ in range(500):
        if any(name.endswith(".tmp") for name in names(tmp_path)):
            break
        await asyncio.sleep(0.01)
    assert live_processes_mentioning(dest.name), "ffmpeg should be running"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert live_processes_mentioning(dest.name) == []
    assert names(tmp_path) == []
