"""Which samples each optimizer step trains on: seeded epochs, a pure function of the step (so resume is exact)."""

from __future__ import annotations

import math
import random


def total_steps(*, samples: int, epochs: float, batch_size: int, grad_accum: int, max_steps: int | None) -> int:
    """max_steps if given, else enough optimizer steps for ``epochs`` passes over the samples."""
    if max_steps is not None:
        return max_steps
    return max(1, math.ceil(epochs * samples / (batch_size * grad_accum)))


def epoch_order(seed: int, epoch: int, samples: int) -> list[int]:
    """A permutation of range(samples), fixed by (seed, epoch) on every platform and Python version."""
    order = list(range(samples))
    random.Random(f"vchat-train:{seed}:{epoch}").shuffle(order)
    return order


def step_batches(step: int, *, seed: int, samples: int, batch_size: int, grad_accum: int) -> list[list[int]]:
    """Sample indices of each micro-batch of one optimizer step.

    The data is an endless stream of epochs, each shuffled by epoch_order; step s takes the next
    batch_size * grad_accum samples of it. A function of the step alone, so a resumed run sees the same data.
    """
    per_step = batch_size * grad_accum
    picked = []
    for position in range(step * per_step, (step + 1) * per_step):
        epoch, offset = divmod(position, samples)
        picked.append(epoch_order(seed, epoch, samples)[offset])
    return [picked[i:i + batch_size] for i in range(0, per_step, batch_size)]
