"""LoRA training throughput (samples/s) on the tiny model on CPU, through training.train as the CLI runs it.

    .venv-vllm/bin/python bench/training_throughput.py [--clips 4] [--steps 20]

A dataset of generated clips (6 s test patterns at four sizes: the gateway's frame plan gives each 12 frames) is
validated and sampled by the gateway's media code, then trained for --steps optimizer steps at a few batch shapes,
each from the same seeded start. samples/s counts every sample of every step, including the processor's work
(frames -> pixels, chat template, positions), which the trainer caches for up to 16 samples.
Run with the gateway's Python and it re-runs itself with .venv-vllm's (it needs torch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
CACHE = ROOT / "var" / "bench-cache"
SIZES = ["320x240", "640x360", "240x320", "480x480", "176x144", "1280x720", "200x400", "360x640"]
REPLY = "<think>a red square</think><answer>C</answer>"
SHAPES = [(1, 1), (2, 1), (1, 4)]  # (batch size, gradient accumulation)


def tiny_model() -> Path:
    out = CACHE / "tiny-model"
    if not (out / "config.json").is_file():
        from testmodel.tiny_model import build

        print(f"building {out.relative_to(ROOT)} (once)…", flush=True)
        build(out)
    return out


def write_dataset(folder: Path, clips: int) -> Path:
    from tests.support.clips import make_clip

    lines = [{"video_path": str(make_clip(seconds=6.0, size=SIZES[i % len(SIZES)], fps=30)),
              "text": f"USER: What shape is shown?\nA. a circle\nB. a red square\nASSISTANT: {REPLY}"}
             for i in range(clips)]
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    options = parser.parse_args()
    import torch

    from training.collate import Encoder
    from training.conversation import prompted
    from training.dataset import load_dataset
    from training.frames import FrameSettings
    from training.model import add_lora, load_base, placement
    from training.options import parse_args
    from training.train import train
    from vchat_settings import Settings

    base = tiny_model()
    with tempfile.TemporaryDirectory(prefix="vchat-bench-train-") as tmp:
        work = Path(tmp)
        data = write_dataset(work, options.clips)
        started = time.perf_counter()
        dataset = load_dataset(data, work / "frames", FrameSettings.from_settings(Settings(), None, None))
        prepared = time.perf_counter() - started
        encoder = Encoder(base)
        started = time.perf_counter()
        encoded = [encoder.encode(prompted(s.turns, "r15"), dataset.frames[s.video]) for s in dataset.samples]
        encode_ms = (time.perf_counter() - started) * 1000 / len(encoded)
        where = placement(False)
        tokens = sum(len(e.input_ids) for e in encoded) / len(encoded)
        shapes = {f"{f.width}x{f.height}x{len(f.jpegs)}" for f in dataset.frames.values()}
        print(f"tiny model on {where.device} ({where.dtype}), torch threads {torch.get_num_threads()}; "
              f"{options.clips} clips, frames {', '.join(sorted(shapes))}")
        print(f"dataset validated + frames sampled (probe, sanitize, frames): {prepared:.2f} s "
              f"({prepared / options.clips:.2f} s/video)")
        print(f"encode (JPEG decode, processor, positions): {encode_ms:.0f} ms/sample, {tokens:.0f} tokens/sample")
        print()
        print(f"{'batch':>5} {'accum':>5} {'steps':>5} {'samples':>7} {'seconds':>8} {'samples/s':>9} {'s/step':>7}")
        for batch_size, accum in SHAPES:
            config = parse_args(["--data", str(data), "--base", str(base), "--out", str(work / "out" / "a"),
                                 "--max-steps", str(options.steps), "--batch-size", str(batch_size),
                                 "--grad-accum", str(accum), "--no-progress", "--overwrite"])
            torch.manual_seed(0)
            model = add_lora(load_base(base, where, False), config.rank, config.alpha, config.dropout)
            result = train(config, dataset, encoder, model, where)
            samples = options.steps * batch_size * accum
            print(f"{batch_size:>5} {accum:>5} {options.steps:>5} {samples:>7} {result.seconds:8.2f} "
                  f"{samples / result.seconds:9.2f} {result.seconds / options.steps:7.3f}", flush=True)


if __name__ == "__main__":
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        os.execv(str(VLLM_PYTHON), [str(VLLM_PYTHON), *sys.argv])
    main()
