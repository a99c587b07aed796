"""A page's caption tracks: chosen from what real yt-dlp finds on a loopback page (the page's own before automatic
ones, languages by setting), fetched through the guard, read within the caps and kept with the asset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.media.guard import HostPolicy
from gateway.media.library import open_library
from gateway.media.pages import CaptionTrack, resolve_page
from gateway.media.pages.captions import choose_captions
from gateway.media.subtitles import Line
from gateway.metrics import Metrics
from tests.support.clips import make_clip
from tests.support.origin import Origin
from vchat_settings import Settings

LOOPBACK = HostPolicy.from_settings(["127.0.0.1"])
CAPS: dict[str, Any] = {"max_duration_s": 3600.0, "max_bytes": 2**30, "timeout_s": 8.0, "max_redirects": 3}
VTT = b"WEBVTT\n\n00:00.500 --> 00:01.800\n<v Fox>The <b>red</b> fox jumps.\n\n00:02.500 --> 00:03.900\nAway!\n"


def page(tracks: str) -> str:
    return (f"<!DOCTYPE html><html><head><title>t</title></head><body><video src=\"/clip.mp4\" controls>{tracks}"
            "</video></body></html>")


def test_own_captions_come_before_automatic_ones_and_languages_go_in_order() -> None:
    def track(lang: str, *exts: str) -> list[dict[str, str]]:
        return [{"ext": ext, "url": f"http://example.com/{lang}.{ext}"} for ext in exts]

    info = {"subtitles": {"de": track("de", "vtt"), "en-GB": track("en-GB", "json3", "srt")},
            "automatic_captions": {"en": track("en", "vtt")}}
    policy = HostPolicy.from_settings([])
    assert choose_captions(info, ["en"], policy) == CaptionTrack("http://example.com/en-GB.srt", "srt", "en-GB", False)
    assert choose_captions(info, ["fr", "de"], policy) == CaptionTrack("http://example.com/de.vtt", "vtt", "de",
                                                                       False)
    info["subtitles"] = {"en": track("en", "ttml")}
    assert choose_captions(info, ["en"], policy) == CaptionTrack("http://example.com/en.vtt", "vtt", "en", True)
    assert choose_captions(info, ["fr"], policy) is None
    private = {"subtitles": {"en": [{"ext": "vtt", "url": "http://169.254.169.254/en.vtt"}]}}
    assert choose_captions(private, ["en"], policy) is None


async def test_a_track_element_is_picked_up_by_yt_dlp(origin: Origin) -> None:
    origin.file("/clip.mp4", make_clip(2.0, "160x120", 10).read_bytes())
    origin.file("/en.vtt", VTT, content_type="text/vtt")
    url = origin.page("/watch", page('<track kind="captions" src="/fr.vtt" srclang="fr">'
                                     '<track kind="captions" src="/en.vtt" srclang="en">'))
    media = await resolve_page(url, policy=LOOPBACK, caption_languages=["en"], **CAPS)
    assert media.captions == CaptionTrack(origin.url("/en.vtt"), "vtt", "en", False)
    none = await resolve_page(url, policy=LOOPBACK, caption_languages=["ja"], **CAPS)
    assert none.captions is None


@pytest.mark.parametrize(("body", "lines", "noted"), [
    (VTT, [Line(0.5, 1.8, "The red fox jumps."), Line(2.5, 3.9, "Away!")], False),
    (b"WEBVTT\n\n" + b"".join(b"00:00.%03d --> 00:01.000\n%s\n\n" % (i, b"x" * 200) for i in range(999)), None, True),
])
async def test_a_pages_captions_are_kept_with_its_video(tmp_path: Path, origin: Origin, body: bytes,
                                                        lines: list[Line] | None, noted: bool) -> None:
    origin.file("/clip.mp4", make_clip(2.0, "160x120", 10).read_bytes())
    origin.file("/en.vtt", body, content_type="text/vtt")
    url = origin.page("/watch", page('<track kind="subtitles" src="/en.vtt" srclang="en-US">'))
    settings = Settings(vllm_url=None, media_dir=tmp_path / "media", media_allowed_hosts="127.0.0.1",  # type: ignore[call-arg]
                        subtitles_max_bytes=8192)
    async with open_library(settings, Metrics()) as library:
        asset = await library.from_url(url)
        transcript = asset.transcript
        assert transcript is not None
        assert (transcript.source, transcript.language) == ("captions", "en-US")
        if lines is not None:
            assert list(transcript.lines) == lines
        assert any("longer than 8192 bytes" in note for note in transcript.notes) is noted
        again = await library.from_url(url)  # from the cache
        assert again.transcript == transcript


async def test_a_missing_caption_file_leaves_the_video_without_transcript(tmp_path: Path, origin: Origin) -> None:
    origin.file("/clip.mp4", make_clip(2.0, "160x120", 10).read_bytes())
    url = origin.page("/watch", page('<track kind="captions" src="/gone.vtt" srclang="en">'))
    settings = Settings(vllm_url=None, media_dir=tmp_path / "media", media_allowed_hosts="127.0.0.1")  # type: ignore[call-arg]
    async with open_library(settings, Metrics()) as library:
        asset = await library.from_url(url)
    assert asset.transcript is None
