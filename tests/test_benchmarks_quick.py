"""Smoke runs (--quick) of the benchmarks that exercise the shipped model, as CI runs them.
They check that the scripts run on a fresh clone and that their outputs are sane, not the figures."""
import json
import subprocess
import sys
from pathlib import Path


BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900)


def test_image_quality_quick(tmp_path):
    p = _run("image_quality.py", "--quick", "--out", str(tmp_path), "--threads", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "image_quality.json").read_text())
    psnrs = [lv["psnr"] for lv in res["levels"]]
    assert len(psnrs) == 8 and psnrs[-1] > psnrs[0]  # more stages, better quality
    assert psnrs[0] > 15


def test_codec_speed_quick(tmp_path):
    p = _run("codec_speed.py", "--quick", "--out", str(tmp_path), "--threads", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:] + p.stdout[-2000:]
    res = json.loads((tmp_path / "codec_speed.json").read_text())
    assert all(lv["indices_exact"] for lv in res["levels"])
    for st in res["stages"]:
        assert st["coded_bits_per_index"] < 9.0  # the prior beats uncoded 9-bit indices
        assert abs(st["coding_overhead_pct"]) < 1.0


def test_rate_distortion_quick_with_vqcodec(tmp_path):
    p = _run("rate_distortion.py", "--quick", "--codecs", "vqcodec,jpeg", "--out", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    vq = json.loads((tmp_path / "rd" / "kodak" / "vqcodec.json").read_text())
    bpp = vq["results"]["bpp"]
    assert bpp == sorted(bpp) and bpp[0] > 0


def test_audio_speed_quick(tmp_path, tiny_all_weights):
    """Speed, memory and thread exactness of the audio codec (tiny model until the shipped one is used)."""
    import os

    env = {**os.environ, "VQCODEC_WEIGHTS_DIR": str(tiny_all_weights)}
    p = subprocess.run([sys.executable, str(BENCH / "audio_speed.py"), "--quick", "--out", str(tmp_path), "--threads", "1"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "audio_speed.json").read_text())
    assert res["threads_exactness"]["indices_equal"] and res["threads_exactness"]["max_sample_diff_lsb16"] <= 1.0
    assert res["clip"]["encode_x_realtime"] > 0 and res["clip"]["kbps"] > 0
    assert set(res["cli"]) == {"10s", "60s"}
    for r in res["cli"].values():
        assert r["encode_peak_rss_mib"] > 50 and r["vq_bytes"] > 0
