"""gateway.media.speech: the worker's output read as plain lines, and the real path (ffmpeg's PCM, faster-whisper in
its worker process, the tiny random-weight Whisper) on speech synthesized by espeak-ng — including what is left
behind when it is cancelled or runs out of time (nothing)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest

from gateway.errors import MediaTimeout
from gateway.media.asr_worker import pick_device
from gateway.media.speech import (
    WORKER,
    Asr,
    TranscriptionFailed,
    audio_args,
    read_result,
    transcribe,
    transcribe_or_none,
    wanted,
    worker_args,
)
from gateway.media.subtitles import Line, TextLimits, Transcript
from tests.support.clips import make_clip, make_spoken_clip
from tests.support.whisper import stalled_whisper
from vchat_settings import Settings

LIMITS = TextLimits(max_bytes=2**20, max_lines=1000)
# Silero pads the speech it finds by 200 ms (asr_worker.SPEECH_PAD_MS) and works in 32 ms windows: a line may start
# or end this much outside the voice.
TOLERANCE_S = 0.3


def asr(model: Path, *, timeout_s: float = 120.0) -> Asr:
    return Asr(model, None, timeout_s, 4 * 2**30, 1, 32)


def left_in(work: Path) -> list[Path]:
    return list(work.iterdir())


def workers(work: Path) -> list[int]:
    """Live transcription workers started for files in work."""
    found = []
    for name in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().decode(errors="replace")
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if WORKER in cmdline and str(work) in cmdline and state != "Z":
            found.append(int(name))
    return found


def test_worker_output_becomes_plain_lines_in_time_order() -> None:
    output = {"language": "en", "segments": [[4.0, 6.5, " <b>second</b>\x00 line "], [0.5, 2.0, "first"],
                                             [3.0, 3.5, "  "], [7.0, 6.0, "backwards"]]}
    assert read_result(output, LIMITS) == Transcript("asr", "en", (Line(0.5, 2.0, "first"),
                                                                   Line(4.0, 6.5, "second line")))
    assert read_result({"language": "en", "segments": [[0.0, 1.0, " "]]}, LIMITS) is None


def test_too_many_segments_are_cut_with_a_note() -> None:
    output = {"language": None, "segments": [[float(i), i + 0.5, f"word {i}"] for i in range(5)]}
    transcript = read_result(output, TextLimits(max_bytes=2**20, max_lines=3))
    assert transcript is not None and [line.text for line in transcript.lines] == ["word 0", "word 1", "word 2"]
    assert transcript.language is None
    assert transcript.notes == ("The transcribed speech has more than 3 lines (VCHAT_SUBTITLES_MAX_LINES); later ones "
                                "were dropped.",)


def test_when_speech_is_transcribed() -> None:
    lines = Transcript("container", "eng", (Line(0.0, 1.0, "hi"),))
    assert [wanted(mode, None) for mode in ("off", "when-needed", "always")] == [False, True, True]
    assert [wanted(mode, lines) for mode in ("off", "when-needed", "always")] == [False, False, True]


def test_settings_off_means_no_asr_and_on_needs_a_model(tmp_path: Path) -> None:
    assert Asr.from_settings(Settings(transcribe="off", asr_model=tmp_path)) is None
    assert Asr.from_settings(Settings(transcribe="when-needed", asr_model=tmp_path)) == Asr(
        tmp_path, None, 600.0, 4 * 2**30, 0, 128)
    with pytest.raises(ValueError, match="VCHAT_TRANSCRIBE=always needs VCHAT_ASR_MODEL"):
        Settings(transcribe="always")


def test_the_device_is_the_gpu_when_asked_or_found_else_the_cpu_in_int8(tmp_path: Path) -> None:
    assert [pick_device(asked, gpu) for asked in ("auto", "cpu", "cuda") for gpu in (False, True)] == [
        ("cpu", "int8"), ("cuda", "float16"), ("cpu", "int8"), ("cpu", "int8"), ("cuda", "float16"),
        ("cuda", "float16")]
    chosen = Asr.from_settings(Settings(transcribe="when-needed", asr_model=tmp_path, asr_device="cpu"))
    assert chosen is not None and json.loads(worker_args(tmp_path / "a.pcm", chosen)[-1])["device"] == "cpu"


def test_auto_on_a_machine_whose_gpu_cannot_run_it_falls_back_to_the_cpu(tiny_whisper: Path, tmp_path: Path) -> None:
    # This machine has no CUDA: told a GPU is present, "auto" tries it, fails, and the worker execs itself on the CPU
    # (the same process, so the gateway's time limit and kill still hold); "cuda" asked for plainly fails.
    clip = make_spoken_clip()
    pcm = tmp_path / "speech.s16le"
    subprocess.run(audio_args(clip.path, pcm), check=True)
    fallback = subprocess.run(worker_args(pcm, asr(tiny_whisper), gpu_present=True), capture_output=True, text=True,
                              timeout=300)
    assert fallback.returncode == 0, fallback.stderr[-2000:]
    assert "on the CPU instead" in fallback.stderr
    segments = json.loads(fallback.stdout)["segments"]
    assert segments and all(clip.start - TOLERANCE_S <= start < end <= clip.end + TOLERANCE_S
                            for start, end, _ in segments)
    forced = dataclasses.replace(asr(tiny_whisper), device="cuda")
    refused = subprocess.run(worker_args(pcm, forced, gpu_present=True), capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and refused.stdout == ""


def test_audio_is_read_only_from_the_local_file(tmp_path: Path) -> None:
    args = audio_args(tmp_path / "http:x.mp4", tmp_path / "out.pcm")
    assert "-protocol_whitelist" in args and f"file:{tmp_path}/http:x.mp4" in args
    assert args[args.index("-map") + 1] == "0:a:0" and args[args.index("-ar") + 1] == "16000"


async def test_speech_is_heard_where_it_was_spoken(tiny_whisper: Path, tmp_path: Path) -> None:
    clip = make_spoken_clip()
    transcript = await transcribe(clip.path, tmp_path, asr(tiny_whisper), LIMITS)
    assert transcript is not None and transcript.source == "asr" and transcript.language
    assert transcript.lines and all(line.text for line in transcript.lines)
    for line in transcript.lines:
        assert clip.start - TOLERANCE_S <= line.start < line.end <= clip.end + TOLERANCE_S, (line, clip)
    assert left_in(tmp_path) == []


async def test_a_language_set_is_the_transcripts_language(tiny_whisper: Path, tmp_path: Path) -> None:
    german = Asr(tiny_whisper, "de", 120.0, 4 * 2**30, 1, 32)  # VCHAT_ASR_LANGUAGE=de: no detection
    transcript = await transcribe(make_spoken_clip().path, tmp_path, german, LIMITS)
    assert transcript is not None and transcript.language == "de"


async def test_a_video_without_audio_has_no_transcript(tiny_whisper: Path, tmp_path: Path) -> None:
    assert await transcribe(make_clip(audio=False), tmp_path, asr(tiny_whisper), LIMITS) is None
    assert left_in(tmp_path) == []


async def test_a_worker_that_fails_says_why_and_leaves_the_video_without_transcript(tmp_path: Path) -> None:
    broken = asr(tmp_path / "no-such-model")
    clip = make_spoken_clip().path
    with pytest.raises(TranscriptionFailed, match="no-such-model"):
        await transcribe(clip, tmp_path, broken, LIMITS)
    assert await transcribe_or_none(clip, tmp_path, broken, LIMITS) is None
    assert left_in(tmp_path) == []


async def test_a_worker_over_its_memory_limit_fails_alone(tiny_whisper: Path, tmp_path: Path) -> None:
    # 256 MiB of address space (the least VCHAT_ASR_MAX_MEMORY_BYTES allows) cannot even map faster-whisper's
    # libraries: the worker fails, the gateway's process is untouched (1 GiB is enough for the tiny model).
    small = Asr(tiny_whisper, None, 120.0, 2**28, 1, 32)
    with pytest.raises(TranscriptionFailed):
        await transcribe(make_spoken_clip().path, tmp_path, small, LIMITS)
    assert left_in(tmp_path) == []


async def test_cancelled_the_worker_is_killed_and_nothing_is_left(tiny_whisper: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    stalled = asr(stalled_whisper(tiny_whisper, tmp_path))
    task = asyncio.create_task(transcribe(make_spoken_clip().path, work, stalled, LIMITS))
    for _ in range(6000):  # until the worker runs (the PCM is written first); it then waits for its weights forever
        if workers(work) or task.done():
            break
        await asyncio.sleep(0.01)
    assert workers(work), "the worker never started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert workers(work) == [] and left_in(work) == []


@pytest.mark.timing
async def test_out_of_time_the_worker_is_killed_and_nothing_is_left(tiny_whisper: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    stalled = asr(stalled_whisper(tiny_whisper, tmp_path), timeout_s=2.0)  # its weights never come: it must fire
    with pytest.raises(MediaTimeout):
        await transcribe(make_spoken_clip().path, work, stalled, LIMITS)
    assert workers(work) == [] and left_in(work) == []
