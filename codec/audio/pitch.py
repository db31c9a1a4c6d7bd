"""Pitch tracks of 16 kHz speech: f0 and voicing every PITCH_HOP samples (WORLD's Harvest or DIO, via pyworld).

The harmonic-plus-noise decoders are trained on these tracks (`vqcodec.training.audio_decoder`,
`vqcodec.training.conversion`) and the conversion model (`vqcodec.audio.conversion`) needs one of its source at
conversion time, tracked the same way (its `cfg.pitch`). pyworld (`pip install pyworld-prebuilt`, in the convert, dev and
train extras) is imported when a track is first made; coding never needs it.

Units: samples float32 at SAMPLE_RATE (16 kHz); point j is centred on sample j * PITCH_HOP; f0 in Hz.
"""
from __future__ import annotations

import numpy as np
import torch

from vqcodec.audio.model import SAMPLE_RATE

__all__ = ["SAMPLE_RATE", "PITCH_HOP", "PITCH_METHODS", "PITCH_FLOOR_HZ", "PITCH_CEIL_HZ", "pitch_labels",
           "pitch_track", "require_pyworld"]

PITCH_HOP = 80
"""Samples between pitch points (5 ms at 16 kHz)."""
PITCH_METHODS = ("harvest", "dio")
PITCH_FLOOR_HZ = {"harvest": 70.0, "dio": 50.0}
"""Lowest f0 each label method searches. Harvest's 70 Hz stays above 50/60 Hz mains hum, which some training
recordings carry (DIO from 50 Hz labelled one LibriSpeech utterance's speech 60 Hz throughout); "dio" keeps
the floor the runs before the method became a setting were labelled with."""
PITCH_CEIL_HZ = 700.0
"""Highest f0 both methods search."""
TRACK_CHUNK_SECONDS = 60.0
"""`pitch_track` tracks longer signals in pieces of this length (WORLD's memory grows with the length)."""
TRACK_OVERLAP_SECONDS = 2.0
"""Audio either side of a piece that `pitch_track` tracks with it and then drops."""


def require_pyworld():
    """The pyworld module; ModuleNotFoundError saying what to install when it is missing."""
    try:
        import pyworld
    except ImportError:
        raise ModuleNotFoundError("pitch tracking needs pyworld, which is not installed: pip install "
                                  "pyworld-prebuilt (or the convert extra: pip install vqcodec[convert])") from None
    return pyworld


def _raw_f0(x: np.ndarray, method: str) -> np.ndarray:
    """(T,) float64 16 kHz -> WORLD's f0 per PITCH_HOP samples, (about T / PITCH_HOP + 1,) float64 Hz, 0 where
    unvoiced."""
    pyworld = require_pyworld()
    period = 1000.0 * PITCH_HOP / SAMPLE_RATE
    floor = PITCH_FLOOR_HZ[method]
    if method == "harvest":
        f0, _ = pyworld.harvest(x, SAMPLE_RATE, f0_floor=floor, f0_ceil=PITCH_CEIL_HZ, frame_period=period)
        return f0
    coarse, t = pyworld.dio(x, SAMPLE_RATE, f0_floor=floor, f0_ceil=PITCH_CEIL_HZ, frame_period=period)
    return pyworld.stonemask(x, coarse, t, SAMPLE_RATE)


def _fill(f0: np.ndarray, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw f0 (0: unvoiced) cut or zero-padded to m points -> (f0 (m,) float32 Hz with unvoiced points filled by
    linear interpolation of log f0 between the voiced ones (held at the ends; 100 Hz when nothing is voiced),
    voiced (m,) bool)."""
    f0 = np.pad(f0, (0, max(0, m - len(f0))))[:m]
    voiced = f0 > 0
    if voiced.any():
        idx = np.arange(m)
        filled = np.exp(np.interp(idx, idx[voiced], np.log(f0[voiced])))
    else:
        filled = np.full(m, 100.0)
    return torch.from_numpy(filled.astype(np.float32)), torch.from_numpy(voiced)


def _check_method(method: str) -> None:
    if method not in PITCH_METHODS:
        raise ValueError(f"pitch method {method!r}: expected one of {', '.join(PITCH_METHODS)}")


def pitch_labels(audio: torch.Tensor, method: str = "harvest") -> tuple[torch.Tensor, torch.Tensor]:
    """(T,) float32 16 kHz, T a multiple of PITCH_HOP -> (f0 (M,) float32 Hz, voiced (M,) bool), M = T / PITCH_HOP.

    Point j is centred on sample j * PITCH_HOP. method: "harvest" (WORLD's Harvest, 70..700 Hz: robust
    voicing, about 6x real time on one core) or "dio" (DIO + StoneMask, 50..700 Hz: 150x real time, but it
    calls most frames voiced and locks onto mains hum). Unvoiced points get f0 by linear interpolation of
    log f0 between the voiced ones (held at the ends; 100 Hz when nothing is voiced), so an oscillator
    driven by the track glides instead of jumping. ModuleNotFoundError when pyworld is not installed."""
    _check_method(method)
    return _fill(_raw_f0(audio.double().numpy(), method), audio.numel() // PITCH_HOP)


def pitch_track(audio: torch.Tensor, method: str = "harvest", chunk_seconds: float = TRACK_CHUNK_SECONDS,
                overlap_seconds: float = TRACK_OVERLAP_SECONDS) -> tuple[torch.Tensor, torch.Tensor]:
    """`pitch_labels` of a signal of any length in bounded memory: (T,) float32 16 kHz -> (f0 (M,) float32 Hz,
    voiced (M,) bool), M = T // PITCH_HOP.

    A signal up to `chunk_seconds` (plus the overlap either side) is `pitch_labels` exactly. A longer one is
    tracked in pieces of `chunk_seconds`, each with `overlap_seconds` of its neighbours' audio either side (whose
    points are dropped), and the unvoiced points are filled over the whole track; the points near a piece's
    edges can differ slightly from a whole-signal track."""
    _check_method(method)
    m = audio.numel() // PITCH_HOP
    chunk = max(1, int(chunk_seconds * SAMPLE_RATE) // PITCH_HOP)  # points
    overlap = max(0, int(overlap_seconds * SAMPLE_RATE) // PITCH_HOP)
    if m <= chunk + 2 * overlap:
        return pitch_labels(audio[: m * PITCH_HOP], method)
    raw = np.zeros(m)
    for p0 in range(0, m, chunk):
        p1 = min(p0 + chunk, m)
        lo, hi = max(0, p0 - overlap), min(m, p1 + overlap)
        f0 = _raw_f0(audio[lo * PITCH_HOP:hi * PITCH_HOP].double().numpy(), method)
        f0 = np.pad(f0, (0, max(0, hi - lo - len(f0))))
        raw[p0:p1] = f0[p0 - lo:p1 - lo]
    return _fill(raw, m)
