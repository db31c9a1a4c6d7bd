"""An exponential moving average of a model's trainable parameters (Polyak averaging).

Averaged weights of a run at a constant learning rate behave like a run whose rate decays, without
fixing the end of the run in advance: the loop validates and exports them instead of the live weights.
Buffers (e.g. EMA codebooks, which already are averages) are not averaged: the averaged model uses the
live ones.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """Shadow copies of `model`'s trainable parameters, updated as avg <- d * avg + (1 - d) * param.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) over the first updates n, so early averages
    are not dominated by the initial weights. Float32 shadows, whatever the parameters' dtype.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"weight average decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {name: p.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current parameters into the average (call after each optimizer step)."""
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].mul_(d).add_(p.detach().float(), alpha=1 - d)
        self.updates += 1

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block, `model`'s parameters hold the averages; the live values come back after."""
        params = dict(model.named_parameters())
        live = {name: params[name].detach().clone() for name in self.shadow}
        with torch.no_grad():
            for name, avg in self.shadow.items():
                params[name].copy_(avg)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, value in live.items():
                    params[name].copy_(value)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise ValueError(f"the checkpoint's weight average lacks {sorted(missing)[:3]}...; resume with the "
                             f"model settings the run started with")
        self.updates = int(state["updates"])
        # each shadow stays on its parameter's device (a checkpoint holds CPU tensors)
        self.shadow = {name: state["shadow"][name].to(self.shadow[name].device, torch.float32).clone()
                       for name in self.shadow}
