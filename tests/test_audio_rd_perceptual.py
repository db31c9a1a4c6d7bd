"""The perceptual and pitch metrics of the speech benchmark (issue 21; benchmarks/audio_rate_distortion.py with
benchmarks/speech_metrics.py): a --quick run with the tiny models, every metric whose package is installed
scored on every clip and every missing one skipped with what to install, the uncoded original's DNSMOS, the
spectrogram figure; the figure's choice of outputs and the averages on known answers.

The quick run is marked slow (about 40 s on the shared 2-core machine with the metrics' packages
installed); the unit checks are not. tests/test_audio_benchmark.py's own --quick run covers the script as CI
runs it (without these packages: every metric skipped with a note)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "audio_rate_distortion.py"


def _bench_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import audio_rate_distortion
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return audio_rate_distortion


@pytest.fixture(scope="module")
def quick(tiny_all_weights, tmp_path_factory):
    """(JSON document, output folder) of a --quick run (vqcodec at quality 1 only) with the tiny models."""
    out = tmp_path_factory.mktemp("audio_rd_perceptual")
    env = {**os.environ, "VQCODEC_WEIGHTS_DIR": str(tiny_all_weights)}
    cmd = [sys.executable, str(BENCH), "--quick", "--qualities", "1", "--threads", "1", "--out", str(out)]
    p = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert str(out / "audio_spectrograms.png") in p.stdout
    return json.loads((out / "audio_rd.json").read_text()), out


def _speech_metrics():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import speech_metrics
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return speech_metrics


METRIC_FIELDS = {"dnsmos": ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"), "visqol": ("visqol_poly",),
                 "f0": ("vuv_f1",)}


@pytest.mark.slow
def test_quick_run_perceptual_metrics_and_spectrograms(quick):
    """Each metric whose package is installed has a value on every clip; each missing one is skipped with a
    note that says what to install; the spectrogram figure shows the original and every measured codec."""
    doc, out = quick
    missing = _speech_metrics().missing()
    skipped = doc["metrics"]["skipped"]
    assert set(skipped) == set(missing) and all("pip install" in why for why in skipped.values())
    md = (out / "audio_rd.md").read_text()
    assert "## Perceptual and pitch metrics, all sets together" in md
    for metric in skipped:
        assert f"metric {metric} was skipped" in md
    for codec in doc["codecs"].values():
        for e in codec["settings"]:
            for metric, keys in METRIC_FIELDS.items():
                for k in keys:
                    values = [r[k] for r in e["per_clip"]]
                    if metric in skipped:
                        assert values == [None] * 3 and e[k] is None
                    else:
                        lo, hi = (0.0, 1.0) if k == "vuv_f1" else (1.0, 5.0)
                        assert all(v is not None and lo <= v <= hi for v in values), (k, values)
                        assert e[k] == pytest.approx(np.mean(values), rel=1e-12)
    original = doc["original"]
    assert original["clips"] == 3 and (original["dnsmos_ovrl"] is None) == ("dnsmos" in skipped)
    # the figure: the first clip (the default clip is not in a quick run), every codec measured
    fig = doc["spectrograms"]
    assert fig["clip"] == f"{doc['datasets'][0]['name']}/{doc['datasets'][0]['clips'][0]['file']}"
    assert (out / fig["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p["codec"] for p in fig["panels"]} == set(doc["codecs"])


def test_figure_rows_pair_each_baseline_with_the_nearest_vqcodec_rate():
    m = _bench_module()

    def codec(*points):
        return {"settings": [{"setting": s, "kbps": k} for s, k in points]}

    vq = codec(("1", 0.6), ("3", 1.4), ("6", 2.7), ("16", 7.3))
    c2 = codec(("700C", 0.8), ("1200", 1.2), ("3200", 3.2))
    opus = codec(("6", 8.3), ("8", 9.9))
    assert m.figure_rows({"vqcodec": vq, "codec2": c2, "opus": opus}) == [
        [("codec2", "1200"), ("vqcodec", "3")], [("codec2", "3200"), ("vqcodec", "6")],
        [("opus", "6"), ("vqcodec", "16")]]
    # a baseline measured without the figure's settings shows every setting it has; no vqcodec, no pair
    assert m.figure_rows({"opus": codec(("12", 14.0))}) == [[("opus", "12"), None]]
    assert m.figure_rows({"vqcodec": vq}) == [[("vqcodec", "1"), ("vqcodec", "3")],
                                              [("vqcodec", "6"), ("vqcodec", "16")]]


def test_new_metrics_are_averaged_over_the_clips_that_have_them():
    m = _bench_module()
    base = {"bytes": 100, "seconds": 1.0, "stoi": 0.5, "pesq_wb": 2.0, "mel": 1.0, "encode_s": 0.1,
            "decode_s": 0.1}
    rows = [{**base, "dnsmos_ovrl": 2.0, "f0_cents": 30.0, "vuv_f1": 0.8, "visqol": None},
            {**base, "dnsmos_ovrl": 3.0, "f0_cents": None, "vuv_f1": 0.9, "visqol": None}]
    s = m.summarise(rows, with_speed=False)
    assert s["dnsmos_ovrl"] == pytest.approx(2.5) and s["f0_cents"] == pytest.approx(30.0)
    assert s["vuv_f1"] == pytest.approx(0.85) and s["visqol"] is None and s["dnsmos_bak"] is None


def test_an_unknown_metric_is_a_usage_error(tmp_path):
    p = subprocess.run([sys.executable, str(BENCH), "--quick", "--skip-metrics", "mos", "--out", str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "--skip-metrics" in p.stderr and "dnsmos" in p.stderr
