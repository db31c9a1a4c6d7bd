"""The learning-rate schedules every trainer uses.

`cosine`: linear warm-up, then a half cosine to a floor at the run's last step (fixed at the start).
`constant`: linear warm-up, then the peak rate until the last `cooldown_steps` steps, which fall
linearly to the floor. A constant run can be extended (resumed with a larger `steps`) and a cooldown
branch taken from any of its checkpoints (a copy of the run resumed with `steps` = its step + N and
`cooldown_steps` = N): the steps before the branch point do not depend on where the run will end.
"""
from __future__ import annotations

import math

__all__ = ["SCHEDULES", "lr_at"]

SCHEDULES = ("cosine", "constant")


def lr_at(step: int, *, steps: int, lr: float, warmup_steps: int, min_lr_fraction: float,
          schedule: str = "cosine", cooldown_steps: int = 0) -> float:
    """Learning rate of optimizer step `step` (0-based), before any per-group multiplier.

    Steps 0 .. warmup_steps-1 rise linearly to `lr` (step k gets lr * (k+1) / warmup_steps). Then:
    cosine: a half cosine falls from `lr` to `min_lr_fraction * lr` at `steps` and stays there;
    constant: `lr` until `steps - cooldown_steps`, then linear to `min_lr_fraction * lr` at `steps`.
    The schedule depends only on these numbers, so a run stopped early (`stop_at_step`) and resumed
    follows exactly the schedule of an uninterrupted one.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        start = steps - cooldown_steps
        if cooldown_steps <= 0 or step < start:
            return lr
        t = min(1.0, (step - start) / cooldown_steps)
        return lr * (1 - (1 - min_lr_fraction) * t)
    t = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return lr * (min_lr_fraction + (1 - min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * t)))
