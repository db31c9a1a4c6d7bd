"""benchmarks/audio_learning_curve.py: CPU hours summed over a resumed run's processes, and the DNSMOS of
codec runs beside the validation curve."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import audio_learning_curve
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return audio_learning_curve


def _val(stoi: float) -> dict:
    return {"stages": [3, 16], "stoi": [stoi, stoi + 0.05], "pesq_wb": [1.5, 2.0], "mel_distance": [0.6, 0.5]}


def test_cpu_hours_add_up_over_restarted_counts_and_codec_runs_join(tmp_path):
    log = tmp_path / "log.jsonl"
    records = [{"step": 50, "cpu_s": 1800.0}, {"step": 100, "cpu_s": 3600.0, "val": _val(0.80)},
               {"step": 150, "cpu_s": 900.0, "val": _val(0.82)},  # a resumed process that counted from 0
               {"step": 200, "cpu_s": 1800.0, "val": _val(0.83)}]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    m = _module()
    assert [round(r["cpu_h"], 2) for r in m.validation_rows(log, 1.0)] == [1.0, 1.25, 1.5]
    rd = tmp_path / "audio_rd.json"
    rd.write_text(json.dumps({"original": {"dnsmos_ovrl": 3.0}, "codecs": {"vqcodec": {"settings": [
        {"setting": "3", "dnsmos_ovrl": 2.5, "pesq_wb": 1.6}, {"setting": "16", "dnsmos_ovrl": 2.9, "pesq_wb": 2.1}]}}}))
    assert m.main([str(log), "--out", str(tmp_path / "out"), "--codec-run", f"1.5:{rd}"]) == 0
    md = (tmp_path / "out" / "audio_learning_curve.md").read_text()
    assert "| 200 | 1.50 |" in md and "| 1.50 | 2.50 / 1.60 | 2.90 / 2.10 | 3.00 |" in md
    assert (tmp_path / "out" / "audio_learning_curve.png").stat().st_size > 0
