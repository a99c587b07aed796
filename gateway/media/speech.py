"""A video's speech as timed text: its audio cut to 16 kHz mono PCM by ffmpeg, transcribed by faster-whisper in a
worker process (``asr_worker``), read back as a transcript of source "asr".

Both steps run in their own process group through ``ffmpeg.run_tool``: on timeout or cancellation the group is
killed and reaped, and the PCM file, written in the caller's temporary directory, is removed here whatever happens.
Like subtitles, speech never makes a video fail: a video without audio has no transcript, and a worker that fails
or runs out of time is logged and leaves none (``TranscriptionFailed`` for callers that want to say why).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gateway.errors import MediaTimeout
from gateway.media.ffmpeg import INPUT_GUARDS, input_url, run_tool
from gateway.media.subtitles import Line, TextLimits, Transcript, plain
from vchat_settings import Settings

logger = logging.getLogger(__name__)

TranscribeMode = Literal["off", "when-needed", "always"]
WORKER = "gateway.media.asr_worker"
# Present where an NVIDIA driver is (on the host, or passed into the container); looked at without loading CUDA.
NVIDIA_CONTROL = Path("/dev/nvidiactl")
NO_AUDIO = "matches no streams"  # ffmpeg's complaint when "-map 0:a:0" finds no audio stream


@dataclass(frozen=True, slots=True)
class Asr:
    """How speech is transcribed: the CTranslate2 Whisper model and the worker's bounds."""

    model: Path
    language: str | None
    timeout_s: float
    max_memory_bytes: int
    threads: int
    max_new_tokens: int
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @classmethod
    def from_settings(cls, settings: Settings) -> Asr | None:
        """None when VCHAT_TRANSCRIBE is off."""
        if settings.transcribe == "off" or settings.asr_model is None:
            return None
        return cls(settings.asr_model, settings.asr_language, settings.asr_timeout_s, settings.asr_max_memory_bytes,
                   settings.asr_threads, settings.asr_max_new_tokens, settings.asr_device)


def wanted(mode: TranscribeMode, timed_text: Transcript | None) -> bool:
    """Whether speech is transcribed for a video that brought ``timed_text`` (its subtitles or captions)."""
    return mode == "always" or (mode == "when-needed" and timed_text is None)


def audio_args(video: Path, out: Path) -> list[str]:
    """The ffmpeg arguments writing the first audio stream of video to out as 16 kHz mono s16le, Whisper's input."""
    return ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *INPUT_GUARDS, "-i", input_url(video),
            "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", "-f", "s16le",
            input_url(out)]


def worker_args(audio: Path, asr: Asr, *, gpu_present: bool | None = None) -> list[str]:
    """The worker's command line: this interpreter, the job as one JSON argument (``gpu_present``: whether this
    machine has an NVIDIA driver, looked up when not given)."""
    gpu = NVIDIA_CONTROL.exists() if gpu_present is None else gpu_present
    job = {"audio": str(audio), "model": str(asr.model), "language": asr.language, "threads": asr.threads,
           "max_new_tokens": asr.max_new_tokens, "max_memory_bytes": asr.max_memory_bytes, "device": asr.device,
           "gpu_present": gpu}
    return [sys.executable, "-m", WORKER, json.dumps(job)]


def read_result(output: dict[str, Any], limits: TextLimits) -> Transcript | None:
    """The worker's segments as a transcript of plain lines in time order (at most ``limits.max_lines``); None when
    no segment holds text. Whisper's text is untrusted as subtitles are: markup and control characters go."""
    lines: list[Line] = []
    notes: list[str] = []
    for start, end, text in sorted(output["segments"], key=lambda segment: (segment[0], segment[1])):
        words = plain(str(text))
        if not words or not end >= start >= 0:
            continue
        if len(lines) == limits.max_lines:
            notes.append(f"The transcribed speech has more than {limits.max_lines} lines (VCHAT_SUBTITLES_MAX_LINES); "
                         "later ones were dropped.")
            break
        lines.append(Line(round(float(start), 3), round(float(end), 3), words))
    language = output.get("language")
    return Transcript("asr", language if isinstance(language, str) else None, tuple(lines), tuple(notes)) \
        if lines else None


class TranscriptionFailed(Exception):
    """Raised when the worker exits without a result (its stderr's tail says why)."""


async def transcribe(video: Path, work: Path, asr: Asr, limits: TextLimits) -> Transcript | None:
    """The speech of video as a transcript (None when it has no audio or no speech); PCM written in ``work`` and
    removed before returning.

    Raises MediaTimeout when extraction and transcription together take longer than ``asr.timeout_s`` (the worker
    is killed), TranscriptionFailed when the worker fails; a cancellation kills it as well.
    """
    pcm = work / "speech.s16le"
    deadline = time.monotonic() + asr.timeout_s
    try:
        extracted = await run_tool(audio_args(video, pcm), timeout_s=asr.timeout_s)
        if extracted.returncode != 0 and NO_AUDIO in extracted.stderr:
            return None  # a video without audio has no speech: not a failure
        if extracted.returncode != 0:
            raise TranscriptionFailed(f"ffmpeg could not read the audio: {extracted.stderr}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise MediaTimeout(f"Transcribing the video took longer than {asr.timeout_s:g} s.",
                               code="video_processing_timeout")
        result = await run_tool(worker_args(pcm, asr), timeout_s=left)
    finally:
        pcm.unlink(missing_ok=True)
    if result.returncode != 0:
        raise TranscriptionFailed(result.stderr or f"the worker exited with {result.returncode}")
    try:
        return read_result(json.loads(result.stdout), limits)
    except (ValueError, KeyError, TypeError) as exc:
        raise TranscriptionFailed(f"the worker's result is unreadable ({exc!r})") from exc


async def transcribe_or_none(video: Path, work: Path, asr: Asr, limits: TextLimits) -> Transcript | None:
    """``transcribe``, with a failure or timeout logged as a warning and read as no transcript (the video is good)."""
    try:
        return await transcribe(video, work, asr, limits)
    except MediaTimeout:
        logger.warning("transcription stopped after %g s (VCHAT_ASR_TIMEOUT_S)", asr.timeout_s)
    except TranscriptionFailed as exc:
        logger.warning("transcription failed: %s", exc)
    return None
