"""Frames the test model is taught on: ffmpeg's test patterns cut from H.264 clips at the gateway's JPEG quality,
and noise, decoded as vLLM decodes them, at 28-pixel multiples the tiny processor does not resize."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from videochat_r15.inputs import decode_jpeg

SIDE_MIN, SIDE_MAX = 56, 224
MAX_FRAME_PIXELS = 224 * 224  # the tiny processor's max_pixels: larger frames would be resized by vLLM
FACTOR = 28
# (width, height, seconds, rate) of the test-pattern clips frames are cut from; the first is the tests' clip.
CLIPS = [(320, 240, 6.0, 30), (640, 360, 4.0, 25), (176, 144, 10.0, 15), (240, 320, 3.0, 30),
         (480, 480, 5.0, 24), (1280, 720, 2.0, 30), (320, 240, 20.0, 30), (200, 400, 8.0, 12)]


def _jpeg_frames(data: bytes) -> list[bytes]:
    """Split an ffmpeg image2pipe MJPEG stream into its JPEG files."""
    frames, start = [], 0
    while (end := data.find(b"\xff\xd9", start)) >= 0:
        frames.append(data[start:end + 2])
        start = end + 2
    return frames


def make_clip(directory: Path, width: int, height: int, seconds: float, rate: int) -> Path:
    """An H.264 clip of ffmpeg's testsrc2 pattern, made as tests/support/clips.py makes them."""
    out = directory / f"clip-{width}x{height}-{seconds:g}s-{rate}.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=size={width}x{height}:rate={rate}:duration={seconds}",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-g", str(rate), str(out)],
        check=True, timeout=300,
    )
    return out


def extract_frames(clip: Path, width: int, height: int, rate: float) -> list[bytes]:
    """Frames of ``clip`` at ``rate`` fps scaled to width x height, as JPEG (q 3) like the gateway sends."""
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(clip), "-vf", f"fps={rate},scale={width}:{height}",
         "-c:v", "mjpeg", "-q:v", "3", "-f", "image2pipe", "-"],
        check=True, capture_output=True, timeout=300,
    )
    return _jpeg_frames(proc.stdout)


def random_size(rng: np.random.Generator, aspect: float | None = None) -> tuple[int, int]:
    """(height, width), multiples of 28 in [56, 224] and at most 224*224 pixels; near ``aspect`` (h/w) if given."""
    sides = np.arange(SIDE_MIN, SIDE_MAX + 1, FACTOR)
    while True:
        width = int(rng.choice(sides))
        if aspect is None:
            height = int(rng.choice(sides))
        else:
            height = int(min(max(round(width * aspect / FACTOR) * FACTOR, SIDE_MIN), SIDE_MAX))
        if height * width <= MAX_FRAME_PIXELS:
            return height, width


class FramePool:
    """Test-pattern frames (cut by ffmpeg from H.264 clips at a few sizes each) and noise, as decoded JPEGs."""

    def __init__(self, rng: np.random.Generator, workdir: Path, sizes_per_clip: int = 4) -> None:
        self.pattern: list[tuple[list[np.ndarray[Any, Any]], float]] = []  # (frames, clip seconds)
        for width, height, seconds, rate in CLIPS:
            clip = make_clip(workdir, width, height, seconds, rate)
            sizes = [random_size(rng, height / width) for _ in range(sizes_per_clip - 1)] + [random_size(rng)]
            if (width, height) == (320, 240):
                sizes.insert(0, (168, 224))  # the gateway's size for the tests' clip; pattern[0] below
            keep_rate = min(4.0, 48 / seconds)  # enough frames for 16 evenly spread ones, without hoarding memory
            for h, w in dict.fromkeys(sizes):
                self.pattern.append(([decode_jpeg(j) for j in extract_frames(clip, w, h, keep_rate)], seconds))

    def pattern_video(self, rng: np.random.Generator, nframes: int) -> tuple[np.ndarray[Any, Any], float]:
        """nframes frames spread uniformly over one test clip, and the average fps they represent."""
        frames, seconds = self.pattern[int(rng.integers(len(self.pattern)))]
        picked = np.linspace(0, len(frames) - 1, nframes).round().astype(int)
        return np.stack([frames[i] for i in picked]), nframes / seconds

    @staticmethod
    def noise_video(rng: np.random.Generator, nframes: int) -> np.ndarray[Any, Any]:
        """Random frames (pixel noise, blocky noise or flat colour), JPEG-compressed like real frames."""
        from PIL import Image

        height, width = random_size(rng)
        kind = rng.integers(3)
        out = []
        for _ in range(nframes):
            if kind == 0:
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            elif kind == 1:
                cells = rng.integers(0, 256, (max(1, height // 16), max(1, width // 16), 3), dtype=np.uint8)
                pixels = np.asarray(Image.fromarray(cells).resize((width, height), Image.Resampling.BILINEAR))
            else:
                pixels = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (height, width, 3))
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, "JPEG", quality=int(rng.integers(70, 96)))
            out.append(decode_jpeg(buffer.getvalue()))
        return np.stack(out)
