"""The float side of integer export: what a trainable prior uses so that post-training quantization changes
only precision.

* `PREACT_CLIP`: tanh/sigmoid inputs are clamped to [-8, 8], exactly the range the integer lookup tables
  cover (`layers.FIXED_POINT_FORMAT["lut_in_max"]`).
* `gate`: the gated unit tanh(a) * sigmoid(b) on channel halves, with that clamp.
* `ActivationRecorder`: collects max |activation| per named residual stream while a float prior runs on
  calibration data; `vqcodec.integer.quantize.stream_scale` turns each maximum into a fixed-point scale.
"""
from __future__ import annotations

import torch

__all__ = ["PREACT_CLIP", "gate", "ActivationRecorder"]

PREACT_CLIP = 8.0
"""Inputs of tanh/sigmoid are clamped to [-8, 8] (the integer lookup tables cover exactly this range)."""


def gate(x: torch.Tensor) -> torch.Tensor:
    """Gated unit on (B, 2C, ...): tanh(a) * sigmoid(b) of the two channel halves, pre-activations clamped
    to +-PREACT_CLIP like the lookup tables -> (B, C, ...)."""
    x = x.clamp(-PREACT_CLIP, PREACT_CLIP)
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class ActivationRecorder:
    """Optional collection of max |activation| per named stream (for post-training quantization).

    `stats` is None (recording off) or {stream name: max abs value seen}; `record` is a no-op when off.
    """

    def __init__(self) -> None:
        self.stats: dict[str, float] | None = None

    def record(self, name: str, x: torch.Tensor) -> None:
        if self.stats is not None:
            v = float(x.detach().abs().max()) if x.numel() else 0.0
            self.stats[name] = max(self.stats.get(name, 0.0), v)
