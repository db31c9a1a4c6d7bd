"""Spectrogram figures of speech for the benchmarks (matplotlib, Agg backend, no display needed).

A narrow-band log-magnitude spectrogram: 40 ms Hann windows (640 samples at 16 kHz; main lobe +-50 Hz, so
the harmonics of voices down to about 100 Hz stay apart), 5 ms hop, 1024-point FFT, 0..8 kHz, in dB
re full scale (20 log10 |X| with the window normalised to unit sum, so a full-scale sine peaks near
-6 dB). Panels of one figure share one colour scale: the loudest bin of the first signal (the original)
down to `DYNAMIC_RANGE_DB` below it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["WINDOW_S", "HOP_S", "N_FFT", "MAX_HZ", "DYNAMIC_RANGE_DB", "log_spectrogram", "loudest_window",
           "spectrogram_grid", "spectrogram_png", "save_png", "requantize_png"]

WINDOW_S = 0.040  # seconds per analysis window
HOP_S = 0.005  # seconds between frames
N_FFT = 1024
MAX_HZ = 8000.0  # top of the plotted band (Nyquist at 16 kHz)
DYNAMIC_RANGE_DB = 80.0


def log_spectrogram(x: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dB (bins, frames), bin frequencies in Hz, frame centres in s) of a 1-D signal at `rate` Hz,
    bins up to min(MAX_HZ, rate / 2). Silence floors at -200 dB."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-D signal, got shape {a.shape}")
    win_len = int(round(WINDOW_S * rate))
    hop = max(1, int(round(HOP_S * rate)))
    n_fft = max(N_FFT, 1 << (win_len - 1).bit_length())
    window = np.hanning(win_len)
    window /= window.sum()
    pad = np.pad(a, (win_len // 2, win_len // 2))
    n_frames = max(1, 1 + (len(pad) - win_len) // hop)
    idx = np.arange(win_len)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = np.pad(pad, (0, max(0, idx.max() + 1 - len(pad))))[idx] * window
    mag = np.abs(np.fft.rfft(frames, n_fft, axis=1)).T
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    keep = freqs <= min(MAX_HZ, rate / 2)
    db = 20.0 * np.log10(np.maximum(mag[keep], 1e-10))
    return db, freqs[keep], np.arange(n_frames) * hop / rate


def loudest_window(x: np.ndarray, rate: int, seconds: float, step_s: float = 0.05) -> tuple[int, int]:
    """(start, stop) in samples of the `seconds`-long stretch of `x` with the most energy (searched on a
    `step_s` grid; the whole signal when it is shorter): where a figure of a long clip should look."""
    a = np.asarray(x, dtype=np.float64)
    n = int(round(seconds * rate))
    if n >= len(a):
        return 0, len(a)
    step = max(1, int(round(step_s * rate)))
    energy = np.concatenate([[0.0], np.cumsum(a * a)])
    starts = np.arange(0, len(a) - n + 1, step)
    best = int(starts[np.argmax(energy[starts + n] - energy[starts])])
    return best, best + n


def _draw(ax, x: np.ndarray, rate: int, title: str, vmax: float, t0: float = 0.0):
    db, freqs, times = log_spectrogram(x, rate)
    im = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=vmax - DYNAMIC_RANGE_DB, vmax=vmax,
                   extent=(t0, t0 + (times[-1] + HOP_S if len(times) else HOP_S), 0.0, freqs[-1] / 1000.0),
                   interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("kHz")
    ax.set_ylim(0.0, MAX_HZ / 1000.0)
    return im


def save_png(fig, path: Path, dpi: int) -> Path:
    """Save a matplotlib figure as an 8-bit palette PNG (256 colours, no dithering): under half the bytes of
    matplotlib's RGBA file for a spectrogram, with the colour map's 256 levels kept."""
    fig.savefig(path, dpi=dpi)
    requantize_png(path)
    return path


def requantize_png(path: Path) -> Path:
    """Rewrite the PNG at `path` as an 8-bit palette PNG (what save_png writes)."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def _vmax(x: np.ndarray, rate: int) -> float:
    return float(log_spectrogram(x, rate)[0].max())


def spectrogram_grid(path: Path, panels: Sequence[tuple[str, np.ndarray] | None], rate: int, title: str,
                     columns: int = 2, t0: float = 0.0, panel_in: tuple[float, float] = (7.5, 3.4)) -> Path:
    """One PNG of every (label, signal) panel, `columns` wide, row by row in order; None leaves a cell blank.
    The first panel (normally the original) sets the colour scale; time in seconds (the signals start at
    `t0` s of the clip), frequency 0..8 kHz; each panel `panel_in` inches (width, height) at 100 dpi."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels or panels[0] is None:
        raise ValueError("no signals to draw, or a blank first panel (the colour reference)")
    columns = max(1, min(columns, len(panels)))
    rows = -(-len(panels) // columns)
    vmax = _vmax(panels[0][1], rate)
    fig, axes = plt.subplots(rows, columns, figsize=(panel_in[0] * columns, panel_in[1] * rows + 0.6),
                             squeeze=False, sharex=True, sharey=True)
    im = None
    for i, ax in enumerate(axes.flat):
        if i < len(panels) and panels[i] is not None:
            im = _draw(ax, panels[i][1], rate, panels[i][0], vmax, t0)
        else:
            ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("seconds")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.91, 1))
    cax = fig.add_axes((0.925, 0.1, 0.012, 0.75))
    fig.colorbar(im, cax=cax, label="dB")
    save_png(fig, path, dpi=100)
    plt.close(fig)
    return path


def spectrogram_png(path: Path, x: np.ndarray, rate: int, title: str, reference: np.ndarray | None = None,
                    width_in: float = 9.0, height_in: float = 4.0) -> Path:
    """One small spectrogram PNG (for the listening page); colour scale from `reference` (the original) when
    given, else from `x` itself."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width_in, height_in))
    _draw(ax, x, rate, title, _vmax(reference if reference is not None else x, rate))
    ax.set_xlabel("seconds")
    fig.tight_layout()
    save_png(fig, path, dpi=100)
    plt.close(fig)
    return path
