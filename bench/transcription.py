"""What hearing a video's speech costs on this machine (issue 34 item 6), with the tiny random-weight Whisper.

    .venv/bin/python bench/transcription.py [--minutes 1,3] [--repeats 3]

For each length: a 320x240 clip whose audio is espeak-ng speech (one paragraph, about 14 s, then 2 s of silence,
repeated), generated once under var/bench. Two figures, side by side in one run:

1. **Transcription seconds per minute of audio**: ``gateway.media.speech.transcribe`` as the library runs it
   (ffmpeg's 16 kHz PCM, the worker process: start, model load, Silero VAD, decoding), median of --repeats, and
   the worker's peak RSS (its own run, through ``wait4``).
2. **The added latency of a cold answer**: a new video through ``VideoLibrary`` (data URL in, a fresh media cache
   each time) up to round 1's frames being ready, with VCHAT_TRANSCRIBE=when-needed vs off, interleaved, median of
   --repeats, split by the library's own ``vchat_media_stage_seconds``. vLLM's part of an answer is the same either
   way but for the few prompt tokens the lines add, so it is left out: the difference is the answer's difference.

Writes bench/results/transcription-<date>.json as well as the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.media.library import open_library  # noqa: E402
from gateway.media.sampling import select_frames  # noqa: E402
from gateway.media.speech import Asr, TranscribeMode, audio_args, transcribe, worker_args  # noqa: E402
from gateway.media.subtitles import TextLimits  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from tests.conftest import build_tiny_whisper  # noqa: E402
from vchat_settings import Settings  # noqa: E402

CACHE = ROOT / "var" / "bench"
RESULTS = ROOT / "bench" / "results"
PARAGRAPH = ("The lecture begins with a short review of last week's results. Then the speaker turns to the new "
             "experiment, explains how the samples were prepared, and shows the first measurements on the screen.")
LIMITS = TextLimits(max_bytes=2 * 2**20, max_lines=20000)


def spoken_video(minutes: float) -> Path:
    """A clip of ``minutes`` whose audio is the paragraph spoken again and again with 2 s pauses (cached)."""
    out = CACHE / f"spoken-{minutes:g}min-{hashlib.sha256(PARAGRAPH.encode()).hexdigest()[:8]}.mp4"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), PARAGRAPH], check=True)
        seconds = minutes * 60
        part = Path(tmp) / ".out.mp4"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=320x240:rate=30:duration={seconds}", "-stream_loop", "-1", "-i", str(wav),
                        "-filter_complex", "[1:a]apad=pad_dur=2,aresample=44100[a]", "-map", "0:v", "-map", "[a]",
                        "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-pix_fmt",
                        "yuv420p", "-c:a", "aac", str(part)], check=True)
        part.rename(out)
    return out


async def transcription_s(video: Path, asr: Asr, scratch: Path) -> tuple[float, int]:
    """Seconds for the whole transcription, and how many lines it gave."""
    work = Path(tempfile.mkdtemp(dir=scratch))
    started = time.perf_counter()
    transcript = await transcribe(video, work, asr, LIMITS)
    elapsed = time.perf_counter() - started
    shutil.rmtree(work)
    return elapsed, len(transcript.lines) if transcript else 0


def worker_peak_rss(video: Path, asr: Asr, scratch: Path) -> int:
    """The worker's peak resident memory, bytes (ru_maxrss of its own wait4)."""
    pcm = scratch / "peak.s16le"
    subprocess.run(audio_args(video, pcm), check=True)
    proc = subprocess.Popen(worker_args(pcm, asr), stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    pcm.unlink()
    if proc.returncode != 0:
        raise SystemExit(f"the worker failed ({proc.returncode})")
    return usage.ru_maxrss * 1024


async def cold_answer_media(video: Path, transcribe_mode: TranscribeMode, model: Path,
                            scratch: Path) -> dict[str, float]:
    """A new video up to round 1's frames (64 at most), through the library, in a fresh cache; seconds per stage."""
    settings = Settings(vllm_url=None, media_dir=Path(tempfile.mkdtemp(dir=scratch)), transcribe=transcribe_mode,
                        asr_model=model)
    url = "data:video/mp4;base64," + base64.b64encode(await asyncio.to_thread(video.read_bytes)).decode()
    metrics = Metrics()
    async with open_library(settings, metrics) as library:
        started = time.perf_counter()
        asset = await library.from_data_url(url)
        total = await library.frame_count(asset)
        selection = select_frames(total, asset.probe.fps, min(64, total))
        await library.frames(asset, list(selection.indices), width=224, height=168)
        elapsed = time.perf_counter() - started
    shutil.rmtree(settings.media_dir)
    stages = {f"{stage}_s": seconds for stage, (_, seconds) in metrics.media_stage_totals().items()}
    return {"total_s": elapsed, **stages}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}


async def measure(minutes: float, repeats: int, model: Path, scratch: Path) -> dict[str, Any]:
    video = spoken_video(minutes)
    asr = Asr(model, None, 3600.0, 4 * 2**30, 0, 128)
    spans = [await transcription_s(video, asr, scratch) for _ in range(repeats)]
    seconds = statistics.median(s for s, _ in spans)
    off: list[dict[str, float]] = []
    heard: list[dict[str, float]] = []
    for _ in range(repeats):  # interleaved, so both see the same machine
        off.append(await cold_answer_media(video, "off", model, scratch))
        heard.append(await cold_answer_media(video, "when-needed", model, scratch))
    without, with_ = median_of(off), median_of(heard)
    return {
        "audio_minutes": minutes, "transcription_s": round(seconds, 3),
        "transcription_s_per_audio_minute": round(seconds / minutes, 3), "lines": spans[0][1],
        "worker_peak_rss_mib": round(worker_peak_rss(video, asr, scratch) / 2**20, 1),
        "cold_media_without_transcript": without, "cold_media_with_transcript": with_,
        "added_latency_s": round(with_["total_s"] - without["total_s"], 3),
        "ratio_with_to_without": round(with_["total_s"] / without["total_s"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="1,3")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    model = build_tiny_whisper()
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="transcription-", dir=CACHE))
    load_before = os.getloadavg()
    try:
        rows = [asyncio.run(measure(float(m), options.repeats, model, scratch)) for m in options.minutes.split(",")]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "cores": os.cpu_count(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "model": f"{model.name} (testmodel/tiny_whisper.py: random weights, d_model 64, 2+2 layers, int8 on CPU)",
        "command": f"bench/transcription.py --minutes {options.minutes} --repeats {options.repeats}",
        "results": rows,
    }
    for row in rows:
        print(f"{row['audio_minutes']:g} min of speech: transcribed in {row['transcription_s']} s "
              f"({row['transcription_s_per_audio_minute']} s per audio minute, {row['lines']} lines, worker peak "
              f"{row['worker_peak_rss_mib']} MiB); cold video to round-1 frames "
              f"{row['cold_media_with_transcript']['total_s']} s with the transcript vs "
              f"{row['cold_media_without_transcript']['total_s']} s without "
              f"(+{row['added_latency_s']} s, {row['ratio_with_to_without']}x)", flush=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"transcription-{out['date']}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
