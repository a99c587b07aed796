"""gateway.media.probe against real ffprobe: good videos probe right, a hostile corpus is refused by name."""

from __future__ import annotations

import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import MediaTooLarge, NotAVideo
from gateway.media import ffmpeg as ffmpeg_module
from gateway.media import probe as probe_module
from gateway.media.ffmpeg import INPUT_GUARDS, input_url, run_tool
from gateway.media.probe import Probe, ProbeLimits, is_video_container, looks_like, probe
from tests.support.clips import make_clip

LIMITS = ProbeLimits(max_duration_s=3600.0, max_side=7680, timeout_s=60.0)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


async def test_good_mp4_probes_right() -> None:
    clip = make_clip(2.0, "320x240", 30)
    assert await probe(clip, LIMITS) == Probe(
        duration_s=2.0, fps=30.0, width=320, height=240, rotation=0, vcodec="h264", pix_fmt="yuv420p",
        frame_count=60, has_audio=True, acodec="aac", format_name="mov,mp4,m4a,3gp,3g2,mj2",
        bytes=clip.stat().st_size, video_index=0, start_s=0.0,
    )


async def test_webm_frame_count_is_estimated() -> None:
    # Matroska stores no frame count; it is estimated from duration and frame rate.
    clip = make_clip(2.0, "320x240", 25, vcodec="libvpx-vp9", container="webm",
                     extra=("-deadline", "realtime", "-cpu-used", "8"))
    found = await probe(clip, LIMITS)
    assert (found.vcodec, found.acodec, found.format_name) == ("vp9", "vorbis", "matroska,webm")
    assert found.frame_count == 50 and found.fps == 25.0


