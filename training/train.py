"""The training loop: seeded data order, gradient accumulation, a progress bar with the loss, checkpoints, resume."""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from training import checkpoint
from training.collate import Encoded, Encoder, batch
from training.conversation import prompted
from training.dataset import Dataset
from training.model import Placement
from training.options import TrainConfig
from training.order import step_batches, total_steps

logger = logging.getLogger("training")
# Encoded samples kept in memory (a 7B-sized sample of 64 frames is ~100 MB of pixels; the tiny model's ~15 MB).
CACHED_SAMPLES = 16


@dataclass(frozen=True)
class TrainResult:
    """What the run did, for the manifest."""

    steps: int
    resumed_from: int | None
    losses: list[float]
    seconds: float
    samples_per_step: int

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else math.nan


def fingerprint(config: TrainConfig, dataset: Dataset) -> dict[str, Any]:
    """What a checkpoint must share with the run resuming it (lr, steps and epochs may change)."""
    return {"dataset_sha256": dataset.sha256, "base": str(config.base.resolve()), "rank": config.rank,
            "alpha": config.alpha, "dropout": config.dropout, "seed": config.seed, "batch_size": config.batch_size,
            "grad_accum": config.grad_accum, "prompt_format": config.prompt_format, "frames": config.frames,
            "fps": config.fps}


class _Samples:
    """Encoded samples by index, the most recently used few kept."""

    def __init__(self, dataset: Dataset, encoder: Encoder, config: TrainConfig) -> None:
        self.dataset, self.encoder, self.config = dataset, encoder, config
        self.cache: OrderedDict[int, Encoded] = OrderedDict()

    def __getitem__(self, index: int) -> Encoded:
        if index in self.cache:
            self.cache.move_to_end(index)
            return self.cache[index]
        sample = self.dataset.samples[index]
        encoded = self.encoder.encode(prompted(sample.turns, self.config.prompt_format),
                                      self.dataset.frames[sample.video])
        self.cache[index] = encoded
        if len(self.cache) > CACHED_SAMPLES:
            self.cache.popitem(last=False)
        return encoded


def _to(inputs: dict[str, Any], where: Placement) -> dict[str, Any]:
    import torch

    dtype = getattr(torch, where.dtype)
    return {k: v.to(where.device, dtype=dtype if v.is_floating_point() else None) for k, v in inputs.items()}


def train(config: TrainConfig, dataset: Dataset, encoder: Encoder, model: Any, where: Placement) -> TrainResult:
    """Train model (a peft model) in place; checkpoints every --checkpoint-every steps and at the end."""
    import torch
    from tqdm import tqdm

    started = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    fp = fingerprint(config, dataset)
    first, losses, resumed_from = 0, [], None
    if config.resume:
        resumed = checkpoint.restore(config.checkpoints, model, optimizer, fp)
        for group in optimizer.param_groups:
            group["lr"] = config.lr
        first, losses, resumed_from = resumed.step, resumed.losses, resumed.step
        logger.info("resumed from step %d (%s)", resumed.step, resumed.path)
    total = total_steps(samples=len(dataset.samples), epochs=config.epochs, batch_size=config.batch_size,
                        grad_accum=config.grad_accum, max_steps=config.max_steps)
    samples = _Samples(dataset, encoder, config)
    model.train()
    bar = tqdm(total=total, initial=min(first, total), desc=f"training {config.name}", unit="step",
               disable=not config.progress, dynamic_ncols=True, mininterval=0.5)
    try:
        for step in range(first, total):
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for micro in step_batches(step, seed=config.seed, samples=len(dataset.samples),
                                      batch_size=config.batch_size, grad_accum=config.grad_accum):
                inputs = _to(batch([samples[i] for i in micro], encoder.pad), where)
                loss = model(**inputs).loss / config.grad_accum
                loss.backward()
                step_loss += float(loss.item())
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(step_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
            done = step + 1
            if done == total or (config.checkpoint_every and done % config.checkpoint_every == 0):
                path = checkpoint.save(config.checkpoints, done, model, optimizer, losses, fp,
                                       config.keep_checkpoints)
                logger.info("checkpoint: step %d, loss %.4f -> %s", done, step_loss, path)
    finally:
        bar.close()
    model.eval()
    return TrainResult(max(first, total), resumed_from, losses, time.perf_counter() - started,
                       config.batch_size * config.grad_accum)
