"""Speech quality metrics: STOI (pystoi), wide-band PESQ (pesq), log-mel distance, and the alignment
that codecs with a delay need first (Codec2 and Opus outputs lag their input; STOI and the mel distance
compare frame by frame and do not align by themselves).

Signals are 1-D float arrays (numpy or torch) in [-1, 1] at `sample_rate` Hz. Metrics run at 16 kHz
(PESQ wide band is defined there; other rates are resampled with soxr first).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from vqcodec.audio.spectral import mel_filterbank

__all__ = ["estimate_lag", "align", "stoi", "pesq_wb", "mel_distance", "score", "METRIC_RATE"]

METRIC_RATE = 16000


def _np(x) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"metrics take 1-D mono signals, got shape {a.shape}; pass one channel at a time")
    return a.astype(np.float64)


def _at_metric_rate(x: np.ndarray, sample_rate: int) -> np.ndarray:
    if sample_rate == METRIC_RATE:
        return x
    import soxr

    return soxr.resample(x, sample_rate, METRIC_RATE, quality="HQ")


def estimate_lag(ref, deg, max_lag: int) -> int:
    """Delay of `deg` behind `ref` in samples, in [-max_lag, max_lag], by the peak of their
    cross-correlation: deg[n + lag] best matches ref[n]."""
    r, d = _np(ref), _np(deg)
    n = len(r) + len(d) - 1
    nfft = 1 << max(1, (n - 1).bit_length())
    corr = np.fft.irfft(np.fft.rfft(d, nfft) * np.conj(np.fft.rfft(r, nfft)), nfft)  # corr[k] = sum d[n+k] r[n]
    lags = np.arange(-max_lag, max_lag + 1)
    return int(lags[np.argmax(corr[lags % nfft])])


def align(ref, deg, max_lag: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(ref, deg) shifted by `estimate_lag` and cut to their common length, plus the lag (samples)."""
    r, d = _np(ref), _np(deg)
    lag = estimate_lag(r, d, max_lag)
    if lag >= 0:
        d = d[lag:]
    else:
        r = r[-lag:]
    n = min(len(r), len(d))
    if n == 0:
        raise ValueError("signals do not overlap after alignment: are they the same utterance?")
    return r[:n], d[:n], lag


def stoi(ref, deg, sample_rate: int = METRIC_RATE) -> float:
    """Short-time objective intelligibility (Taal et al. 2011, pystoi), 0..1, of equal-length signals."""
    from pystoi import stoi as _stoi

    r, d = _np(ref), _np(deg)
    if len(r) != len(d):
        raise ValueError(f"STOI needs equal lengths, got {len(r)} and {len(d)}: align() them first")
    return float(_stoi(r, d, sample_rate, extended=False))


def pesq_wb(ref, deg, sample_rate: int = METRIC_RATE) -> float:
    """Wide-band PESQ (ITU-T P.862.2, the `pesq` package) at 16 kHz, MOS-LQO 1.04..4.64; NaN when PESQ
    finds no speech in the reference."""
    from pesq import pesq
    from pesq.cypesq import PesqError

    r = _at_metric_rate(_np(ref), sample_rate)
    d = _at_metric_rate(_np(deg), sample_rate)
    try:
        return float(pesq(METRIC_RATE, r, d, "wb"))
    except PesqError:
        return math.nan


_MEL_CACHE: dict[tuple[int, int], torch.Tensor] = {}


def mel_distance(ref, deg, sample_rate: int = METRIC_RATE, n_fft: int = 1024, hop: int = 256,
                 n_mels: int = 80) -> float:
    """Mean absolute difference of natural-log mel magnitudes (80 bands, 64 ms windows at 16 kHz,
    magnitudes clamped at 1e-5) of equal-length signals; 0 for identical signals, lower is better."""
    r = torch.from_numpy(_at_metric_rate(_np(ref), sample_rate)).float()
    d = torch.from_numpy(_at_metric_rate(_np(deg), sample_rate)).float()
    if r.shape != d.shape:
        raise ValueError(f"mel distance needs equal lengths, got {r.numel()} and {d.numel()}: align() them first")
    key = (n_fft, n_mels)
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = mel_filterbank(METRIC_RATE, n_fft, n_mels)
    window = torch.hann_window(n_fft)
    spec = torch.stft(torch.stack([r, d]), n_fft, hop, window=window, return_complex=True).abs()
    mel = torch.matmul(_MEL_CACHE[key], spec).clamp_min(1e-5).log()
    return float((mel[0] - mel[1]).abs().mean())


def score(ref, deg, sample_rate: int = METRIC_RATE, max_lag_s: float | None = 0.0) -> dict[str, float]:
    """STOI, PESQ-WB and mel distance of `deg` against `ref`.

    max_lag_s: search this much delay (seconds) either way and align first (use it for codecs with a
    delay, e.g. 0.1 for Codec2/Opus); 0 or None compares sample for sample (lengths are cut to the
    shorter). Returns {"stoi", "pesq_wb", "mel_distance", "lag_samples"}.
    """
    r, d = _np(ref), _np(deg)
    if max_lag_s:
        r, d, lag = align(r, d, int(round(max_lag_s * sample_rate)))
    else:
        n = min(len(r), len(d))
        r, d, lag = r[:n], d[:n], 0
    r16, d16 = _at_metric_rate(r, sample_rate), _at_metric_rate(d, sample_rate)
    n = min(len(r16), len(d16))
    r16, d16 = r16[:n], d16[:n]
    return {
        "stoi": stoi(r16, d16),
        "pesq_wb": pesq_wb(r16, d16),
        "mel_distance": mel_distance(r16, d16),
        "lag_samples": lag,
    }
