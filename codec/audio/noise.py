"""Position-keyed noise and filtered-noise rendering: the noise half of a harmonic-plus-noise speech decoder.

A decoder that predicts both magnitude and phase of an inverse STFT can render voiced speech itself (badly:
its regression losses leave the phase noise-like, so the voice comes out hoarse) and then gives the
oscillator bank nothing to do. Here the noise branch predicts only a magnitude per STFT bin and sub-frame;
the phase is that of white noise, so it can shape noise but cannot make a harmonic comb, which is left to
the oscillators (as DDSP's filtered noise, Engel et al. 2020).

The noise is keyed by the absolute sample index, not drawn from a generator: sample t of the signal is
always `white_noise(t)`, so a chunk rendered with its halo gives the same samples as one whole pass, on any
machine (integer hashing, then an exact conversion to float32).

Shapes: sample indices (T,) int64; magnitudes (B, bins, M) float32 (M sub-frames of `hop` samples, frame j
centred on sample j * hop of the span, as `vqcodec.audio.spectral.stft_frames`); samples (B, M * hop) float32.
"""
from __future__ import annotations

import torch

from vqcodec.audio.spectral import istft_exact, stft_frames

__all__ = ["white_noise", "filtered_noise"]

_M32 = 0xFFFFFFFF


def white_noise(positions: torch.Tensor) -> torch.Tensor:
    """(T,) int64 absolute sample indices (>= 0) -> (T,) float32 noise, uniform in [-1, 1), a fixed function of
    each index (a 32-bit integer hash: multiply, xor-shift; every product stays below 2^63)."""
    x = (positions & _M32) ^ 0x9E3779B9
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = (x >> 16) ^ x
    return ((x >> 8).to(torch.float32) * (2.0 / (1 << 24))) - 1.0  # 24 bits: exact in float32


def filtered_noise(magnitude: torch.Tensor, start: "int | torch.Tensor", n_fft: int, hop: int,
                   window: torch.Tensor) -> torch.Tensor:
    """White noise of the samples [start, start + M * hop) shaped by `magnitude` (B, n_fft // 2 + 1, M) float:
    the STFT of the noise (its unit-magnitude phase per bin and sub-frame) times the magnitude, then the exact
    inverse STFT -> (B, M * hop) float32. `start`: the span's first absolute sample index, one for the batch
    (int) or one per row ((B,) int64). Differentiable in `magnitude`.

    Sub-frames near the span's ends see the zero padding of `stft_frames`; the samples a chunk keeps (its halo
    at least a frame) do not depend on them."""
    b, _, m = magnitude.shape
    offsets = torch.arange(m * hop, dtype=torch.int64)
    starts = torch.as_tensor(start, dtype=torch.int64).reshape(-1, 1)
    noise = white_noise(starts + offsets)  # (1 or B, M * hop)
    spec = stft_frames(noise, n_fft, hop, window)  # (1 or B, bins, M) complex64
    phase = spec / spec.abs().clamp_min(1e-12)
    return istft_exact(magnitude.float() * phase, n_fft, hop, window)
