"""A toy `TrainingLoop` task for tests/test_training_loop.py: a tiny two-layer net fitting a noisy linear
map. Its batches draw from every random stream the loop must restore on resume (the task's own per-rank
generator, and the global torch, NumPy and Python generators), and it can advance a fake clock and send
itself SIGTERM, so stop conditions are tested without sleeping."""
from __future__ import annotations

import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vqcodec.files import atomic_write
from vqcodec.training.loop import Built, LoopConfig, OptimizerSpec, RunContext, Task

HEAD_LR_SCALE = 0.5


@dataclass(kw_only=True)
class ToyConfig(LoopConfig):
    steps: int = 8
    lr: float = 0.05
    warmup_steps: int = 2
    min_lr_fraction: float = 0.1
    log_every: int = 2
    val_every: int = 4
    batch_size: int = 4
    signal_at_step: int | None = None  # this process sends itself SIGTERM while drawing that step's batch
    signal_rank: int | None = None  # ... only on this rank (None: every rank)


class FakeClock:
    """A monotonic clock (seconds) that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ToyTask(Task):
    name = "toy"
    run_defining = ("batch_size",)
    progress_keys = ("mse",)
    config: ToyConfig

    def __init__(self, config: ToyConfig, clock: FakeClock | None = None, seconds_per_step: float = 60.0) -> None:
        super().__init__(config)
        self.clock, self.seconds_per_step = clock, seconds_per_step

    def build(self, ctx: RunContext) -> Built:
        self.rank = ctx.rank
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
        self.gen = torch.Generator().manual_seed(100 + ctx.rank)  # every rank draws different data
        self.w = torch.tensor([[1.0], [-2.0], [0.5]])
        groups = [{"params": model[0].parameters(), "lr_scale": 1.0},
                  {"params": model[2].parameters(), "lr_scale": HEAD_LR_SCALE}]
        return Built(model, groups, OptimizerSpec("adamw", weight_decay=0.01, grad_clip=1.0))

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.clock is not None:
            self.clock.now += self.seconds_per_step
        cfg = self.config
        if cfg.signal_at_step == step and cfg.signal_rank in (None, self.rank):
            os.kill(os.getpid(), signal.SIGTERM)
        x = torch.randn(cfg.batch_size, 3, generator=self.gen)
        noise = 0.1 * torch.randn(cfg.batch_size, 1)
        scale = 1.0 + random.random()
        shift = float(np.random.rand())
        return x, (x @ self.w) * scale + shift + noise

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x, y = batch
        err = (model(x) - y) ** 2
        mse = err.mean()
        half = len(err) // 2
        return mse, {"mse": mse.item(), "per_half": [err[:half].mean().item(), err[half:].mean().item()]}

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict:
        x = torch.linspace(-1, 1, 12).reshape(4, 3)
        return {"val_mse": F.mse_loss(model(x), x @ self.w).item()}

    def export(self, model: nn.Module, out_dir: Path) -> None:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        atomic_write(out_dir / "toy.pt", lambda tmp: torch.save(state, tmp))

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
