"""gateway.media.subtitles: SubRip/WebVTT read as plain lines within caps, and container streams (mov_text, SubRip,
ASS, WebVTT) read with the real ffmpeg before sanitizing drops them."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from gateway.media.library import open_library
from gateway.media.probe import ProbeLimits, probe
from gateway.media.subtitles import Line, TextLimits, extract, parse, plain
from gateway.metrics import Metrics
from tests.support.clips import make_clip, make_subtitled_clip
from vchat_settings import Settings

LIMITS = TextLimits(max_bytes=2**20, max_lines=1000)
PROBE = ProbeLimits(max_duration_s=3600.0, max_side=7680, timeout_s=60.0)
EXPECTED = [Line(0.5, 1.8, "The red fox jumps."), Line(2.5, 3.9, "Over the lazy dog."),
            Line(4.2, 5.6, "It & its friend run away.")]


def test_srt_and_webvtt_parse_to_plain_lines() -> None:
    srt = (b"1\r\n00:00:01,000 --> 00:00:02,500\r\n<b>Hello</b>\r\nworld\r\n\r\n"
           b"2\r\n00:01:02,000 --> 00:01:03,000\r\nBye\r\n")
    vtt = (b"\xef\xbb\xbfWEBVTT\n\nNOTE a comment\n\n00:01.000 --> 00:02.500 align:start\n<c.yellow>Hello</c> "
           b"<00:00:01.500>world\n\ncue-2\n01:02.000 --> 01:03.000\nBye\n")
    expected = [Line(1.0, 2.5, "Hello world"), Line(62.0, 63.0, "Bye")]
    assert parse(srt, LIMITS) == (expected, [])
    assert parse(vtt, LIMITS) == (expected, [])


def test_markup_never_survives() -> None:
    assert plain("{\\b1\\c&H0000FF&}Bold\\Nnext") == "Bold next"
    assert plain("&lt;script&gt;alert(1)&lt;/script&gt; hi") == "alert(1) hi"
    assert plain('<font color="red">a</font>\x00\u202eb') == "a b"


def test_rolling_captions_merge_and_bad_cues_are_skipped() -> None:
    data = (b"00:00:01.000 --> 00:00:02.000\nsame\n\n00:00:02.000 --> 00:00:03.000\nsame\n\n"
            b"00:00:05.000 --> 00:00:04.000\nbackwards\n\n00:00:99.000 --> 00:01:00.000\nbad time\n\n"
            b"00:00:06.000 --> 00:00:07.000\n<i></i>\n\ngarbage without timing\n")
    lines, notes = parse(data, LIMITS)
    assert lines == [Line(1.0, 3.0, "same")]
    assert notes == ["3 subtitle cues could not be read and were skipped."]


def test_huge_subtitles_are_capped_with_a_note() -> None:
    cues = b"".join(b"%d\n00:00:%02d,000 --> 00:00:%02d,500\nline %d\n\n" % (i, i % 60, i % 60, i)
                    for i in range(5000))
    lines, notes = parse(cues, TextLimits(max_bytes=10_000, max_lines=1000))
    assert 200 < len(lines) < 400
    assert "longer than 10000 bytes" in notes[0]
    lines, notes = parse(cues, TextLimits(max_bytes=2**20, max_lines=100))
    assert len(lines) == 100
    assert "more than 100 lines" in notes[0]


@pytest.mark.parametrize(("container", "scodec"), [("mp4", "mov_text"), ("mkv", "srt"), ("mkv", "ass"),
                                                   ("mkv", "webvtt")])
async def test_container_streams_are_read(tmp_path: Path, container: str, scodec: str) -> None:
    clip = make_subtitled_clip(container=container, scodec=scodec)
    found = await probe(clip, PROBE)
    assert found.subtitle_index is not None
    assert found.subtitle_language == "eng"
    transcript = await extract(clip, found.subtitle_index, found.subtitle_language, tmp_path, LIMITS, timeout_s=60)
    assert transcript is not None
    assert (transcript.source, transcript.language, transcript.notes) == ("container", "eng", ())
    assert list(transcript.lines) == EXPECTED
    assert not (tmp_path / "subtitles.srt").exists()


async def test_a_huge_stream_is_cut_by_ffmpeg_and_noted(tmp_path: Path) -> None:
    srt = "".join(f"{i}\n00:00:0{i % 6},000 --> 00:00:0{i % 6},900\n{'word ' * 40}{i}\n\n" for i in range(1, 400))
    clip = make_subtitled_clip(srt)
    found = await probe(clip, PROBE)
    assert found.subtitle_index is not None
    transcript = await extract(clip, found.subtitle_index, None, tmp_path, TextLimits(4096, 1000), timeout_s=60)
    assert transcript is not None
    assert 10 < len(transcript.lines) < 25
    assert "longer than 4096 bytes" in transcript.notes[0]


async def test_library_keeps_the_transcript_with_the_asset(tmp_path: Path) -> None:
    settings = Settings(vllm_url=None, media_dir=tmp_path / "media")  # type: ignore[call-arg]
    async with open_library(settings, Metrics()) as library:
        for clip, expected in ((make_subtitled_clip(), EXPECTED), (make_clip(2.0, "160x120", 10), None)):
            data = clip.read_bytes()
            copy = tmp_path / clip.name
            shutil.copy(clip, copy)
            asset = await library.from_upload(copy, hashlib.sha256(data).hexdigest())
            got = asset.transcript
            assert (list(got.lines) if got is not None else None) == expected
            stored = await library.store.get(asset.id)
            assert stored is not None
            again = await library.load(stored)
            assert again.transcript == asset.transcript
            found = await probe(asset.video, PROBE)
            assert found.subtitle_index is None  # the sanitized copy has none: the text lives beside it
