"""Perceptual and pitch metrics for the speech benchmarks (issue 21), each behind an optional package.

Every signal here is a 1-D float array (numpy) in [-1, 1] at 16 kHz (`SPEECH_RATE`); other rates are
refused rather than resampled, so that callers resample once (soxr, as `audio_codecs.to_rate` does) and
all metrics see the same samples. Full-reference metrics take two signals that are already aligned
(`shift` applies the lag `vqcodec.metrics.audio.align` found) and cut them to the shorter one.

  * DNSMOS P.835 (`Dnsmos`, package `speechmos`, which also needs `onnxruntime` and `librosa`): the
    non-intrusive deep noise suppression MOS of Reddy et al. (2022), run offline on the ONNX models that
    `speechmos` ships: overall (OVRL), speech signal (SIG) and background (BAK) quality, MOS 1..5, plus
    the P.808 overall MOS. Clips shorter than the model's 9.01 s window are repeated to fill it (as
    `speechmos.dnsmos.run` does); longer clips are scored on 9.01 s windows at 1 s hops and averaged.
  * ViSQOL v3 in speech mode (`Visqol`, package `visqol-python`, a Python port of Google's ViSQOL
    3.3.3): full-reference MOS-LQO 1..5 from the NSIM of gammatone spectrograms. Two mappings from NSIM to
    MOS: the deep-lattice model (the C++ tool's default; needs `ai-edge-litert`, `pip install
    "visqol-python[lattice]"`) and the older polynomial (always there; it rates the same signals 1-2 points
    higher). Both are returned when both can run.
  * f0 and voicing (`f0_track`, `f0_error_cents`, `voicing_f1`, `pitch_scores`; WORLD's Harvest or
    DIO + StoneMask through `pyworld`, frames of 10 ms): the median absolute f0 difference in cents
    (1200 log2 f_deg / f_ref) over the frames voiced in both signals, and the F1 score of the coded
    signal's voiced/unvoiced decisions against the original's (voiced = positive class).

`missing()` says which of these cannot run here and what to install; the benchmark skips those with a note.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "SPEECH_RATE",
    "F0_FRAME_MS",
    "F0_FLOOR_HZ",
    "F0_CEIL_HZ",
    "INSTALL_HINT",
    "missing",
    "shift",
    "f0_track",
    "f0_error_cents",
    "voicing_f1",
    "pitch_scores",
    "Dnsmos",
    "Visqol",
    "METRICS",
    "FIELDS",
    "SpeechScorer",
]

SPEECH_RATE = 16000  # Hz: DNSMOS and ViSQOL speech mode are defined at 16 kHz; f0 is tracked there too
F0_FRAME_MS = 10.0  # f0 frame period, milliseconds
F0_FLOOR_HZ = 60.0  # lowest f0 searched (Harvest/DIO); below pyworld's default 71 Hz for low male voices
F0_CEIL_HZ = 600.0  # highest f0 searched; below pyworld's default 800 Hz, which invites octave-up errors
F0Method = Literal["harvest", "dio"]

# What each metric needs, and the one-line install hint printed when it cannot run.
_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "dnsmos": (("speechmos", "onnxruntime", "librosa"), "pip install speechmos onnxruntime librosa requests"),
    "visqol": (("visqol",), 'pip install "visqol-python[lattice]"'),
    "f0": (("pyworld",), "pip install pyworld-prebuilt"),
}
INSTALL_HINT = 'pip install -e ".[speech-bench]"'


def _import_error(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure (pyworld 0.3.5 lacks pkg_resources) = unusable
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"{module}: {first}"
    return None


def missing(metrics: tuple[str, ...] = tuple(_NEEDS)) -> dict[str, str]:
    """{metric: why it cannot run here, with what to install} for those of `metrics` ("dnsmos", "visqol",
    "f0") whose packages do not import; an empty dict when all can run."""
    out: dict[str, str] = {}
    for name in metrics:
        modules, hint = _NEEDS[name]
        errors = [e for e in map(_import_error, modules) if e]
        if errors:
            out[name] = f"{'; '.join(errors)} ({hint}, or {INSTALL_HINT})"
    return out


def _mono16(x: Any, rate: int, what: str = "signal") -> np.ndarray:
    if rate != SPEECH_RATE:
        raise ValueError(f"{what}: speech metrics run at {SPEECH_RATE} Hz, got {rate} Hz: resample first")
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D mono signal, got shape {a.shape}")
    return a


def shift(ref: np.ndarray, deg: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """(ref, deg) aligned as `vqcodec.metrics.audio.align` aligns them for a delay of `lag` samples
    (deg[n + lag] matches ref[n]) and cut to their common length."""
    if lag >= 0:
        deg = deg[lag:]
    else:
        ref = ref[-lag:]
    n = min(len(ref), len(deg))
    return ref[:n], deg[:n]


# ------------------------------------------------------------------------------------------------ f0
def f0_track(x: np.ndarray, rate: int = SPEECH_RATE, method: F0Method = "harvest") -> np.ndarray:
    """f0 in Hz per 10 ms frame (frame k centred at k * 10 ms), 0.0 where the frame is unvoiced.

    `method`: "harvest" (WORLD's Harvest: robust, about 0.15 s per second of speech on one core) or "dio"
    (DIO refined by StoneMask: about 30x faster, more voicing errors). Search range F0_FLOOR_HZ..F0_CEIL_HZ.
    """
    a = np.ascontiguousarray(_mono16(x, rate), dtype=np.float64)  # checks the rate before pyworld is needed
    import pyworld

    if method == "harvest":
        f0, _ = pyworld.harvest(a, rate, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ, frame_period=F0_FRAME_MS)
    elif method == "dio":
        coarse, t = pyworld.dio(a, rate, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ, frame_period=F0_FRAME_MS)
        f0 = pyworld.stonemask(a, coarse, t, rate)
    else:
        raise ValueError(f"f0 method {method!r}: expected 'harvest' or 'dio'")
    return np.asarray(f0, dtype=np.float64)


def _common(f0_ref: np.ndarray, f0_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(f0_ref), len(f0_deg))
    return np.asarray(f0_ref[:n], dtype=np.float64), np.asarray(f0_deg[:n], dtype=np.float64)


def f0_error_cents(f0_ref: np.ndarray, f0_deg: np.ndarray) -> tuple[float | None, int]:
    """(median of |1200 log2(f0_deg / f0_ref)| in cents over the frames voiced (f0 > 0) in both tracks,
    number of such frames); (None, 0) when no frame is voiced in both. Tracks are cut to the shorter one.
    100 cents = one semitone; an octave error is 1200 cents."""
    r, d = _common(f0_ref, f0_deg)
    both = (r > 0) & (d > 0)
    if not both.any():
        return None, 0
    cents = np.abs(1200.0 * np.log2(d[both] / r[both]))
    return float(np.median(cents)), int(both.sum())


def voicing_f1(f0_ref: np.ndarray, f0_deg: np.ndarray) -> float | None:
    """F1 of the coded signal's voiced frames (f0 > 0) against the original's, voiced = positive class:
    2 TP / (2 TP + FP + FN), 0..1. None when neither track has a voiced frame (nothing to score)."""
    r, d = _common(f0_ref, f0_deg)
    rv, dv = r > 0, d > 0
    tp = int(np.sum(rv & dv))
    wrong = int(np.sum(rv != dv))  # FP + FN
    if tp + wrong == 0:
        return None
    return 2.0 * tp / (2.0 * tp + wrong)


def pitch_scores(ref: np.ndarray, deg: np.ndarray, rate: int = SPEECH_RATE, method: F0Method = "harvest",
                 f0_ref: np.ndarray | None = None) -> dict[str, Any]:
    """f0 error and voicing agreement of aligned `deg` against `ref` (16 kHz).

    `f0_ref`: the reference's track if already computed (`f0_track(ref)`; a longer track is cut).
    Returns {"f0_cents": median cents or None, "f0_frames": frames voiced in both, "vuv_f1": F1 or None,
    "voiced_ref": fraction of the reference's frames voiced, "voiced_deg": the same for deg}."""
    if f0_ref is None:
        f0_ref = f0_track(ref, rate, method)
    f0_deg = f0_track(deg, rate, method)
    r, d = _common(f0_ref, f0_deg)
    cents, frames = f0_error_cents(r, d)
    return {"f0_cents": cents, "f0_frames": frames, "vuv_f1": voicing_f1(r, d),
            "voiced_ref": float(np.mean(r > 0)) if len(r) else None,
            "voiced_deg": float(np.mean(d > 0)) if len(d) else None}


# ------------------------------------------------------------------------------------------------ DNSMOS
@dataclass
class Dnsmos:
    """DNSMOS P.835 through the ONNX models bundled with `speechmos` (no network), non-personalised.

    `threads`: onnxruntime intra-op threads (speechmos' own `run` uses every core). Call with a 16 kHz
    signal; returns {"ovrl", "sig", "bak", "p808"}, MOS 1..5 (higher is better). Samples are clipped to
    [-1, 1] first (speechmos refuses anything outside)."""

    threads: int = 1

    def __post_init__(self) -> None:
        import onnxruntime as ort
        from speechmos import dnsmos as sm

        base = os.path.dirname(os.path.abspath(sm.__file__))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting on shared cores
        model = sm.DNSMOS.__new__(sm.DNSMOS)  # speechmos' scorer, with sessions that respect `threads`
        model.primary_model_path = os.path.join(base, "dnsmos_models", "sig_bak_ovr.onnx")
        model.onnx_sess = ort.InferenceSession(model.primary_model_path, opts, providers=["CPUExecutionProvider"])
        model.p808_onnx_sess = ort.InferenceSession(os.path.join(base, "dnsmos_models", "model_v8.onnx"), opts,
                                                    providers=["CPUExecutionProvider"])
        self._model = model

    def __call__(self, x: np.ndarray, rate: int = SPEECH_RATE) -> dict[str, float]:
        a = np.clip(_mono16(x, rate, "DNSMOS input"), -1.0, 1.0).astype(np.float32)
        if not a.any():
            raise ValueError("DNSMOS input is silent (all zeros)")
        r = self._model(a, rate, False)
        return {"ovrl": float(r["ovrl_mos"]), "sig": float(r["sig_mos"]), "bak": float(r["bak_mos"]),
                "p808": float(r["p808_mos"])}


# ------------------------------------------------------------------------------------------------ ViSQOL
class Visqol:
    """ViSQOL v3 speech mode (`visqol-python`), full reference, 16 kHz.

    Call with aligned (ref, deg); returns {"lattice": MOS-LQO from the deep-lattice mapping or None when
    `ai-edge-litert` is missing, "poly": MOS-LQO from the polynomial mapping}, each 1..5 (higher is better).
    `lattice_note` says why the lattice mapping is unavailable (None when it runs)."""

    def __init__(self) -> None:
        import logging

        from visqol import VisqolApi

        self._poly = VisqolApi()
        self._poly.create(mode="speech", use_lattice_model=False)
        self._lattice: Any = None
        self.lattice_note: str | None = None
        try:
            lattice = VisqolApi()
            logging.getLogger("visqol").setLevel(logging.ERROR)
            lattice.create(mode="speech", use_lattice_model=True)
            self._lattice = lattice
        except ImportError as exc:
            first = (str(exc).strip().splitlines() or ["ai-edge-litert missing"])[0]
            self.lattice_note = f"{first} (pip install \"visqol-python[lattice]\")"

    def __call__(self, ref: np.ndarray, deg: np.ndarray, rate: int = SPEECH_RATE) -> dict[str, float | None]:
        r, d = _common(_mono16(ref, rate, "ViSQOL reference"), _mono16(deg, rate, "ViSQOL degraded"))
        poly = float(self._poly.measure_from_arrays(r, d, rate).moslqo)
        out: dict[str, float | None] = {"lattice": None, "poly": poly}
        if self._lattice is not None:
            out["lattice"] = float(self._lattice.measure_from_arrays(r, d, rate).moslqo)
        return out


# ------------------------------------------------------------------------------------------------ one run
METRICS = ("dnsmos", "visqol", "f0")
# The per-clip fields `SpeechScorer.score` returns (None where a metric did not run).
FIELDS = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "visqol", "visqol_poly", "f0_cents",
          "f0_frames", "vuv_f1")


class SpeechScorer:
    """The metrics of this module that can run here, with a cache per clip for what depends on the
    original alone (its DNSMOS, its f0 track).

    `skip`: metric names ("dnsmos", "visqol", "f0") to leave out; `skipped` maps each metric that will not
    run to the reason (what to install, or "left out"). Clips are identified by a hashable `key` of the
    caller's choice; `ref` is always the clip's whole 16 kHz original."""

    def __init__(self, skip: tuple[str, ...] = (), threads: int = 1, f0_method: F0Method = "harvest") -> None:
        unknown = sorted(set(skip) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
        self.skipped: dict[str, str] = {m: "left out on request" for m in METRICS if m in skip}
        self.skipped.update(missing(tuple(m for m in METRICS if m not in skip)))
        self.f0_method = f0_method
        self.dnsmos = Dnsmos(threads) if "dnsmos" not in self.skipped else None
        self.visqol = Visqol() if "visqol" not in self.skipped else None
        self._f0: dict[Any, np.ndarray] = {}
        self._original: dict[Any, dict[str, float | None]] = {}

    @property
    def visqol_note(self) -> str | None:
        """Why ViSQOL's lattice mapping (the `visqol` field) is missing, if it is."""
        return None if self.visqol is None else self.visqol.lattice_note

    def original(self, key: Any, ref: np.ndarray) -> dict[str, float | None]:
        """DNSMOS of the uncoded original (16 kHz): {"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak",
        "dnsmos_p808"}, None where DNSMOS does not run; computed once per `key`."""
        if key not in self._original:
            d = self.dnsmos(ref) if self.dnsmos is not None else {}
            self._original[key] = {f"dnsmos_{k}": d.get(k) for k in ("ovrl", "sig", "bak", "p808")}
        return self._original[key]

    def _ref_f0(self, key: Any, ref: np.ndarray, lag: int, n: int) -> np.ndarray:
        """f0 track of ref as `shift(ref, deg, lag)` cut it to n samples: the whole original's track once
        per clip, cut, when the cut is a prefix (lag >= 0: every delaying codec); computed afresh otherwise."""
        if lag < 0:
            return f0_track(ref[-lag:][:n], SPEECH_RATE, self.f0_method)
        if key not in self._f0:
            self._f0[key] = f0_track(ref, SPEECH_RATE, self.f0_method)
        return self._f0[key][: int(n / (SPEECH_RATE * F0_FRAME_MS / 1000.0)) + 1]

    def score(self, key: Any, ref: np.ndarray, deg: np.ndarray, lag: int) -> dict[str, float | int | None]:
        """Every FIELDS value of `deg` (16 kHz decoded output, not yet aligned) against the clip's original
        `ref`, aligned by `lag` samples (deg[n + lag] matches ref[n])."""
        r, d = shift(np.asarray(ref, dtype=np.float64), np.asarray(deg, dtype=np.float64), lag)
        out: dict[str, float | int | None] = dict.fromkeys(FIELDS)
        if self.dnsmos is not None:
            out.update({f"dnsmos_{k}": v for k, v in self.dnsmos(d).items()})
        if self.visqol is not None:
            v = self.visqol(r, d)
            out["visqol"], out["visqol_poly"] = v["lattice"], v["poly"]
        if "f0" not in self.skipped:
            p = pitch_scores(r, d, SPEECH_RATE, self.f0_method, f0_ref=self._ref_f0(key, ref, lag, len(r)))
            out.update(f0_cents=p["f0_cents"], f0_frames=p["f0_frames"], vuv_f1=p["vuv_f1"])
        return out