async def test_rotation_is_reported_and_coded_size_kept(tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", str(make_clip(2.0, "320x240", 30)), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    found = await probe(rotated, LIMITS)
    assert (found.width, found.height) == (320, 240)
    assert found.rotation in (90, 270) and found.display_size == (240, 320)
    assert (found.video_info().width, found.video_info().height) == (240, 320)


# --- the hostile corpus: each item is refused with the right class, code and words -------------------

def _text(tmp: Path) -> Path:
    path = tmp / "movie.mp4"
    path.write_text("This is not a video, just some words in a file renamed to .mp4\n")
    return path


def _html(tmp: Path) -> Path:
    path = tmp / "watch.mp4"
    path.write_text("\n  <!DOCTYPE html>\n<html><head><title>Video</title></head><body><video src=x></body></html>")
    return path


def _playlist(tmp: Path) -> Path:
    path = tmp / "video.mp4"
    path.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
    return path


def _truncated(tmp: Path) -> Path:
    # make_clip writes the index (moov) at the end, so the first 30 % has no index at all.
    whole = make_clip(2.0, "320x240", 30).read_bytes()
    path = tmp / "truncated.mp4"
    path.write_bytes(whole[: len(whole) * 3 // 10])
    return path


def _audio_only(tmp: Path) -> Path:
    path = tmp / "song.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(path))
    return path


def _image(suffix: str, *codec: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / f"picture{suffix}"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", *codec, str(path))
        return path
    return make


def _zip(tmp: Path) -> Path:
    path = tmp / "videos.mp4"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(make_clip(2.0, "320x240", 30), "clip.mp4")
    return path


def _pdf(tmp: Path) -> Path:
    path = tmp / "paper.mp4"
    path.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    return path


def _wav(tmp: Path) -> Path:
    path = tmp / "sound.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", str(path))
    return path


def _mp3(tmp: Path) -> Path:
    path = tmp / "sound.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "libmp3lame", str(path))
    return path


def _empty(tmp: Path) -> Path:
    path = tmp / "empty.mp4"
    path.write_bytes(b"")
    return path


HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "text": (_text, "it looks like a text file"),
    "html": (_html, "it looks like an HTML page"),
    "hls-playlist": (_playlist, "it looks like an HLS playlist"),
    "truncated-mp4": (_truncated, "could not be read"),
    "audio-only-m4a": (_audio_only, "has no video stream; it is audio only"),
    "png": (_image(".png"), "it looks like a PNG image"),
    "jpeg": (_image(".jpg"), "it looks like a JPEG image"),
    "gif": (_image(".gif"), "it looks like a GIF image"),
    "one-frame-mjpeg-mkv": (_image(".mkv", "-c:v", "mjpeg"), "is a still image"),
    "one-frame-png-mp4": (_image(".mp4", "-c:v", "png"), "is a still image"),
    "zip": (_zip, "it looks like a ZIP archive"),
    "pdf": (_pdf, "it looks like a PDF document"),
    "wav": (_wav, "it looks like WAV audio"),
    "mp3": (_mp3, "it looks like MP3 audio"),
    "empty": (_empty, "it looks like an empty file"),
}


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_corpus_is_not_a_video(name: str, tmp_path: Path) -> None:
    make, words = HOSTILE[name]
    path = make(tmp_path)
    before = names(tmp_path)
    with pytest.raises(NotAVideo) as caught:
        await probe(path, LIMITS)
    assert (caught.value.status_code, caught.value.code) == (415, "not_a_video")
    assert words in caught.value.message
    assert str(tmp_path) not in caught.value.message  # no server paths in client-facing messages
    assert names(tmp_path) == before


async def test_playlist_never_reaches_ffprobe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    async def spy(args: list[str], **kwargs: float) -> ffmpeg_module.ToolResult:
        calls.append(args)
        return await run_tool(args, **kwargs)

    monkeypatch.setattr(probe_module, "run_tool", spy)
    with pytest.raises(NotAVideo, match="HLS playlist"):
        await probe(_playlist(tmp_path), LIMITS)
    assert calls == []


def _canary_playlist(tmp: Path) -> Path:
    """A playlist whose one segment is a real local video: what an attacker would point at a secret file."""
    segment = make_clip(2.0, "64x48", 10, audio=False, container="ts")
    path = tmp / "canary.m3u8"
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nfile://{segment}\n#EXT-X-ENDLIST\n")
    return path


async def test_protocol_whitelist_alone_would_follow_the_playlist(tmp_path: Path) -> None:
    # The control experiment: with only -protocol_whitelist file, ffprobe opens the HLS demuxer and reads
    # the local file the playlist names. (ffmpeg 5.1's hls demuxer refuses /etc/passwd for its missing
    # extension, not because of any whitelist; any .ts/.mp4-named file would be read.)
    playlist = _canary_playlist(tmp_path)
    args = ["ffprobe", "-v", "error", "-protocol_whitelist", "file", "-show_entries", "format=format_name",
            "-of", "csv=p=0", input_url(playlist)]
    result = await run_tool(args, timeout_s=60)
    assert (result.returncode, result.stdout.strip()) == (0, b"hls")


@pytest.mark.parametrize("make", [_playlist, _canary_playlist])
async def test_whitelists_stop_playlists_even_without_sniffing(
    make: Callable[[Path], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    playlist = make(tmp_path)
    args = ["ffprobe", "-v", "error", *INPUT_GUARDS, "-show_format", "-of", "json", input_url(playlist)]
    result = await run_tool(args, timeout_s=60)
    assert result.returncode != 0 and "not on whitelist" in result.stderr

    monkeypatch.setattr(probe_module, "is_video_container", lambda head: True)
    with pytest.raises(NotAVideo, match="not in a video container the gateway accepts"):
        await probe(playlist, LIMITS)


# --- caps -------------------------------------------------------------------------------------------

async def test_longer_than_the_cap_is_too_long() -> None:
    with pytest.raises(MediaTooLarge) as caught:
        await probe(make_clip(2.0, "320x240", 30), ProbeLimits(1.5, 7680, 60.0))
    assert (caught.value.status_code, caught.value.code) == (413, "video_too_long")


async def test_frame_side_over_the_cap_is_too_large() -> None:
    with pytest.raises(MediaTooLarge) as caught:
        await probe(make_clip(1.0, "640x480", 10), ProbeLimits(3600.0, 480, 60.0))
    assert (caught.value.status_code, caught.value.code) == (413, "frame_too_large")
    assert "640x480" in caught.value.message
    assert (await probe(make_clip(1.0, "640x480", 10), ProbeLimits(3600.0, 640, 60.0))).width == 640


async def test_a_real_16384_pixel_wide_stream_is_too_large() -> None:
    # A 16384x16384 frame costs 268 Mpixel to encode; a 16384x16 H.264 stream is as wide, real and cheap.
    # The cap reads the codec's own size from ffprobe, so no container header can lie past it.
    wide = make_clip(0.5, "16384x16", 10, audio=False)
    with pytest.raises(MediaTooLarge) as caught:
        await probe(wide, LIMITS)
    assert caught.value.code == "frame_too_large" and "16384x16" in caught.value.message


# --- the sniffer on its own ---------------------------------------------------------------------------

@pytest.mark.parametrize("head", [
    b"\x00\x00\x00\x20ftypisom" + bytes(500),
    b"\x00\x00\x00\x08wide\x00\x00\x00\x00mdat" + bytes(500),
    b"\x1a\x45\xdf\xa3" + bytes(500),
    b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(500),
    b"FLV\x01\x05" + bytes(500),
    (b"\x47" + bytes(187)) * 2 + bytes(200),
    (bytes(4) + b"\x47" + bytes(187)) * 2 + bytes(200),
    b"\x00\x00\x01\xba" + bytes(500),
    b"OggS\x00\x02" + bytes(500),
])
def test_video_container_signatures(head: bytes) -> None:
    assert is_video_container(head)


@pytest.mark.parametrize(("head", "words"), [
    (b"\xef\xbb\xbf#EXTM3U\n", "an HLS playlist (a text file listing other files)"),
    (b'<?xml version="1.0"?><MPD>', "an XML document"),
    (b"<MPD xmlns=...>", "a DASH manifest (a text file listing other files)"),
    (b"<head><html>", "an HTML page"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "a WebP image"),
    (b"\xff\xfb\x90\x00", "MP3 audio"),
    (b"G" + b"x" * 300, "a text file"),  # one 0x47 is not MPEG-TS
    ("Grüße, ".encode() + b"\xc3", "a text file"),
    (bytes(range(256)), "data in no known video format"),
])
def test_what_other_content_looks_like(head: bytes, words: str) -> None:
    assert not is_video_container(head)
    assert looks_like(head) == words
