"""Test videos generated with the real ffmpeg (lavfi test sources), cached by their parameters."""

from __future__ import annotations

import hashlib
import os
import subprocess
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
