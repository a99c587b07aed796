"""Test videos generated with the real ffmpeg (lavfi test sources), cached by their parameters."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

CLIP_CACHE = Path(__file__).resolve().parents[2] / "var" / "test-cache" / "clips"


def make_clip(
    seconds: float = 6.0,
    size: str = "320x240",
    fps: int = 30,
    *,
    vcodec: str = "libx264",
    audio: bool = True,
    container: str = "mp4",
    pix_fmt: str = "yuv420p",
    extra: tuple[str, ...] = (),
) -> Path:
    """A clip of ``seconds`` of ffmpeg's moving test pattern (and a sine tone), built once and cached."""
    key = repr((seconds, size, fps, vcodec, audio, container, pix_fmt, extra)).encode()
    out = CLIP_CACHE / f"clip-{hashlib.sha256(key).hexdigest()[:16]}.{container}"
    if out.exists():
        return out
    CLIP_CACHE.mkdir(parents=True, exist_ok=True)
    args = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    args += ["-c:v", vcodec, "-pix_fmt", pix_fmt]
    if vcodec == "libx264":
        args += ["-preset", "veryfast", "-g", str(fps)]
    if audio:
        args += ["-c:a", "aac" if container in ("mp4", "mov", "mkv") else "libvorbis", "-shortest"]
    args += [*extra]
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{container}")
    subprocess.run([*args, str(tmp)], check=True, timeout=600)
    tmp.rename(out)
    return out


# Frame-number code: NUMBER_BITS columns, each BIT_WIDTH pixels wide, white where bit b of the frame number is set.
NUMBER_BITS = 14
BIT_WIDTH = 16
NUMBERED_SIZE = f"{NUMBER_BITS * BIT_WIDTH}x32"


def make_numbered_clip(seconds: float, fps: int, *, setpts: str | None = None, x264: str = "",
                       size: str = NUMBERED_SIZE) -> Path:
    """A clip whose frame N shows N in binary (see frame_numbers), encoded with libx264 and x264 params ``x264``
    (e.g. "open-gop=1:keyint=30:bframes=3"); ``setpts`` rewrites timestamps for variable frame rates."""
    key = repr(("numbered", seconds, fps, setpts, x264, size)).encode()
    out = CLIP_CACHE / f"numbered-{hashlib.sha256(key).hexdigest()[:16]}.mp4"
    if out.exists():
        return out
    CLIP_CACHE.mkdir(parents=True, exist_ok=True)
    width = int(size.split("x")[0])
    code = (f"geq=lum='255*mod(floor(N/pow(2\\,floor(X*{NUMBER_BITS}/{width})))\\,2)':cb=128:cr=128")
    chain = f"color=black:size={size}:rate={fps}:duration={seconds},format=yuv420p,{code}"
    if setpts:
        chain += f",setpts='{setpts}'"
    tmp = out.with_name(f".{out.name}.{os.getpid()}.mp4")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", chain,
                    "-c:v", "libx264", "-preset", "ultrafast", *(["-x264-params", x264] if x264 else []),
                    "-fps_mode", "vfr", "-pix_fmt", "yuv420p", str(tmp)], check=True, timeout=600)
    tmp.rename(out)
    return out


def frame_numbers(jpegs: list[bytes]) -> list[int]:
    """The frame number each JPEG of a numbered clip shows (after any resize the gateway applied)."""
    if not jpegs:
        return []
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "image2pipe", "-c:v", "mjpeg", "-i", "-",
                          "-vf", f"scale={NUMBER_BITS}:1:flags=area", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         input=b"".join(jpegs), check=True, capture_output=True, timeout=120).stdout
    rows = [raw[k:k + NUMBER_BITS] for k in range(0, len(raw), NUMBER_BITS)]
    return [sum(1 << bit for bit, value in enumerate(row) if value > 128) for row in rows]


def decoded_pts(video: Path) -> list[float]:
    """Every frame's time (seconds from the first) from a full decode: the reference frame times."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "frame=best_effort_timestamp_time", "-of", "csv=p=0", str(video)],
                         check=True, capture_output=True, text=True, timeout=600).stdout
    times = [float(line.split(",")[0]) for line in out.split() if line.strip()]
    return [t - times[0] for t in times]


def decoded_keyframes(video: Path) -> list[int]:
    """The frames a full decode marks as keyframes, by number in presentation order."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "frame=key_frame,best_effort_timestamp_time", "-of", "csv=p=0", str(video)],
                         check=True, capture_output=True, text=True, timeout=600).stdout
    rows = sorted((float(t), key == "1") for key, t, *_ in (line.split(",") for line in out.split() if line.strip()))
    return [n for n, (_, key) in enumerate(rows) if key]


