"""benchmarks/metrics.py: PSNR, MS-SSIM and BD-rate on inputs whose answers are known."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "metrics.py"
_spec = importlib.util.spec_from_file_location("vqcodec_bench_metrics", _PATH)
metrics = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(metrics)

# Pillow 13 JPEG on Kodak (qualities 5, 10, 20, 50, 75): a realistic, non-linear RD curve.
JPEG_BPP = [0.221, 0.327, 0.508, 0.906, 1.368]
JPEG_PSNR = [23.85, 26.67, 29.14, 32.17, 34.52]
METHODS = ("cubic", "pchip")


# ------------------------------------------------------------------------------------------- PSNR

def test_psnr_of_known_errors():
    a = np.zeros((4, 6, 3), np.uint8)
    assert metrics.psnr(a, a + 1) == pytest.approx(20 * math.log10(255))  # MSE 1: 48.13 dB
    assert metrics.psnr(a, a + 16) == pytest.approx(10 * math.log10(255**2 / 256))  # MSE 256: 24.08 dB
    assert metrics.psnr(a, np.full_like(a, 255)) == pytest.approx(0.0)  # no uint8 wrap-around


def test_psnr_mse_is_over_all_channels():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 3  # squared error 9 in one channel of three -> MSE 3
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 3))


def test_psnr_identical_is_inf_and_shapes_must_match():
    a = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert metrics.psnr(a, a.copy()) == math.inf
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(a, a[:2])


# ---------------------------------------------------------------------------------------- MS-SSIM

def test_ms_ssim_identical_images_is_one():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)
    assert metrics.ms_ssim(img, img.copy()) == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_falls_with_noise():
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:192, 0:256]
    img = np.stack([(x + y) % 256, (2 * x) % 256, (3 * y) % 256], axis=-1).astype(np.uint8)
    scores = []
    for sigma in (2, 8, 32):
        noisy = np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)
        scores.append(metrics.ms_ssim(img, noisy))
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_ms_ssim_rejects_small_images():
    img = np.zeros((100, 300, 3), np.uint8)
    with pytest.raises(ValueError, match="at least"):
        metrics.ms_ssim(img, img)


def test_ms_ssim_db():
    assert metrics.ms_ssim_db(0.9) == pytest.approx(10.0)
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)
    assert metrics.ms_ssim_db(1.0) == math.inf


# ---------------------------------------------------------------------------------------- BD-rate

@pytest.mark.parametrize("method", METHODS)
def test_bd_rate_of_a_curve_against_itself_is_zero(method):
    assert metrics.bd_rate(JPEG_BPP, JPEG_PSNR, JPEG_BPP, JPEG_PSNR, method=method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_half_the_rate_at_every_psnr_is_minus_fifty_percent(method):
    half = [r / 2 for r in JPEG_BPP]
    assert metrics.bd_rate(JPEG_BPP, JPEG_PSNR, half, JPEG_PSNR, method=method) == pytest.approx(-50.0)
    # and the anchor against the test: twice the rate
    assert metrics.bd_rate(half, JPEG_PSNR, JPEG_BPP, JPEG_PSNR, method=method) == pytest.approx(100.0)


@pytest.mark.parametrize("method", METHODS)
def test_bd_rate_on_different_grids_and_a_partial_overlap(method):
    # anchor: ln R = 0.2 q - 6 on q in [24, 36]; test: ln R + 0.05 (q - 25) on q in [25, 40].
    # Both are exact for either interpolant; the shared range is [25, 36], where the mean log-rate
    # difference is 0.05 * 5.5, so BD-rate = (exp(0.275) - 1) * 100 = +31.65 %.
    qa = np.array([24.0, 27.0, 30.5, 33.0, 36.0])
    qt = np.array([25.0, 28.0, 31.0, 35.5, 38.0, 40.0])
    ra = np.exp(0.2 * qa - 6)
    rt = np.exp(0.2 * qt - 6 + 0.05 * (qt - 25))
    expected = (math.exp(0.275) - 1) * 100
    assert metrics.bd_rate(ra, qa, rt, qt, method=method) == pytest.approx(expected, rel=1e-9)
    # point order does not matter
    perm = [3, 0, 5, 1, 4, 2]
    assert metrics.bd_rate(ra, qa, rt[perm], qt[perm], method=method) == pytest.approx(expected, rel=1e-9)


def test_cubic_bd_rate_is_exact_for_cubic_log_rate():
    # ln R = cubic in q (the model the cubic fit assumes), test = anchor - 0.1: BD-rate exp(-0.1) - 1.
    def log_rate(q):
        return -3.0 + 0.02 * (q - 30) + 0.004 * (q - 30) ** 2 + 0.0015 * (q - 30) ** 3

    qa = np.array([24.0, 27.0, 30.0, 33.0, 36.0, 38.0])
    qt = np.array([25.0, 29.0, 31.0, 34.0])
    got = metrics.bd_rate(np.exp(log_rate(qa)), qa, np.exp(log_rate(qt) - 0.1), qt, method="cubic")
    assert got == pytest.approx((math.exp(-0.1) - 1) * 100, rel=1e-9)


def test_bd_rate_methods_agree_roughly_on_real_curves():
    # WebP (method 6) on Kodak, Pillow 13, qualities 0, 10, 20, 50, 80: known to beat JPEG by ~30-45 %.
    webp_bpp = [0.103, 0.274, 0.377, 0.673, 1.154]
    webp_psnr = [25.67, 28.93, 30.19, 33.01, 36.18]
    cubic = metrics.bd_rate(JPEG_BPP, JPEG_PSNR, webp_bpp, webp_psnr, method="cubic")
    pchip = metrics.bd_rate(JPEG_BPP, JPEG_PSNR, webp_bpp, webp_psnr, method="pchip")
    assert -60 < cubic < -20 and -60 < pchip < -20
    assert abs(cubic - pchip) < 5


def test_bd_rate_input_errors():
    with pytest.raises(ValueError, match="overlap"):
        metrics.bd_rate([0.1, 0.2, 0.3, 0.4], [20, 21, 22, 23], [0.1, 0.2, 0.3, 0.4], [30, 31, 32, 33])
    with pytest.raises(ValueError, match=">= 4 points"):
        metrics.bd_rate([0.1, 0.2, 0.3], [20, 22, 24], [0.1, 0.2, 0.3], [20, 22, 24], method="cubic")
    assert metrics.bd_rate([0.1, 0.2], [20, 24], [0.05, 0.1], [20, 24], method="pchip") == pytest.approx(-50.0)
    with pytest.raises(ValueError, match="same quality"):
        metrics.bd_rate([0.1, 0.2, 0.3, 0.4], [20, 21, 21, 23], JPEG_BPP, JPEG_PSNR)
    with pytest.raises(ValueError, match="> 0"):
        metrics.bd_rate([0.0, 0.2, 0.3, 0.4], [20, 21, 22, 23], JPEG_BPP, JPEG_PSNR)
    with pytest.raises(ValueError, match="method"):
        metrics.bd_rate(JPEG_BPP, JPEG_PSNR, JPEG_BPP, JPEG_PSNR, method="akima")


# ------------------------------------------------------------------------- BD-rate, fixed window

@pytest.mark.parametrize("method", METHODS)
def test_window_bd_rate_of_half_the_rate_is_minus_fifty_percent(method):
    half = [b / 2 for b in JPEG_BPP]
    r = metrics.bd_rate_window(JPEG_BPP, JPEG_PSNR, half, JPEG_PSNR, window=(26.0, 31.5), method=method)
    assert r.value == pytest.approx(-50.0)
    assert r.covers_window and r.range == (26.0, 31.5) and r.window == (26.0, 31.5) and r.note == ""


def test_window_bd_rate_differs_from_overlap_where_the_gap_is_not_constant():
    # the test curve saves 50 % below 28 dB and nothing above: the window average depends on the window
    q = np.array([22.0, 24.0, 26.0, 28.0, 30.0, 32.0, 34.0])
    anchor = np.exp(0.3 * (q - 22.0)) * 0.1
    test = anchor * np.where(q < 28.0, 0.5, 1.0)
    pchip_window = metrics.bd_rate_window(anchor, q, test, q, window=(30.0, 34.0), method="pchip")
    assert pchip_window.value == pytest.approx(0.0, abs=1e-9)
    assert metrics.bd_rate(anchor, q, test, q, method="pchip") < -10


def test_window_bd_rate_clips_to_what_the_curves_cover_and_says_so():
    q_test = [27.0, 28.0, 29.0, 30.0]  # starts above the window's lower end
    r = metrics.bd_rate_window(JPEG_BPP, JPEG_PSNR, [0.2, 0.3, 0.4, 0.5], q_test, window=(26.0, 31.5))
    assert not r.covers_window
    assert r.range == (27.0, 30.0)
    assert "test covers 27.00..30.00" in r.note and "26..31.5" in r.note
    # the same as the overlap BD-rate over the clipped interval: nothing extrapolated
    assert r.value == pytest.approx(metrics.bd_rate(JPEG_BPP, JPEG_PSNR, [0.2, 0.3, 0.4, 0.5], q_test))


def test_window_bd_rate_errors():
    with pytest.raises(ValueError, match="no part of the window"):
        metrics.bd_rate_window([0.1, 0.2, 0.3, 0.4], [32, 33, 34, 35], JPEG_BPP, JPEG_PSNR, window=(26.0, 31.5))
    with pytest.raises(ValueError, match="hi > lo"):
        metrics.bd_rate_window(JPEG_BPP, JPEG_PSNR, JPEG_BPP, JPEG_PSNR, window=(31.5, 26.0))
    with pytest.raises(ValueError, match=">= 4 points"):
        metrics.bd_rate_window([0.1, 0.2, 0.3], [25, 28, 32], JPEG_BPP, JPEG_PSNR)
    assert metrics.FIXED_PSNR_WINDOW == (26.0, 31.5)


# ------------------------------------------------------------------ pchip against scipy's reference

def test_pchip_matches_scipy():
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(3)
    cases = []
    for n in (2, 3, 5, 9):
        x = np.unique(rng.uniform(20, 40, n))
        cases.append((x, np.log(np.sort(rng.uniform(0.05, 2.0, x.size)))))
    cases += [
        (np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 0.1, -1.0, 0.0])),  # end slope limited to 3 * secant
        (np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.1, 2.0])),  # end slope of the wrong sign -> 0
        (np.array([0.0, 1.0, 2.0, 4.0]), np.array([0.0, 1.0, 1.0, 0.5])),  # flat and turning interior knots
    ]
    for x, y in cases:
        ref = interpolate.PchipInterpolator(x, y)
        np.testing.assert_allclose(metrics.pchip_slopes(x, y), ref.derivative()(x), rtol=1e-10, atol=1e-12)
        lo, hi = x[0] + 0.3 * (x[-1] - x[0]), x[-1] - 0.1 * (x[-1] - x[0])
        for a, b in ((x[0], x[-1]), (lo, hi)):
            assert metrics.pchip_integral(x, y, a, b) == pytest.approx(ref.integrate(a, b), rel=1e-10, abs=1e-12)
