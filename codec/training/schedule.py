"""The learning-rate schedule every trainer uses: linear warm-up, then cosine decay to a floor."""
from __future__ import annotations

import math

__all__ = ["lr_at"]


def lr_at(step: int, *, steps: int, lr: float, warmup_steps: int, min_lr_fraction: float) -> float:
    """Learning rate of optimizer step `step` (0-based), before any per-group multiplier.

    Steps 0 .. warmup_steps-1 rise linearly to `lr` (step k gets lr * (k+1) / warmup_steps); from
    `warmup_steps` a half cosine falls from `lr` to `min_lr_fraction * lr` at `steps` and stays there.
    The schedule depends only on these numbers, so a run stopped early (`stop_at_step`) and resumed
    follows exactly the schedule of an uninterrupted one.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return lr * (min_lr_fraction + (1 - min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * t)))
