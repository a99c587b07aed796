"""gateway.media.mp4index: a video's frame index read from its MP4 sample tables is exactly the index ffprobe's
packet walk gives (every frame, its pts, the keyframes, the start), on the shapes ffmpeg writes; any other shape, or a
damaged file, is left to ffprobe."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.errors import NotAVideo
from gateway.media.frame_index import build_index, probe_index
from gateway.media.mp4index import read_track_frames
from gateway.media.probe import ProbeLimits, probe
from gateway.media.sanitize import sanitize
from tests.support.clips import make_clip, make_numbered_clip

LIMITS = ProbeLimits(max_duration_s=4 * 3600.0, max_side=7680, timeout_s=60.0)
OPEN_GOP = "open-gop=1:keyint=30:bframes=3"
VFR = "N/25/TB+if(gt(N\\,100)\\,(N-100)*0.03/TB\\,0)"


def remuxed(src: Path, out: Path, before: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> Path:
    """src stream-copied to out with these input and output options (an edit list, fragments, another muxer…)."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *before, "-i", str(src), "-c", "copy", *after,
                    str(out)], check=True, timeout=120)
    return out


def clip_of(kind: str, tmp_path: Path) -> Path:
    bframes = make_numbered_clip(12, 30, x264="keyint=45:bframes=3")
    with_audio = make_clip(6.0)
    return {
        "vfr": lambda: make_numbered_clip(20, 25, setpts=VFR, x264="bframes=2:keyint=40"),
        "open_gop": lambda: make_numbered_clip(40, 25, x264=OPEN_GOP),
        "bframes": lambda: bframes,
        "audio": lambda: with_audio,
        # A cut mid-GOP: the edit starts after frames the decoder needs but does not show.
        "cut_mid_gop": lambda: remuxed(bframes, tmp_path / "cut.mp4", ("-ss", "1.3")),
        "cut_with_audio": lambda: remuxed(with_audio, tmp_path / "cut-audio.mp4", ("-ss", "1.37")),
        # A leading empty edit: the video starts later than the presentation (and the container's start moves).
        "empty_edit": lambda: remuxed(bframes, tmp_path / "offset.mp4", after=("-output_ts_offset", "1.5")),
        "delayed_video": lambda: remuxed(with_audio, tmp_path / "delayed.mp4", ("-itsoffset", "0.7")),
        "no_edit_list": lambda: remuxed(bframes, tmp_path / "noedit.mp4", after=("-use_editlist", "0")),
        "faststart": lambda: remuxed(with_audio, tmp_path / "faststart.mp4", after=("-movflags", "+faststart")),
    }[kind]()


@pytest.mark.parametrize("kind", ["vfr", "open_gop", "bframes", "audio", "cut_mid_gop", "cut_with_audio",
                                  "empty_edit", "delayed_video", "no_edit_list", "faststart"])
async def test_the_sample_tables_give_exactly_the_packet_walks_index(kind: str, tmp_path: Path) -> None:
    clip = clip_of(kind, tmp_path)
    found = await probe(clip, LIMITS)
    assert read_track_frames(clip, found.video_index) is not None  # read from the tables, not walked
    assert await build_index(clip, found, timeout_s=60) == await probe_index(clip, found, timeout_s=60)


async def test_a_sanitized_reencode_is_read_from_its_tables(tmp_path: Path) -> None:
    """What the gateway indexes: the sanitized copy, here re-encoded (B-frames, an edit list, audio)."""
    src = make_clip(2.0, "320x240", 25, vcodec="libx265", audio=True,
                    extra=("-preset", "ultrafast", "-x265-params", "log-level=error"))
    out = tmp_path / "video.mp4"
    written = await sanitize(src, await probe(src, LIMITS), out, timeout_s=60)
    assert read_track_frames(out, written.video_index) is not None
    assert await build_index(out, written, timeout_s=60) == await probe_index(out, written, timeout_s=60)


@pytest.mark.parametrize("shape", ["fragmented", "negative_cts", "matroska"])
async def test_other_shapes_are_left_to_ffprobe(shape: str, tmp_path: Path) -> None:
    src = make_numbered_clip(12, 30, x264="keyint=45:bframes=3")
    clip = {"fragmented": lambda: remuxed(src, tmp_path / "frag.mp4", after=("-movflags", "frag_keyframe+empty_moov")),
            "negative_cts": lambda: remuxed(src, tmp_path / "neg.mp4", after=("-movflags", "negative_cts_offsets")),
            "matroska": lambda: remuxed(src, tmp_path / "clip.mkv")}[shape]()
    found = await probe(clip, LIMITS)
    assert read_track_frames(clip, found.video_index) is None
    assert await build_index(clip, found, timeout_s=60) == await probe_index(clip, found, timeout_s=60)


@pytest.mark.parametrize("damage", ["truncated_moov", "count_lies", "billions_of_samples", "garbage", "empty",
                                    "audio_track"])
async def test_damaged_tables_are_never_trusted(damage: str, tmp_path: Path) -> None:
    """A moov cut short, a table whose count promises more entries than its box holds, bytes that are no MP4, or the
    wrong track: None (ffprobe decides), never an exception or a made-up index."""
    src = make_clip(6.0)
    found = await probe(src, LIMITS)
    data = bytearray(remuxed(src, tmp_path / "fs.mp4", after=("-movflags", "+faststart")).read_bytes())
    moov = data.index(b"moov") - 4
    track = found.video_index
    if damage == "truncated_moov":
        data = data[:moov + 200]
    elif damage == "count_lies":
        at = data.index(b"stts") + 8
        data[at:at + 4] = (1 << 30).to_bytes(4, "big")
    elif damage == "billions_of_samples":
        # A constant sample size needs no table behind the count, and one stts run covers them all in 8 bytes.
        at = data.index(b"stsz") + 8
        data[at:at + 8] = (1).to_bytes(4, "big") + (1 << 31).to_bytes(4, "big")
        at = data.index(b"stts") + 8
        data[at:at + 12] = (1).to_bytes(4, "big") + (1 << 31).to_bytes(4, "big") + (512).to_bytes(4, "big")
    elif damage == "garbage":
        data = bytearray(b"\x00\x00\x00\x10ftypisom" + bytes(range(256)) * 8)
    elif damage == "empty":
        data = bytearray()
    else:
        track = 1 - found.video_index
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    assert read_track_frames(damaged, track) is None
    if damage in ("garbage", "empty"):
        with pytest.raises(NotAVideo):
            await build_index(damaged, found, timeout_s=60)
