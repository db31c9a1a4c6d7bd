"""benchmarks/visual_comparison.py: the --quick page (grids, labels, links), the size search, the browser check."""
from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "visual_comparison.py"
PIXELS = 768 * 512  # the Kodak images


def _load_script():
    """Import the script as a module (it puts benchmarks/ on sys.path for its helper modules)."""
    spec = importlib.util.spec_from_file_location("vqcodec_bench_visual_comparison", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _fake_vqcodec(max_quality: int = 8) -> types.ModuleType:
    """A stand-in with vqcodec's public API, coding with JPEG at quality 10 * q."""
    fake = types.ModuleType("vqcodec")
    fake.__version__ = "0.0-test"

    def encode_image(img, quality):
        buf = io.BytesIO()
        Image.fromarray(np.asarray(img)).save(buf, format="JPEG", quality=10 * quality)
        return buf.getvalue()

    fake.encode_image = encode_image
    fake.decode = lambda data: Image.open(io.BytesIO(data))
    fake.max_quality = lambda kind: max_quality if kind == "image" else 0
    return fake


def _check_page(out: Path, vis, codecs: list[str]) -> dict:
    """The page links existing PNGs, and its tables agree with visual.json; returns visual.json."""
    page = out / "index.html"
    summary = json.loads((out / "visual.json").read_text())
    html = page.read_text()
    sources = vis.referenced_images(page)
    assert sources == [p["png"] for p in summary["panels"]]
    assert vis.missing_images(page) == []
    assert "://" not in html.replace("http://www.w3.org", "")  # self-contained: no external resources
    for panel in summary["panels"]:
        assert [c["codec"] for c in panel["codecs"]] == ["vqcodec", *codecs]
        vq = panel["codecs"][0]
        for c in panel["codecs"]:
            assert c["bpp"] == pytest.approx(c["nbytes"] * 8 / PIXELS)
            assert f"<td>{c['name']}</td><td>{c['quality']}</td><td>{c['nbytes']}</td><td>{c['bpp']:.3f}" in html
            assert f"<td>{c['psnr']:.2f}</td>" in html
            if c["codec"] != "vqcodec" and not c["above_target"]:
                assert c["nbytes"] <= vq["nbytes"]  # matched: never above vqcodec's file
        with Image.open(out / panel["png"]) as grid:
            assert grid.format == "PNG"
            side = panel["crop"]["side"] * panel["scale"]
            tiles = 1 + len(panel["codecs"])
            cols = min(vis.COLUMNS, tiles)
            assert grid.width == cols * side + (cols + 1) * vis.GAP
            assert grid.height > -(-tiles // cols) * side
    return summary


def test_quick_page_with_a_stand_in_codec(tmp_path, monkeypatch):
    import torch

    monkeypatch.setitem(sys.modules, "vqcodec", _fake_vqcodec())
    vis = _load_script()
    threads = torch.get_num_threads()
    try:
        assert vis.main(["--quick", "--codecs", "jpeg,webp", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)  # leave this process as it was
    summary = _check_page(tmp_path, vis, ["jpeg", "webp"])
    [panel] = summary["panels"]  # --quick: one image at one size
    assert panel["image"] == vis.QUICK_IMAGE and panel["target_bpp"] == vis.QUICK_BPP
    assert panel["png"] == f"{vis.QUICK_IMAGE}_{vis.QUICK_BPP:g}bpp.png"
    vq, jpeg, webp = panel["codecs"]
    # the stand-in is JPEG at 10 q: JPEG's search must find a file at least as large, at most vqcodec's
    assert jpeg["quality"] >= 10 * vq["quality"] and jpeg["nbytes"] <= vq["nbytes"]
    assert abs(vq["bpp"] - vis.QUICK_BPP) < 0.25
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["index.html", "visual.json", panel["png"]])


def test_labels():
    vis = _load_script()
    coded = vis.Coded("webp", "WebP", 76, 23000, 0.468, 36.73, 34.1)
    assert vis.tile_label(coded) == ("WebP q=76", "0.468 bpp   PSNR 36.73 dB")
    over = vis.Coded("jpeg", "JPEG", 1, 9000, 0.183, 23.1, 22.0, above_target=True)
    assert vis.tile_label(over)[0] == "JPEG q=1, over target"
    assert vis.tile_label(vis.Coded("vqcodec", "vqcodec", 2, 1, 0.1, 26.0, 25.0))[0] == "vqcodec quality 2"
    assert vis.tile_label(None)[0] == "original"


def test_size_search_finds_the_largest_setting_not_above_the_limit():
    vis = _load_script()
    sizes = [100 + 7 * q + q * q for q in range(101)]  # growing with the setting
    tried: list[int] = []

    def size_of(q: int) -> int:
        tried.append(q)
        return sizes[q]

    for limit in (100, 150, 1000, 5000, 10799, 10800, 99999):
        tried.clear()
        q, above = vis._largest_not_above(size_of, 0, 100, limit)
        assert not above and q == max(s for s in range(101) if sizes[s] <= limit)
        assert len(set(tried)) <= 9
    assert vis._largest_not_above(size_of, 0, 100, 99) == (0, True)
    assert vis._closest_quality(size_of, 1, 8, 170) == 6  # sizes 108, 118, .., 160, 178, ..: 178 is the closest


def test_image_list_parsing():
    vis = _load_script()
    assert vis.parse_images(None, quick=True) == [(vis.QUICK_IMAGE, None)]
    assert [n for n, _ in vis.parse_images(None, quick=False)] == list(vis.DEFAULT_IMAGES)
    assert vis.parse_images("kodim05, kodim23:400,90,kodim01.png", quick=False) == [
        ("kodim05", None), ("kodim23", (400, 90)), ("kodim01", None)]
    with pytest.raises(ValueError, match="NAME:X,Y"):
        vis.parse_images("kodim23:400", quick=False)


def test_browser_check_refuses_a_page_with_a_missing_image(tmp_path):
    vis = _load_script()
    page = tmp_path / "index.html"
    page.write_text('<html><body><img src="there.png"><img src="gone.png"></body></html>')
    Image.new("RGB", (4, 4)).save(tmp_path / "there.png")
    assert vis.missing_images(page) == ["gone.png"]
    with pytest.raises(RuntimeError, match="gone.png"):
        vis.check_in_browser(page, "/nonexistent/chromium")


def test_quick_run_with_the_shipped_codec(tmp_path):
    """The script as run from a shell, with the installed vqcodec (JPEG only, to stay quick)."""
    p = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--codecs", "jpeg", "--out", str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    vis = _load_script()
    summary = _check_page(tmp_path, vis, ["jpeg"])
    assert str(tmp_path / "index.html") in p.stdout
    vq = summary["panels"][0]["codecs"][0]
    assert vq["name"] == "vqcodec" and 20 < vq["psnr"] < 45


@pytest.mark.slow
def test_page_renders_in_headless_chromium(tmp_path):
    """Every available baseline, and the page loaded in headless Chromium (skipped without chromium)."""
    vis = _load_script()
    if vis.find_chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    p = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--check-browser", "--out", str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "--check-browser: ok" in p.stderr
    result = vis.check_in_browser(tmp_path / "index.html", vis.find_chromium())
    assert result["colours"] > 1000 and result["images"] == 1
    assert shutil.which("chromium") or shutil.which("chromium-browser")
