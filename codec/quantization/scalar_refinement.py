"""Scalar refinement layers: the residual a residual VQ leaves, rounded to power-of-two steps, exactly.

The high-rate layers of issue 20 (the image model card's "High-rate layers"): after the first VQ stages, each
refinement layer j = 1..L rounds what is left of the latent to a step of 2^-(first_shift + j - 1) latent
units, so every layer halves the step of the one before (successive refinement: a file cut after any layer
decodes to the latent within that layer's half step, plus any clamping). Layer 1 takes the whole residual
(|symbol| <= `max_first`, larger values clamped); every later layer takes the remainder of the one before,
which is within its half step, so its symbols are -1, 0 or 1.

Exact and reproducible: latents and base reconstructions are snapped to the 2^-GRID_BITS grid of
`vqcodec.quantization.exact_search` (float64 integers), residuals are integer differences, and each layer's
symbol is `floor((r + step / 2) / step)` in integer arithmetic (ties round up), so the symbols depend only on
the snapped inputs, on any machine and thread count. Decoding adds the dyadic values symbol * step to the
base reconstruction in float32 (exact for |symbol| * step above 2^-24 of the base's magnitude, elementwise).

Shapes: latents, bases (N, D) float; symbols (L, N, D) int64; steps in latent units.
"""
from __future__ import annotations

import torch

from vqcodec.quantization.exact_search import GRID_BITS, snap

__all__ = ["refinement_steps", "refine_symbols", "refinement_values", "layer_alphabet", "layer_contexts",
           "CONTEXTS", "RESIDUAL_LIMIT", "residual_units", "symbols_from_units"]

CONTEXTS = 5
"""Contexts of a layer's symbols (`layer_contexts`)."""


def refinement_steps(first_shift: int, layers: int) -> list[float]:
    """Step of each layer in latent units: 2^-first_shift, then halving (first_shift + layers - 1 <= GRID_BITS,
    so every step is a whole number of grid units)."""
    if layers < 0 or first_shift < 0 or first_shift + layers - 1 > GRID_BITS:
        raise ValueError(f"need 0 <= first_shift and first_shift + layers - 1 <= {GRID_BITS}, got first_shift="
                         f"{first_shift}, layers={layers}")
    return [2.0 ** -(first_shift + j) for j in range(layers)]


def layer_alphabet(layer: int, max_first: int) -> tuple[int, int]:
    """(lowest, highest) symbol of refinement layer `layer` (1-based): +-max_first for the first, +-1 after."""
    if layer < 1:
        raise ValueError(f"layers are numbered from 1, got {layer}")
    m = max_first if layer == 1 else 1
    return -m, m


def refine_symbols(latents: torch.Tensor, base: torch.Tensor, first_shift: int, layers: int,
                   max_first: int = 31) -> torch.Tensor:
    """The symbols of `layers` refinement layers of latents (N, D) over the base reconstruction (N, D) (the VQ
    stages' sum) -> (layers, N, D) int64 (see the module docstring)."""
    if latents.shape != base.shape or latents.dim() != 2:
        raise ValueError(f"latents {tuple(latents.shape)} and base {tuple(base.shape)} must be the same (N, D)")
    return symbols_from_units((snap(latents) - snap(base)).to(torch.int64), first_shift, layers, max_first)


RESIDUAL_LIMIT = (1 << 15) - 1
"""`residual_units` clamps to +-this many grid units (32 latent units): any larger residual gives the same
symbols, as long as the first layer's alphabet ends below it (max_first * step < 32)."""


def residual_units(latents: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """What refinement layers code: latents (N, D) minus the base reconstruction (N, D), both snapped to the
    2^-GRID_BITS grid, in grid units, clamped to +-RESIDUAL_LIMIT -> (N, D) int16 (exact: the same symbols as the
    unclamped residual where (max_first + 1/2) x the first step is below RESIDUAL_LIMIT grid units)."""
    if latents.shape != base.shape or latents.dim() != 2:
        raise ValueError(f"latents {tuple(latents.shape)} and base {tuple(base.shape)} must be the same (N, D)")
    return (snap(latents) - snap(base)).clamp_(-RESIDUAL_LIMIT, RESIDUAL_LIMIT).to(torch.int16)


def symbols_from_units(residual: torch.Tensor, first_shift: int, layers: int, max_first: int = 31) -> torch.Tensor:
    """The symbols of `layers` refinement layers of a residual (..., D) in grid units (`residual_units`) ->
    (layers, ..., D) int64: each layer rounds what the layers before it left (ties up), clamped to its alphabet."""
    steps = refinement_steps(first_shift, layers)
    r = residual.to(torch.int64)
    out = torch.empty((layers,) + tuple(residual.shape), dtype=torch.int64, device=residual.device)
    for j, step in enumerate(steps):
        unit = int(round(step * (1 << GRID_BITS)))  # grid units per step, a power of two
        lo, hi = layer_alphabet(j + 1, max_first)
        s = torch.div(r + unit // 2, unit, rounding_mode="floor").clamp_(lo, hi)
        out[j] = s
        r = r - s * unit
    return out


def refinement_values(symbols: torch.Tensor, first_shift: int) -> torch.Tensor:
    """(L, N, D) int symbols of layers 1..L -> (N, D) float32: sum_j symbol_j * 2^-(first_shift + j - 1), summed
    from the first layer on (dyadic values: exact in float32 for the alphabets above)."""
    out = torch.zeros(symbols.shape[1:], dtype=torch.float32, device=symbols.device)
    for j, step in enumerate(refinement_steps(first_shift, symbols.shape[0])):
        out = out + symbols[j].to(torch.float32) * step
    return out


def layer_contexts(before: torch.Tensor) -> torch.Tensor:
    """The context of each symbol of the next layer from the symbols of the layers before it, (j, *shape) int ->
    (*shape) int64 in 0..CONTEXTS-1 (elementwise: any shape, e.g. (N, D) or a grid (h, w, D)): the value reconstructed so far in units of the next layer's step,
    v = sum_i before[i] * 2^(j - i), clamped to [-2, 2] and offset by 2. A residual left by a zero is symmetric
    and peaked; one left by a non-zero value leans back towards zero, so its sign is worth knowing (j = 0, the
    first layer: context 2 everywhere)."""
    j = before.shape[0]
    v = torch.zeros(before.shape[1:], dtype=torch.int64, device=before.device)
    for i in range(j):
        v = v + before[i].to(torch.int64) * (1 << (j - i))
    return v.clamp(-2, 2) + 2
