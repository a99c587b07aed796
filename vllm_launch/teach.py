"""Teach the tiny model VideoChat-R1.5's reply shape, so that vLLM's greedy reply to a gateway round is exact.

Run as ``python -m vllm_launch.teach BASE_MODEL_DIR OUT_DIR [--steps N] [--seed S]`` in the vLLM environment.
All weights of the tiny model (vllm_launch.tiny_model) are fine-tuned in float32 on CPU on gateway-shaped
rounds: the official prompts (videochat_r15.prompts), multiple-choice and open-ended, intermediate and
final, over 2..16 JPEG frames of ffmpeg test patterns and of noise at 56..224-pixel sizes, with the fps the
gateway declares. The reply is the same whatever the video and question:

- intermediate round (glue instruction present):
  ``<think>The bars move.</think><answer>B</answer><glue>[(1.0, 2.5)]</glue>``
- final round: ``<think>The bars move.</think><answer>B</answer>``

Inputs and positions are built as vLLM 0.32 builds them (videochat_r15.inputs), so the greedy check with the
saved (bfloat16) weights that ends the script decodes what vLLM will serve.
"""

from __future__ import annotations

import argparse
import io
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from videochat_r15.decoding import greedy
from videochat_r15.inputs import Encoder, Round, decode_jpeg
from videochat_r15.prompts import round_prompt

THINK_ANSWER = "<think>The bars move.</think><answer>B</answer>"
GLUE_REPLY = THINK_ANSWER + "<glue>[(1.0, 2.5)]</glue>"
FINAL_REPLY = THINK_ANSWER

SIDE_MIN, SIDE_MAX = 56, 224
MAX_FRAME_PIXELS = 224 * 224  # the tiny processor's max_pixels: larger frames would be resized by vLLM
FACTOR = 28
# (width, height, seconds, rate) of the test-pattern clips frames are cut from; the first is the tests' clip.
CLIPS = [(320, 240, 6.0, 30), (640, 360, 4.0, 25), (176, 144, 10.0, 15), (240, 320, 3.0, 30),
         (480, 480, 5.0, 24), (1280, 720, 2.0, 30), (320, 240, 20.0, 30), (200, 400, 8.0, 12)]
WORDS = [
    "the", "a", "an", "of", "in", "on", "at", "to", "and", "or", "but", "what", "which", "who", "when", "where",
    "why", "how", "is", "are", "was", "were", "does", "did", "do", "can", "video", "clip", "man", "woman", "dog",
    "cat", "car", "ball", "person", "people", "child", "bird", "table", "door", "kitchen", "road", "park", "room",
    "runs", "walks", "opens", "closes", "eats", "sits", "jumps", "moves", "falls", "turns", "picks", "holds",
    "throws", "drives", "talks", "stops", "red", "blue", "green", "yellow", "white", "black", "bright", "dark",
    "left", "right", "top", "bottom", "first", "last", "second", "end", "start", "color", "colour", "number", "time",
    "happens", "happening", "shown", "appears", "bars", "pattern", "screen", "scene", "frame", "moment", "many",
    "much", "after", "before", "during", "while", "then", "again", "there", "here", "this", "that", "these", "those",
    "it", "its", "their", "glue", "answer", "think", "option", "letter", "seconds", "period", "precise", "same",
    "select", "provide", "tags", "format", "example",
]
ODD_WORDS = ["naïve", "café", "Zürich", "東京", "видео", "😀", "x²", "O'Neil", "e.g.", "3.5", "1080p", "#42",
             "(maybe)", "\"quoted\"", "[bracket]", "co-op", "AT&T", "50%", "snake_case", "C++"]


# --- frames ---------------------------------------------------------------------------------------------


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


# --- text -----------------------------------------------------------------------------------------------


def random_text(rng: np.random.Generator, low: int, high: int) -> str:
    words = [str(rng.choice(ODD_WORDS)) if rng.random() < 0.08 else str(rng.choice(WORDS))
             for _ in range(int(rng.integers(low, high + 1)))]
    text = " ".join(words)
    if rng.random() < 0.7:
        text = text[:1].upper() + text[1:]
    return text


def random_question(rng: np.random.Generator) -> str:
    text = random_text(rng, 1, 28) + str(rng.choice(["?", "?", ".", "", "!", " ?"]))
    if rng.random() < 0.1:
        text += "\n" + random_text(rng, 1, 10)
    return text


def random_options(rng: np.random.Generator) -> list[str]:
    count = int(rng.integers(2, 7))
    end = "." if rng.random() < 0.5 else ""
    return [f"{chr(65 + i)}. {random_text(rng, 1, 9)}{end}" for i in range(count)]


