"""benchmarks/rate_distortion.py: the quick smoke run end to end, and the vqcodec path with a stand-in API."""
from __future__ import annotations

import importlib.util
import io
import json
import logging
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "rate_distortion.py"
RESULT_KEYS = ("quality", "bpp", "psnr-rgb", "ms-ssim", "ms-ssim-db", "encoding_time", "decoding_time")


def _load_script():
    """Import the script as a module (it puts benchmarks/ on sys.path for its helper modules)."""
    spec = importlib.util.spec_from_file_location("vqcodec_bench_rate_distortion", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _check_record(path: Path, name: str, n_qualities: int, n_images: int) -> dict:
    record = json.loads(path.read_text())
    assert record["name"] == name and record["description"]
    assert record["dataset"]["images"] == n_images
    r = record["results"]
    assert set(RESULT_KEYS) <= set(r)
    assert all(len(r[k]) == n_qualities for k in RESULT_KEYS)
    assert r["quality"] == sorted(r["quality"])
    # more quality: more bits, less distortion
    assert all(np.diff(r["bpp"]) > 0) and all(np.diff(r["psnr-rgb"]) > 0) and all(np.diff(r["ms-ssim"]) > 0)
    assert all(0.02 < b < 4 for b in r["bpp"])
    assert all(20 < p < 50 for p in r["psnr-rgb"])
    assert all(0.5 < m < 1 for m in r["ms-ssim"])
    for m, db in zip(r["ms-ssim"], r["ms-ssim-db"]):
        assert db == pytest.approx(-10 * math.log10(1 - m))
    assert all(t > 0 for t in r["encoding_time"] + r["decoding_time"])
    return record


def test_quick_run_writes_sane_results(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--codecs", "jpeg,webp", "--out", str(out)],
        cwd=tmp_path,  # the script must find data/kodak from its own location, not the working directory
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "100%" in proc.stderr  # tqdm progress bar on stderr

    rd = out / "rd" / "kodak"  # the CompressAI-format records, alone in their folder
    jpeg = _check_record(rd / "jpeg.json", "JPEG", 2, 3)
    webp = _check_record(rd / "webp.json", "WebP", 2, 3)
    assert jpeg["results"]["quality"] == [10, 50]
    assert "method=6" in webp["description"]

    bd = json.loads((out / "bd_rate.json").read_text())
    assert bd["reported_method"] == "cubic"
    entry = next(e for e in bd["entries"] if e["test"] == "WebP" and e["anchor"] == "JPEG" and e["metric"] == "psnr-rgb")
    assert entry["cubic"] is None and "4 points" in entry["note"]  # two points: only the pchip variant
    assert entry["pchip"] < 0  # WebP beats JPEG
    published = {e["test"] for e in bd["entries"] if e["published_test"]}
    assert published == {
        "bmshj2018-hyperprior (CompressAI published, not re-measured)",
        "mbt2018 (CompressAI published, not re-measured)",
    }

    with Image.open(out / "rd_curves.png") as png:
        assert png.format == "PNG" and png.width > 500 and png.height > 300
    md = (out / "results.md").read_text()
    assert "Quick smoke run" in md and "| 10 |" in md and "## WebP" in md and "not re-measured" in md
    # the committed results are left alone
    assert set(p.name for p in out.iterdir()) == {"rd", "bd_rate.json", "rd_curves.png", "results.md"}
    assert set(p.name for p in rd.iterdir()) == {"jpeg.json", "webp.json"}
    for path in rd.iterdir():  # what `python -m compressai.utils.plot -m psnr-rgb -f rd/kodak/*.json` requires
        results = json.loads(path.read_text())["results"]
        assert len(results["bpp"]) == len(results["psnr-rgb"]) == len(results["ms-ssim"])


def _fake_vqcodec(max_quality: int = 3) -> types.ModuleType:
    """A stand-in with vqcodec's public API, coding with JPEG at quality 15 * q."""
    fake = types.ModuleType("vqcodec")
    fake.__version__ = "0.0-test"

    def encode_image(img, quality):
        buf = io.BytesIO()
        Image.fromarray(np.asarray(img)).save(buf, format="JPEG", quality=15 * quality)
        return buf.getvalue()

    fake.encode_image = encode_image
    fake.decode = lambda data: Image.open(io.BytesIO(data))
    fake.max_quality = lambda kind: max_quality if kind == "image" else 0
    return fake


def test_vqcodec_is_measured_through_its_public_api(tmp_path, monkeypatch):
    import torch

    monkeypatch.setitem(sys.modules, "vqcodec", _fake_vqcodec())
    rd = _load_script()
    threads = torch.get_num_threads()
    try:
        assert rd.main(["--quick", "--codecs", "vqcodec,jpeg", "--out", str(tmp_path), "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)  # leave this process as it was
    vq = _check_record(tmp_path / "rd" / "kodak" / "vqcodec.json", "vqcodec", 2, 3)
    assert vq["results"]["quality"] == [1, 3]
    bd = json.loads((tmp_path / "bd_rate.json").read_text())
    assert any(e["test"] == "vqcodec" and e["anchor"] == "JPEG" and e["pchip"] is not None for e in bd["entries"])
    assert "## vqcodec" in (tmp_path / "results.md").read_text()


def test_missing_vqcodec_api_is_one_warning_by_default_and_an_error_when_asked_for(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "vqcodec", types.ModuleType("vqcodec"))  # no API yet
    rd = _load_script()
    parser = rd.build_parser()
    with caplog.at_level(logging.WARNING):
        codecs = rd.select_codecs(None, parser)
    assert "vqcodec" not in [c.key for c in codecs] and "jpeg" in [c.key for c in codecs]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "encode_image" in warnings[0] and "\n" not in warnings[0]
    with pytest.raises(SystemExit):
        rd.select_codecs("vqcodec,jpeg", parser)


def test_unknown_codec_is_a_usage_error(capsys):
    rd = _load_script()
    with pytest.raises(SystemExit) as exc:
        rd.select_codecs("jpeg,bpg", rd.build_parser())
    assert exc.value.code == 2
    assert "unknown codec 'bpg'" in capsys.readouterr().err
