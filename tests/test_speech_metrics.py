"""benchmarks/speech_metrics.py and speech_figures.py: f0 error and voicing F1 on known answers (hand-made
tracks, and pyworld on synthetic harmonic tones), alignment, the skip notes of missing packages, DNSMOS and
ViSQOL on synthetic signals (each skipped with the install line when its package is missing), and the
spectrogram's frequency axis."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
try:
    import speech_figures
    import speech_metrics as sm
finally:
    sys.path.pop(0)

RATE = sm.SPEECH_RATE
MISSING = sm.missing()


def _needs(metric: str):
    return pytest.mark.skipif(metric in MISSING, reason=f"{metric} cannot run: {MISSING.get(metric)}")


def harmonic_tone(f0: float, seconds: float = 1.0, rate: int = RATE, top_hz: float = 4000.0) -> np.ndarray:
    """Sum of the harmonics of f0 up to top_hz, amplitudes 1/k, peak about 0.5."""
    t = np.arange(int(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, int(top_hz // f0) + 1))
    return 0.5 * x / np.max(np.abs(x))


# ------------------------------------------------------------------------------------------------ on tracks
def test_f0_error_on_hand_made_tracks():
    ref = np.array([0.0, 100.0, 100.0, 200.0, 0.0, 150.0])
    deg = np.array([120.0, 100.0, 200.0, 200.0 * 2 ** (50 / 1200), 0.0, 0.0])
    cents, frames = sm.f0_error_cents(ref, deg)
    assert frames == 3  # frames 1, 2, 3 are voiced in both
    assert cents == pytest.approx(50.0)  # median of 0, 1200, 50
    assert sm.f0_error_cents(ref, np.zeros_like(ref)) == (None, 0)
    # a longer track is cut to the shorter one
    assert sm.f0_error_cents(ref[:2], deg) == (pytest.approx(0.0), 1)


def test_voicing_f1_on_hand_made_tracks():
    ref = np.array([0.0, 100.0, 100.0, 100.0, 0.0])
    deg = np.array([90.0, 100.0, 0.0, 130.0, 0.0])  # TP 2, FP 1, FN 1
    assert sm.voicing_f1(ref, deg) == pytest.approx(2 * 2 / (2 * 2 + 2))
    assert sm.voicing_f1(ref, ref) == 1.0
    assert sm.voicing_f1(ref, np.zeros_like(ref)) == 0.0
    assert sm.voicing_f1(np.zeros(4), np.zeros(4)) is None  # nothing voiced: no score


def test_shift_matches_the_alignment_convention():
    ref, deg = np.arange(10.0), np.arange(-3.0, 9.0)  # deg[n + 3] == ref[n]
    r, d = sm.shift(ref, deg, 3)
    assert np.array_equal(r, d) and len(r) == 9
    r, d = sm.shift(deg, ref, -3)  # the other way round
    assert np.array_equal(r, d) and len(r) == 9


def test_other_rates_are_refused():
    with pytest.raises(ValueError, match="16000 Hz"):
        sm.f0_track(np.zeros(800), 8000)


def test_a_missing_package_is_reported_with_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyworld", None)  # `import pyworld` now raises ImportError
    why = sm.missing(("f0",))
    assert set(why) == {"f0"}
    assert why["f0"].startswith("pyworld: ") and "pip install pyworld-prebuilt" in why["f0"]
    assert sm.INSTALL_HINT in why["f0"]
    scorer = sm.SpeechScorer(skip=("dnsmos", "visqol"))
    assert set(scorer.skipped) == {"dnsmos", "visqol", "f0"}
    out = scorer.score("clip", np.ones(1600) * 0.1, np.ones(1600) * 0.1, 0)
    assert set(out) == set(sm.FIELDS) and all(v is None for v in out.values())
    with pytest.raises(ValueError, match="unknown metric"):
        sm.SpeechScorer(skip=("mos",))


# ------------------------------------------------------------------------------------------------ pyworld
@_needs("f0")
@pytest.mark.parametrize("method", ["harvest", "dio"])
@pytest.mark.parametrize("f0", [110.0, 220.0])
def test_a_tone_shifted_by_100_cents_is_100_cents_off(f0, method):
    ref, deg = harmonic_tone(f0), harmonic_tone(f0 * 2 ** (100 / 1200))
    f_ref, f_deg = sm.f0_track(ref, method=method), sm.f0_track(deg, method=method)
    assert len(f_ref) == len(ref) // int(RATE * sm.F0_FRAME_MS / 1000) + 1
    assert np.median(f_ref[f_ref > 0]) == pytest.approx(f0, rel=0.01)
    cents, frames = sm.f0_error_cents(f_ref, f_deg)
    assert cents == pytest.approx(100.0, abs=5.0) and frames > 0.8 * len(f_ref)
    assert sm.voicing_f1(f_ref, f_deg) > 0.95
    same, _ = sm.f0_error_cents(f_ref, sm.f0_track(ref, method=method))
    assert same == pytest.approx(0.0, abs=1e-9)


@_needs("f0")
def test_silence_against_a_tone_has_voicing_f1_zero():
    tone = harmonic_tone(150.0)
    p = sm.pitch_scores(tone, np.zeros_like(tone))
    assert p["vuv_f1"] == 0.0 and p["f0_cents"] is None and p["f0_frames"] == 0
    assert p["voiced_ref"] > 0.8 and p["voiced_deg"] == 0.0


@_needs("f0")
def test_the_scorer_reuses_the_originals_track_for_a_delaying_codec():
    ref = np.concatenate([np.zeros(1600), harmonic_tone(150.0, 0.8)])
    lag = 37
    deg = np.concatenate([np.zeros(lag), harmonic_tone(150.0 * 2 ** (100 / 1200), 0.8 + 0.1)])[: len(ref) + lag]
    scorer = sm.SpeechScorer(skip=("dnsmos", "visqol"))
    out = scorer.score("a", ref, deg, lag)
    assert out["f0_cents"] == pytest.approx(100.0, abs=5.0) and out["vuv_f1"] > 0.9
    assert out["dnsmos_ovrl"] is None and out["visqol"] is None


# ------------------------------------------------------------------------------------------------ DNSMOS, ViSQOL
@_needs("visqol")
def test_visqol_ranks_a_clean_copy_above_a_noisy_one():
    rng = np.random.default_rng(0)
    ref = np.concatenate([harmonic_tone(f, 0.5) for f in (120.0, 180.0, 140.0, 200.0)]) * 0.5
    v = sm.Visqol()
    same = v(ref, ref)
    noisy = v(ref, ref + 0.02 * rng.standard_normal(len(ref)))
    assert 1.0 <= noisy["poly"] < same["poly"] <= 5.0
    if v.lattice_note is None:
        assert 1.0 <= noisy["lattice"] < same["lattice"] <= 5.0
    else:
        assert same["lattice"] is None and "visqol-python[lattice]" in v.lattice_note


@_needs("dnsmos")
def test_dnsmos_scores_are_mos_and_noise_lowers_the_background_score():
    rng = np.random.default_rng(1)
    speechish = np.concatenate([harmonic_tone(f, 0.4) for f in (120.0, 160.0, 140.0, 110.0, 180.0)]) * 0.3
    d = sm.Dnsmos(threads=1)
    clean = d(speechish)
    noisy = d(speechish + 0.05 * rng.standard_normal(len(speechish)))
    assert set(clean) == {"ovrl", "sig", "bak", "p808"}
    assert all(1.0 <= v <= 5.0 for v in [*clean.values(), *noisy.values()])
    assert noisy["bak"] < clean["bak"]
    with pytest.raises(ValueError, match="silent"):
        d(np.zeros(RATE))


# ------------------------------------------------------------------------------------------------ figures
def test_the_spectrogram_puts_a_sine_at_its_frequency():
    t = np.arange(RATE) / RATE
    db, freqs, times = speech_figures.log_spectrogram(0.5 * np.sin(2 * np.pi * 1000.0 * t), RATE)
    assert freqs[-1] == pytest.approx(8000.0) and db.shape == (len(freqs), len(times))
    assert times[1] - times[0] == pytest.approx(speech_figures.HOP_S)
    peak = freqs[np.argmax(db[:, len(times) // 2])]
    assert abs(peak - 1000.0) <= freqs[1]
    assert db.max() == pytest.approx(20 * np.log10(0.25), abs=0.5)  # a sine of amplitude A peaks at A/2