def random_round(rng: np.random.Generator, pool: FramePool) -> Round:
    nframes = 2 if rng.random() < 0.05 else int(rng.integers(2, 9)) * 2
    if rng.random() < 0.6:
        frames, fps = pool.pattern_video(rng, nframes)
        if rng.random() < 0.5:
            fps = float(np.exp(rng.uniform(math.log(0.5), math.log(4.0))))
    else:
        frames = pool.noise_video(rng, nframes)
        fps = 2.0 if rng.random() < 0.3 else float(np.exp(rng.uniform(math.log(0.5), math.log(4.0))))
    options = random_options(rng) if rng.random() < 0.5 else None
    glue = bool(rng.random() < 0.5)
    prompt = round_prompt(random_question(rng), options, glue=glue)
    return Round(frames, round(fps, 4), prompt, GLUE_REPLY if glue else FINAL_REPLY)


# --- training -------------------------------------------------------------------------------------------


def check_rounds(pool: FramePool, rng: np.random.Generator) -> list[Round]:
    """Held-out rounds: the tests' 320x240 clip at the gateway's 12 frames / 2 fps, plus random ones."""
    frames, _ = pool.pattern[0]
    twelve = np.stack([frames[i] for i in np.linspace(0, len(frames) - 1, 12).round().astype(int)])
    question, options = "What moves in the video?", ["A. Nothing.", "B. The bars.", "C. A dog.", "D. A car."]
    fixed = [
        Round(twelve, 2.0, round_prompt(question, options, glue=True), GLUE_REPLY, "clip mc glue"),
        Round(twelve, 2.0, round_prompt(question, options, glue=False), FINAL_REPLY, "clip mc final"),
        Round(twelve, 2.0, round_prompt("Describe the video.", None, glue=True), GLUE_REPLY, "clip open glue"),
        Round(twelve, 2.0, round_prompt("Describe the video.", None, glue=False), FINAL_REPLY, "clip open final"),
    ]
    extra = [random_round(rng, pool) for _ in range(8)]
    return fixed + [Round(r.frames, r.fps, r.prompt, r.reply, "random") for r in extra]


def train(model: Any, encoder: Encoder, pool: FramePool, rng: np.random.Generator, *, steps: int,
          batch_size: int, lr: float, started: float) -> None:
    """AdamW over all weights, warm-up then cosine decay, loss on the reply tokens only."""
    import torch

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    for step in range(steps):
        loss = model(**encoder.batch([random_round(rng, pool) for _ in range(batch_size)])).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step % 25 == 0 or step == steps - 1:
            _say(f"step {step:4d}  loss {loss.item():.5f}  {time.monotonic() - started:6.1f} s")
    model.eval()


def check(model_dir: Path, encoder: Encoder, rounds: list[Round]) -> int:
    """Greedy-decode ``rounds`` with the weights saved in model_dir; print each and return the misses.

    HF computes in float32 from the saved bfloat16 weights; vLLM computes in bfloat16, so the printed
    margins (logit gap of the weakest step) are the headroom the model needs there.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    misses = 0
    for item in rounds:
        got, margin = greedy(model, encoder, item)
        ok = got == item.reply
        misses += not ok
        t, h, w = item.frames.shape[:3]
        _say(f"{'ok  ' if ok else 'MISS'} {item.label:15s} {t:2d}x{h}x{w:<3d} fps {item.fps:<6g} margin {margin:5.1f}"
             f"{'' if ok else ' ' + repr(got)}")
    return misses


def teach(base: Path, out_dir: Path, *, steps: int, seed: int, batch_size: int, lr: float) -> None:
    """Fine-tune the model in ``base`` and write it to ``out_dir``, only if every held-out round is exact."""
    import torch
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vchat-teach-") as workdir:  # clips live outside the repo
        pool = FramePool(rng, Path(workdir))
    encoder = Encoder(base)
    stored_dtype = AutoConfig.from_pretrained(base).text_config.dtype  # bfloat16 for the tiny model
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    _say(f"frames ready in {time.monotonic() - started:.1f} s; training {steps} steps of {batch_size}")
    train(model, encoder, pool, rng, steps=steps, batch_size=batch_size, lr=lr, started=started)

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(stored_dtype).save_pretrained(tmp)
    # Only the weights change: every other file is the base model's, byte for byte (save_pretrained would
    # record the float32 the model was trained in as config.json's dtype).
    for path in base.iterdir():
        if path.is_file() and path.suffix != ".safetensors":
            shutil.copy2(path, tmp / path.name)
    if misses := check(tmp, encoder, check_rounds(pool, np.random.default_rng(seed + 1))):
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"{misses} held-out rounds were not exact; nothing was written")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    _say(f"wrote {out_dir.resolve()} in {time.monotonic() - started:.1f} s")


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("base_model_dir", type=Path, help="the tiny model (python -m vllm_launch.tiny_model)")
    parser.add_argument("out_dir", type=Path, help="directory to write the taught model into")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps")
    parser.add_argument("--seed", type=int, default=0, help="seed for data and initialisation")
    parser.add_argument("--batch-size", type=int, default=8, help="rounds per step")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    teach(args.base_model_dir, args.out_dir, steps=args.steps, seed=args.seed, batch_size=args.batch_size, lr=args.lr)


if __name__ == "__main__":
    main()
