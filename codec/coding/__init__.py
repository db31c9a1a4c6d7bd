"""Coding of residual-VQ index stages under a prior, the same for every modality.

- `stages`: the `StagePrior` protocol a prior implements, and `encode_stages` / `decode_stages` (one
  range-coded stream per stage).
- `refinement`: scalar refinement layers under static per-dimension tables (one stream per layer).
"""
from .stages import DecodeFn, Progress, StagePrior, decode_stages, encode_stages

__all__ = ["DecodeFn", "Progress", "StagePrior", "decode_stages", "encode_stages"]