# Three spoken lines of a 6 s clip, in SubRip; the frames of a 6 s clip at 2 fps cover every one.
SUBTITLES_SRT = """1
00:00:00,500 --> 00:00:01,800
The <i>red</i> fox jumps.

2
00:00:02,500 --> 00:00:03,900
{\\an8}Over the lazy dog.

3
00:00:04,200 --> 00:00:05,600
It &amp; its friend run away.
"""


def make_subtitled_clip(srt: str = SUBTITLES_SRT, *, seconds: float = 6.0, container: str = "mp4",
                        scodec: str = "mov_text", language: str | None = "eng", video: Path | None = None) -> Path:
    """make_clip (or ``video``) with a subtitle track muxed in: ``srt`` (SubRip text) as ``scodec`` (mov_text in MP4;
    srt, ass or webvtt in Matroska)."""
    key = repr(("subtitled", srt, seconds, container, scodec, language, *([video.name] if video else []))).encode()
    out = CLIP_CACHE / f"subtitled-{hashlib.sha256(key).hexdigest()[:16]}.{container}"
    if out.exists():
        return out
    video = video or make_clip(seconds, "320x240", 30, container=container)
    source = out.with_name(f".{out.name}.{os.getpid()}.srt")
    source.write_text(srt)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{container}")
    tags = ["-metadata:s:s:0", f"language={language}"] if language else []
    try:
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(video), "-i", str(source),
                        "-map", "0", "-map", "1", "-c:v", "copy", "-c:a", "copy", "-c:s", scodec, *tags, str(tmp)],
                       check=True, timeout=600)
    finally:
        source.unlink(missing_ok=True)
    tmp.rename(out)
    return out


@dataclass(frozen=True)
class SpokenClip:
    """A clip whose audio is silence, then ``text`` spoken from ``start`` to ``end`` (seconds), then silence."""

    path: Path
    text: str
    start: float
    end: float


def make_spoken_clip(text: str = "The red fox jumps over the lazy dog. Then it runs away into the forest.", *,
                     before: float = 3.0, after: float = 3.0) -> SpokenClip:
    """make_clip's picture with speech synthesized by espeak-ng (Debian's, as `make browser-deps` installs) between
    ``before`` and ``after`` seconds of silence; the spoken span is the voice's own, measured by ffmpeg's
    silencedetect on the synthesized audio (espeak pads it with a little silence)."""
    key = repr(("spoken", text, before, after)).encode()
    out = CLIP_CACHE / f"spoken-{hashlib.sha256(key).hexdigest()[:16]}.mp4"
    CLIP_CACHE.mkdir(parents=True, exist_ok=True)
    wav = out.with_name(f".{out.name}.{os.getpid()}.wav")
    try:
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, timeout=120)
        voice_start, voice_end, spoken = _voiced(wav)
        if not out.exists():
            seconds = before + spoken + after
            tmp = out.with_name(f".{out.name}.{os.getpid()}.mp4")
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
                            "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=30:duration={seconds:.3f}",
                            "-i", str(wav),
                            "-filter_complex", f"[1:a]adelay={int(before * 1000)}:all=1,apad,aresample=44100[a]",
                            "-map", "0:v", "-map", "[a]", "-t", f"{seconds:.3f}", "-c:v", "libx264", "-preset",
                            "veryfast", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", str(tmp)],
                           check=True, timeout=600)
            tmp.rename(out)
    finally:
        wav.unlink(missing_ok=True)
    return SpokenClip(out, text, round(before + voice_start, 3), round(before + voice_end, 3))


def _voiced(wav: Path) -> tuple[float, float, float]:
    """Where the voice starts and ends in wav, and its length (seconds), by ffmpeg's silencedetect at -40 dB."""
    probe = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-i", str(wav), "-af",
                            "silencedetect=noise=-40dB:d=0.05", "-f", "null", "-"],
                           capture_output=True, text=True, check=True, timeout=120)
    ends = [float(v) for v in re.findall(r"silence_end: ([\d.]+)", probe.stderr)]
    starts = [float(v) for v in re.findall(r"silence_start: ([\d.]+)", probe.stderr)]
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", probe.stderr)
    assert duration is not None
    length = int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3])
    voice_start = ends[0] if starts and starts[0] < 0.01 else 0.0
    voice_end = starts[-1] if starts and starts[-1] > voice_start and len(starts) > len(ends) else length
    return voice_start, voice_end, length
