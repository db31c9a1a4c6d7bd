"""Harmonic oscillator bank of the speech decoder (vqcodec.audio.harmonic): harmonic spectra, accuracy against a
float64 reference, bit-exact chunked rendering, phase continuity, gradients, silence when unvoiced."""
from __future__ import annotations

import math

import pytest
import torch

from vqcodec.audio.harmonic import HarmonicConfig, harmonic_amplitudes, synthesize

CFG = HarmonicConfig()


def _smooth(b: int, m: int, lo: float, hi: float, seed: int) -> torch.Tensor:
    """(b, m) float32 smooth random curves in [lo, hi]: a few random sinusoids over the control points."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(m, dtype=torch.float64) / m
    x = torch.zeros(b, m, dtype=torch.float64)
    for _ in range(3):
        freq, phase = torch.rand(b, 1, generator=g) * 3, torch.rand(b, 1, generator=g) * 2 * math.pi
        x += torch.sin(2 * math.pi * freq * t + phase)
    x = (x - x.amin(1, keepdim=True)) / (x.amax(1, keepdim=True) - x.amin(1, keepdim=True))
    return (lo + (hi - lo) * x).float()


def _controls(b: int, m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth f0 in 80..300 Hz and amplitudes from a random smooth envelope, (b, m) and (b, m, H)."""
    g = torch.Generator().manual_seed(seed)
    f0 = _smooth(b, m, 80.0, 300.0, seed)
    bins = torch.linspace(0, 1, CFG.n_env)
    log_env = -3 * bins - 0.5 * torch.rand(b, m, 1, generator=g) + 0.2 * torch.randn(b, m, CFG.n_env, generator=g)
    voicing = _smooth(b, m, 0.0, 1.0, seed + 1)
    return f0, harmonic_amplitudes(f0, log_env, voicing, CFG)


