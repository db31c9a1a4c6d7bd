"""Differentiable, chunk-exact harmonic oscillator bank: the harmonic half of a harmonic-plus-noise speech
decoder head (DDSP, Engel et al. 2020). Deterministic; the noise half is a separate inverse-STFT branch.

Control points. A decoder predicts, per control point j = 0..M-1 (centred on sample j * ctrl_hop; 16 kHz,
ctrl_hop = 80 samples, so 4 per 320-sample frame), an f0 in Hz, a voicing weight in [0, 1] and a natural-log
amplitude envelope over `n_env` linear-frequency bins covering 0..sample_rate / 2. `harmonic_amplitudes` turns
these into amplitudes of harmonics k = 1..H at k * f0; `synthesize` renders M * ctrl_hop samples

    y(t) = sum_k a_k(t) sin(2 pi k phase(t)),   phase(t) = phase0 + sum_{tau < t} f0(tau) / sample_rate (cycles).

Sample-rate controls. f0(t) and a_k(t) are linear interpolations between control points j and j + 1 over
samples j * ctrl_hop .. (j + 1) * ctrl_hop - 1 (sample j * ctrl_hop takes point j's value exactly). After the
last control point there is no next one unless the caller passes it (`next_f0`, `next_amplitudes`): chunked
rendering passes the next chunk's first control point, so that the last sub-frame of a chunk is the same as in
a whole-signal pass; whole-signal rendering passes None and the last values are held for the last sub-frame.

Phase accumulation (chunk-exact). Within control segment j the phase is closed-form in float64:
    phase(j * ctrl_hop + n) = S_j + (n f_j + (f_{j+1} - f_j) n (n - 1) / (2 ctrl_hop)) / sample_rate,
n = 0..ctrl_hop - 1 (the exact sum of the interpolated per-sample increments), which depends only on the
segment's two control values. The segment start phases S_j are carried in fixed point: each segment's total
increment (ctrl_hop f_j + (f_{j+1} - f_j)(ctrl_hop - 1) / 2) / sample_rate is rounded to an integer number of
2^-40 cycles (int64, reduced mod 2^40), and S_j = (phase0 + the int64 prefix sum of the earlier segments) mod
2^40. Integer addition is exact and associative, so splitting a signal at control points and passing each
chunk's `phase_end` on as the next chunk's `phase0` gives bit-identical samples and end phase to one whole
pass (on CPU; all other steps are elementwise or per-segment operations of the same shapes). The fixed-point
step costs at most 2^-41 cycles of phase error per segment boundary (sub-nanoradian); `phase0` is rounded to
the same 2^-40-cycle grid.

Oscillators. sin(2 pi k phase) for k = G m + r (r = 1..G, m = 0..Q-1, G Q >= H, G ~ sqrt(H)) is
Im(e^{2 pi i r phase} e^{2 pi i G m phase}): only G + Q sines and cosines per sample, with arguments reduced
mod 1 from float64 phases, and the sum over harmonics becomes, per control segment, a small matmul of
(interpolation-weighted) r-oscillators with the amplitudes, followed by a dot product with the m-oscillators.
No (B, T, H) tensor is materialised; float32 from the reduced arguments on, error ~1e-6 relative to
sum_k |a_k|. Gradients flow to the amplitudes (and through `harmonic_amplitudes` to the envelope and voicing);
the phase path is detached from f0 (training supervises f0 directly).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["HarmonicConfig", "harmonic_amplitudes", "synthesize", "PHASE_BITS"]

PHASE_BITS = 40
"""Segment start phases are carried as integers of 2^-PHASE_BITS cycles (int64)."""
_PHASE_ONE = 1 << PHASE_BITS


@dataclass(frozen=True)
class HarmonicConfig:
    """Oscillator-bank settings. Units: samples at `sample_rate` Hz, frequencies in Hz."""

    sample_rate: int = 16000
    ctrl_hop: int = 80  # samples between control points (4 per 320-sample frame)
    n_env: int = 128  # envelope bins; bin i is at i * (sample_rate / 2) / (n_env - 1) Hz
    max_harmonics: int = 96  # H: harmonics k = 1..H
    f0_min: float = 40.0  # f0 is clamped to [f0_min, f0_max] Hz
    f0_max: float = 800.0
    nyquist_margin: float = 0.95  # harmonics at or above nyquist_margin * sample_rate / 2 get amplitude 0

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.ctrl_hop <= 0 or self.n_env < 2 or self.max_harmonics < 1:
            raise ValueError(f"need sample_rate > 0, ctrl_hop > 0, n_env >= 2 and max_harmonics >= 1, got "
                             f"{self.sample_rate}, {self.ctrl_hop}, {self.n_env}, {self.max_harmonics}")
        if not 0 < self.f0_min <= self.f0_max < self.nyquist_margin * self.sample_rate / 2:
            raise ValueError(f"need 0 < f0_min <= f0_max < nyquist_margin * sample_rate / 2, got f0_min="
                             f"{self.f0_min}, f0_max={self.f0_max}")
        if not 0 < self.nyquist_margin <= 1:
            raise ValueError(f"nyquist_margin must be in (0, 1], got {self.nyquist_margin}")

    @property
    def max_frequency(self) -> float:
        """Harmonics at or above this frequency (Hz) are silent."""
        return self.nyquist_margin * self.sample_rate / 2


def harmonic_amplitudes(f0: torch.Tensor, log_env: torch.Tensor, voicing: torch.Tensor, cfg: HarmonicConfig,
                        f0_grad: bool = False) -> torch.Tensor:
    """Amplitudes of harmonics k = 1..cfg.max_harmonics at the control points.

    f0: (B, M) Hz, clamped to [cfg.f0_min, cfg.f0_max]. log_env: (B, M, n_env) natural-log amplitude, bin i at
    i * (sample_rate / 2) / (n_env - 1) Hz. voicing: (B, M) in [0, 1].
    Returns (B, M, H) in log_env's dtype: exp(log_env linearly interpolated at k * f0) * voicing, exactly 0 for
    harmonics with k * f0 >= cfg.max_frequency and wherever voicing is 0 (log_env must be finite).
    Differentiable in log_env and voicing; in f0 (through the envelope's slope at k * f0) only when
    `f0_grad` is True, otherwise f0 is detached.
    """
    if log_env.dim() != 3 or log_env.shape[-1] != cfg.n_env:
        raise ValueError(f"log_env must be (B, M, {cfg.n_env}), got {tuple(log_env.shape)}")
    if f0.shape != log_env.shape[:2] or voicing.shape != log_env.shape[:2]:
        raise ValueError(f"f0 {tuple(f0.shape)} and voicing {tuple(voicing.shape)} must be (B, M) = "
                         f"{tuple(log_env.shape[:2])}")
    f = f0.to(log_env.dtype).clamp(cfg.f0_min, cfg.f0_max)
    if not f0_grad:
        f = f.detach()
    k = torch.arange(1, cfg.max_harmonics + 1, dtype=log_env.dtype, device=log_env.device)
    freq = f[..., None] * k  # (B, M, H) Hz
    audible = freq < cfg.max_frequency
    pos = (freq * ((cfg.n_env - 1) / (cfg.sample_rate / 2))).clamp(0, cfg.n_env - 1)
    i0 = pos.detach().floor().long().clamp(max=cfg.n_env - 2)
    frac = pos - i0.to(pos.dtype)
    lo = torch.gather(log_env, -1, i0)
    hi = torch.gather(log_env, -1, i0 + 1)
    amp = torch.exp((lo + frac * (hi - lo)).double()).to(lo.dtype)  # float64 exp: size-independent (see below)
    amp = torch.where(audible, amp, torch.zeros((), dtype=amp.dtype, device=amp.device))
    return amp * voicing.to(amp.dtype)[..., None]


def _split_harmonics(h: int) -> tuple[int, int]:
    """(G, Q) with G * Q >= h covering k = G m + r, r = 1..G, m = 0..Q-1, and G + Q even: fewest padded
    harmonics, then fewest oscillators G + Q (96 -> (8, 12)). An even G + Q makes a control segment's
    oscillator block (ctrl_hop x (G + Q) floats, 80 x even) a multiple of 32 floats, so the vectorised sin and
    cos treat every segment alike whatever the chunk's length (no scalar tail, which can differ by an ulp)."""
    best = None
    for g in range(1, h + 1):
        q = -(-h // g)
        q += (g + q) % 2
        key = (q * g, g + q, g, q)
        if best is None or key < best:
            best = key
    return best[2], best[3]


def _segment_phases(f: torch.Tensor, f_next: torch.Tensor, phase0: torch.Tensor | None,
                    cfg: HarmonicConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 f0 at the control points and at the point after each, (B, M) Hz -> (phase of every sample,
    (B, M, ctrl_hop) float64 cycles, not reduced; phase_end (B,) float64 in [0, 1))."""
    hop, sr = cfg.ctrl_hop, float(cfg.sample_rate)
    d = f_next - f
    n = torch.arange(hop, dtype=torch.float64, device=f.device)
    ramp = n * (n - 1) / (2 * hop)
    offset = (n * f[..., None] + d[..., None] * ramp) / sr  # sum of the increments before sample n
    total = (hop * f + d * ((hop - 1) / 2)) / sr  # the whole segment's increment
    steps = torch.round(total * _PHASE_ONE).long() % _PHASE_ONE
    if phase0 is None:
        start0 = torch.zeros(f.shape[0], dtype=torch.long, device=f.device)
    else:
        p0 = phase0.detach().to(device=f.device, dtype=torch.float64)
        start0 = torch.round((p0 - torch.floor(p0)) * _PHASE_ONE).long() % _PHASE_ONE
    ends = torch.cumsum(steps, 1)  # exact: at most M * 2^40 < 2^63
    starts = (start0[:, None] + ends - steps) % _PHASE_ONE
    phase_end = ((start0 + ends[:, -1]) % _PHASE_ONE).double() / _PHASE_ONE
    return starts.double()[..., None] / _PHASE_ONE + offset, phase_end


def synthesize(f0: torch.Tensor, amplitudes: torch.Tensor, cfg: HarmonicConfig,
               phase0: torch.Tensor | None = None, next_f0: torch.Tensor | None = None,
               next_amplitudes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Render harmonics from control points.

    f0: (B, M) Hz at control points j = 0..M-1 (sample j * ctrl_hop), clamped to [cfg.f0_min, cfg.f0_max];
    detached (no gradient through the phase). amplitudes: (B, M, H), harmonics k = 1..H (any H; zero the ones
    that would alias, as `harmonic_amplitudes` does); computed in float32, differentiable.
    phase0: (B,) start phase in cycles (any real; reduced mod 1 and rounded to 2^-40 cycles), default 0.
    next_f0 (B,) and next_amplitudes (B, H): the control point after the chunk, for the interpolation of its
    last ctrl_hop samples; chunked rendering passes the next chunk's first control point (both or neither),
    whole-signal rendering passes None and the last values are held.
    Returns (samples (B, M * ctrl_hop) float32, phase_end (B,) float64 in [0, 1)): phase_end is the phase of
    the sample after the chunk, to pass as the next chunk's phase0. Splitting at control points this way is
    bit-identical to one whole pass (on CPU).
    """
    if f0.dim() != 2 or amplitudes.dim() != 3 or amplitudes.shape[:2] != f0.shape:
        raise ValueError(f"need f0 (B, M) and amplitudes (B, M, H), got {tuple(f0.shape)}, "
                         f"{tuple(amplitudes.shape)}")
    b, m, h = amplitudes.shape
    if m == 0 or h == 0:
        raise ValueError(f"need at least one control point and one harmonic, got M={m}, H={h}")
    if (next_f0 is None) != (next_amplitudes is None):
        raise ValueError("pass both next_f0 and next_amplitudes (chunked rendering) or neither (hold)")
    if next_f0 is not None and (next_f0.shape != (b,) or next_amplitudes.shape != (b, h)):
        raise ValueError(f"need next_f0 ({b},) and next_amplitudes ({b}, {h}), got {tuple(next_f0.shape)}, "
                         f"{tuple(next_amplitudes.shape)}")
    if phase0 is not None and phase0.shape != (b,):
        raise ValueError(f"phase0 must be ({b},), got {tuple(phase0.shape)}")
    hop, dev = cfg.ctrl_hop, amplitudes.device

    # Phases, float64, detached from f0.
    f = f0.detach().double().clamp(cfg.f0_min, cfg.f0_max)
    last_f = f[:, -1] if next_f0 is None else next_f0.detach().to(dev).double().clamp(cfg.f0_min, cfg.f0_max)
    f_next = torch.cat([f[:, 1:], last_f[:, None]], 1)
    phase, phase_end = _segment_phases(f, f_next, phase0, cfg)  # (B, M, hop)

    # Oscillators e^{2 pi i r phase} (r = 1..G) and e^{2 pi i G m phase} (m = 0..Q-1), arguments reduced mod 1
    # in float64 first, then multiplied by small integers in float32 (error <= G ulp(1), ~5e-7 cycles).
    g, q = _split_harmonics(h)
    base = torch.stack([phase - torch.floor(phase), g * phase - torch.floor(g * phase)], -1).float()
    mult = torch.cat([torch.arange(1, g + 1, device=dev), torch.arange(q, device=dev)]).float()
    u = torch.cat([base[..., :1] * mult[:g], base[..., 1:] * mult[g:]], -1)  # (B, M, hop, G + Q) cycles
    u = (u - torch.round(u)) * (2 * math.pi)
    cos, sin = torch.cos(u), torch.sin(u)

    # r-oscillators weighted by the amplitude interpolation: rows (n, [sin, cos]), columns ([a_j, a_j+1], r).
    w = torch.arange(hop, dtype=torch.float32, device=dev) / hop
    weights = torch.stack([1 - w, w], -1)  # (hop, 2)
    rosc = torch.stack([sin[..., :g], cos[..., :g]], -2)  # (B, M, hop, 2, G)
    left = (rosc[..., :, None, :] * weights[:, None, :, None]).reshape(b * m, 2 * hop, 2 * g)

    # Amplitudes of segment j's two ends, harmonic k = G m + r at [end, r - 1, m]: (B * M, 2 G, Q).
    a = F.pad(amplitudes.float(), (0, g * q - h))
    last_a = a[:, -1] if next_amplitudes is None else F.pad(next_amplitudes.to(dev).float(), (0, g * q - h))
    a_next = torch.cat([a[:, 1:], last_a[:, None]], 1)
    right = torch.stack([a, a_next], 2).reshape(b, m, 2, q, g).transpose(-1, -2).reshape(b * m, 2 * g, q)

    # sum_k a_k sin(2 pi k phase) = sum_m [cos_m (sum_r a_mr sin_r) + sin_m (sum_r a_mr cos_r)].
    partial = torch.bmm(left, right).reshape(b, m, hop, 2 * q)  # [sin_r-part, cos_r-part] per m
    mosc = torch.cat([cos[..., g:], sin[..., g:]], -1)  # (B, M, hop, 2 Q)
    samples = (partial * mosc).sum(-1)
    return samples.reshape(b, m * hop), phase_end
