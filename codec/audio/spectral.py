"""Spectral helpers shared by the audio model, its losses and its metrics: framing and mel filterbanks.

Framing convention (used by the model's encoder features and inverse-STFT head): a signal of T samples
with T a multiple of the sub-hop h gives exactly T / h STFT frames; frame j is centred on sample j * h
(`torch.stft(center=True)` with zero padding, the trailing extra frame dropped), so it spans samples
[j*h - n_fft/2, j*h + n_fft/2). The inverse (`istft_exact`) turns T / h frames back into exactly T
samples with `torch.istft(center=True, length=T)`.
"""
from __future__ import annotations

import torch

__all__ = ["stft_frames", "istft_exact", "mel_filterbank", "hz_to_mel", "mel_to_hz"]


def stft_frames(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """Complex STFT with exactly T / hop frames.

    x: (B, T) float, T a multiple of `hop` (samples). window: (n_fft,) float.
    Returns (B, n_fft // 2 + 1, T // hop) complex64; frame j is centred on sample j * hop, and samples
    outside [0, T) count as zeros.
    """
    if x.shape[-1] % hop:
        raise ValueError(f"signal length {x.shape[-1]} is not a multiple of the hop {hop}; pad it first")
    spec = torch.stft(x.float(), n_fft, hop, window=window.float(), center=True, pad_mode="constant",
                      return_complex=True)
    return spec[..., : x.shape[-1] // hop]


def istft_exact(spec: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """Inverse of `stft_frames`: (B, n_fft // 2 + 1, N) complex -> (B, N * hop) float32 samples.

    Deterministic (torch.istft on CPU); needs n_fft >= 2 * hop so that the window envelope is nonzero
    on every kept sample (the NOLA condition at the signal's last hop).
    """
    if n_fft < 2 * hop:
        raise ValueError(f"istft_exact needs n_fft >= 2 * hop, got n_fft={n_fft}, hop={hop}")
    return torch.istft(spec, n_fft, hop, window=window.float(), center=True, length=spec.shape[-1] * hop)


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    """Hertz -> mel (HTK formula, 2595 log10(1 + f / 700))."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    """Mel (HTK) -> Hertz."""
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Triangular mel filters, (n_mels, n_fft // 2 + 1) float32, with Slaney's area normalisation
    (weight 2 / band width in Hz), so wide high bands do not dominate a loss."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2} Hz, got {f_min}, {f_max}")
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2,
                                     dtype=torch.float64))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    fb = torch.clamp(torch.minimum(up, down), min=0.0)
    fb = fb * (2.0 / (hi - lo))  # unit area
    if bool((fb.sum(1) == 0).any()):
        raise ValueError(f"{n_mels} mel bands are too many for n_fft={n_fft}: some bands hold no bin")
    return fb.float()

