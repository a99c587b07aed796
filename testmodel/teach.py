"""Teach the tiny model VideoChat-R1.5's reply shape, so that vLLM's greedy reply to a gateway round is exact.

Run as ``python -m testmodel.teach BASE_MODEL_DIR OUT_DIR [--steps N] [--seed S]`` in the vLLM environment.
All weights of the tiny model (testmodel.tiny_model) are fine-tuned in float32 on CPU on gateway-shaped
rounds: the official prompts (videochat_r15.prompts), multiple-choice and open-ended, intermediate and
final, over 2..16 JPEG frames of ffmpeg test patterns and of noise at 56..224-pixel sizes, with the fps the
gateway declares. The reply is the same whatever the video and question:

- intermediate round (glue instruction present):
  ``<think>The bars move.</think><answer>B</answer><glue>[(1.0, 2.5)]</glue>``
- final round: ``<think>The bars move.</think><answer>B</answer>``

The rounds come from testmodel.rounds over testmodel.frames; inputs and positions are built as vLLM 0.32 builds
them (videochat_r15.inputs), so the greedy check with the saved (bfloat16) weights that ends the script decodes
what vLLM will serve.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from testmodel.frames import FramePool
from testmodel.rounds import check_rounds, random_round
from videochat_r15.decoding import greedy
from videochat_r15.inputs import Encoder, Round


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
    parser.add_argument("base_model_dir", type=Path, help="the tiny model (python -m testmodel.tiny_model)")
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