def _reference(f0: torch.Tensor, amps: torch.Tensor, phase0: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Direct float64 rendering: per-sample interpolation (last values held), cumsum phase, sum of sines."""
    b, m, h = amps.shape
    hop = CFG.ctrl_hop
    w = torch.arange(hop, dtype=torch.float64) / hop
    f = f0.double()
    f_next = torch.cat([f[:, 1:], f[:, -1:]], 1)
    fs = (f[..., None] * (1 - w) + f_next[..., None] * w).reshape(b, m * hop)
    phase = phase0 + (torch.cumsum(fs, 1) - fs) / CFG.sample_rate
    a = amps.double()
    a_next = torch.cat([a[:, 1:], a[:, -1:]], 1)
    at = (a[:, :, None] * (1 - w)[:, None] + a_next[:, :, None] * w[:, None]).reshape(b, m * hop, h)
    k = torch.arange(1, h + 1, dtype=torch.float64)
    y = (at * torch.sin(2 * math.pi * torch.remainder(phase[..., None] * k, 1.0))).sum(-1)
    end = torch.remainder(phase0 + fs.sum(1) / CFG.sample_rate, 1.0)
    return y, end


def test_constant_f0_gives_peaks_at_its_harmonics_only():
    m = CFG.sample_rate // CFG.ctrl_hop  # one second: 1 Hz FFT bins, whole periods of 200 Hz
    f0 = torch.full((1, m), 200.0)
    amps = harmonic_amplitudes(f0, torch.zeros(1, m, CFG.n_env), torch.ones(1, m), CFG)
    audible = int(math.ceil(CFG.max_frequency / 200.0)) - 1  # 37: 37 * 200 = 7400 < 7600 <= 38 * 200
    assert amps.shape == (1, m, CFG.max_harmonics)
    assert torch.equal(amps[..., :audible], torch.ones(1, m, audible))
    assert torch.equal(amps[..., audible:], torch.zeros(1, m, CFG.max_harmonics - audible))

    y, _ = synthesize(f0, amps, CFG)
    assert y.shape == (1, m * CFG.ctrl_hop) and y.dtype == torch.float32
    mag = torch.fft.rfft(y[0].double()).abs() / (m * CFG.ctrl_hop / 2)  # a unit sine -> 1
    peaks = torch.arange(1, audible + 1) * 200
    assert torch.allclose(mag[peaks], torch.ones(audible, dtype=torch.float64), atol=1e-4)
    rest = torch.ones_like(mag, dtype=torch.bool)
    rest[peaks] = False
    assert mag[100] < 1e-4 and mag[rest].max() < 1e-4  # nothing at 100 Hz, above 7400 Hz or in between


@pytest.mark.parametrize("glide", [False, True])
def test_matches_float64_reference(glide):
    f0, amps = _controls(2, 40, seed=3)
    if glide:
        f0 = torch.linspace(90.0, 400.0, 40).expand(2, 40).contiguous()
        amps = harmonic_amplitudes(f0, torch.zeros(2, 40, CFG.n_env), torch.ones(2, 40), CFG)
    y, end = synthesize(f0, amps, CFG, phase0=torch.tensor([0.0, 0.3], dtype=torch.float64))
    for i, p0 in enumerate([0.0, 0.3]):
        y_ref, end_ref = _reference(f0[i:i + 1], amps[i:i + 1], p0)
        scale = amps[i].sum(-1).max().item()
        assert (y[i].double() - y_ref[0]).abs().max() < 1e-5 * scale
        assert abs(end[i].item() - end_ref[0].item()) < 1e-9
    assert end.dtype == torch.float64 and bool(((end >= 0) & (end < 1)).all())


def test_chunked_rendering_is_bit_identical_to_one_pass():
    m, splits = 64, [0, 10, 37, 64]
    f0, amps = _controls(3, m, seed=7)
    phase0 = torch.tensor([0.0, 0.25, 0.9], dtype=torch.float64)
    whole, end = synthesize(f0, amps, CFG, phase0)

    parts, phase = [], phase0
    for s, e in zip(splits[:-1], splits[1:]):
        nxt = (f0[:, e], amps[:, e]) if e < m else (None, None)
        y, phase = synthesize(f0[:, s:e], amps[:, s:e], CFG, phase, *nxt)
        parts.append(y)
    assert torch.equal(torch.cat(parts, 1), whole)
    assert torch.equal(phase, end)
    # Amplitudes are per control point, so computing them per chunk changes nothing either.
    assert torch.equal(torch.cat([amps[:, s:e] for s, e in zip(splits[:-1], splits[1:])], 1), amps)


def test_next_control_point_only_changes_the_last_sub_frame():
    f0, amps = _controls(2, 12, seed=11)
    held, end_held = synthesize(f0, amps, CFG)
    nxt, end_nxt = synthesize(f0, amps, CFG, None, f0[:, -1] * 1.5, amps[:, -1] * 2)
    cut = (12 - 1) * CFG.ctrl_hop
    assert torch.equal(held[:, :cut], nxt[:, :cut])
    assert not torch.equal(held[:, cut:], nxt[:, cut:])
    assert not torch.equal(end_held, end_nxt)
    with pytest.raises(ValueError):
        synthesize(f0, amps, CFG, None, f0[:, -1], None)


def test_gliding_f0_has_no_phase_jumps():
    m = 100
    f0 = torch.linspace(100.0, 400.0, m)[None]
    amps = torch.zeros(1, m, 3)
    amps[..., 0], amps[..., 2] = 0.6, 0.3  # harmonics 1 and 3
    parts, phase = [], None
    for s, e in [(0, 33), (33, 71), (71, m)]:
        nxt = (f0[:, e], amps[:, e]) if e < m else (None, None)
        y, phase = synthesize(f0[:, s:e], amps[:, s:e], CFG, phase, *nxt)
        parts.append(y)
    y = torch.cat(parts, 1)[0].double()
    # |dy/dt| <= sum_k 2 pi k f A_k / sr per sample (amplitudes are constant here); a phase jump would be O(1).
    bound = 2 * math.pi * 400.0 * (1 * 0.6 + 3 * 0.3) / CFG.sample_rate
    assert y.diff().abs().max() <= bound * 1.01
    assert y.abs().max() > 0.5


def test_gradients_reach_envelope_and_voicing():
    b, m = 2, 24
    g = torch.Generator().manual_seed(5)
    f0 = _smooth(b, m, 90.0, 250.0, 5).requires_grad_()
    log_env = (torch.randn(b, m, CFG.n_env, generator=g) * 0.3 - 1).requires_grad_()
    voicing = torch.rand(b, m, generator=g).requires_grad_()
    target = torch.randn(b, m * CFG.ctrl_hop, generator=g)
    y, _ = synthesize(f0, harmonic_amplitudes(f0, log_env, voicing, CFG), CFG)
    ((y - target) ** 2).mean().backward()
    for grad in (log_env.grad, voicing.grad):
        assert grad is not None and bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0
    assert f0.grad is None  # the phase is detached from f0, and so is the envelope lookup by default

    f0.grad = None
    harmonic_amplitudes(f0, log_env, voicing, CFG, f0_grad=True).sum().backward()
    assert f0.grad is not None and bool(torch.isfinite(f0.grad).all()) and f0.grad.abs().sum() > 0


def test_amplitude_gradient_matches_finite_difference():
    # The samples are linear in the amplitudes, so <grad, v> of a linear loss equals the loss difference.
    f0, amps = _controls(2, 16, seed=9)
    amps = amps.detach().requires_grad_()
    r = torch.randn(2, 16 * CFG.ctrl_hop, generator=torch.Generator().manual_seed(1))
    v = torch.rand(amps.shape, generator=torch.Generator().manual_seed(2)) * 0.1
    loss = (synthesize(f0, amps, CFG)[0] * r).sum()
    loss.backward()
    with torch.no_grad():
        diff = (synthesize(f0, amps + v, CFG)[0] * r).sum() - loss
    assert torch.allclose((amps.grad * v).sum(), diff, rtol=1e-3, atol=1e-3)


def test_unvoiced_gives_exact_zeros():
    f0, _ = _controls(2, 20, seed=13)
    log_env = torch.randn(2, 20, CFG.n_env)
    amps = harmonic_amplitudes(f0, log_env, torch.zeros(2, 20), CFG)
    y, _ = synthesize(f0, amps, CFG, torch.tensor([0.1, 0.7], dtype=torch.float64))
    assert torch.equal(amps, torch.zeros_like(amps))
    assert torch.equal(y, torch.zeros_like(y))
