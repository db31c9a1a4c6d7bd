"""benchmarks/audio_listening.py: the --quick page (players, spectrograms, matched rates, its JSON), the rate
matching search, and the page played in headless Chromium (skipped without chromium).

Codec2 and Opus are optional: without their tools the page shows vqcodec alone, and the checks of the
matched rows are skipped."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "audio_listening.py"
HAVE_BASELINES = all(shutil.which(t) for t in ("opusenc", "opusdec", "c2enc", "c2dec"))
NO_METRICS = ("--skip-metrics", "dnsmos,visqol,f0")


def _load_script():
    spec = importlib.util.spec_from_file_location("vqcodec_bench_audio_listening", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _run(weights: Path | None, *args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if weights is not None:
        env["VQCODEC_WEIGHTS_DIR"] = str(weights)
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _check_page(out: Path, lis) -> dict:
    """Every linked file exists, the page and listening.json agree, the WAVs are 16 kHz 16-bit mono."""
    page = out / "index.html"
    summary = json.loads((out / "listening.json").read_text())
    text = page.read_text()
    assert lis.missing_files(page) == []
    assert "://" not in text.replace("http://www.w3.org", "")  # self-contained
    cells = [c for clip in summary["clips"] for c in [clip["original"], *[x for row in clip["rows"] for x in row]]]
    assert lis.referenced_files(page) == [f for c in cells for f in (c["wav"], c["png"])]
    for c in cells:
        info = sf.info(str(out / c["wav"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.duration == pytest.approx(c["seconds"], abs=1e-3)
        assert (out / c["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if c["codec"] != "original":
            assert c["kbps"] == pytest.approx(c["nbytes"] * 8 / summary["clips"][0]["seconds"] / 1000, rel=1e-9)
            assert f"{c['kbps']:.2f} kbps ({c['nbytes']} bytes)" in text
    return summary


@pytest.fixture(scope="module")
def quick(tiny_all_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("listening_quick")
    p = _run(tiny_all_weights, "--quick", *NO_METRICS, "--out", str(out), cwd=out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert str(out / "index.html") in p.stdout
    return out


def test_quick_page_with_the_tiny_model(quick, tiny_all_weights, monkeypatch):
    lis = _load_script()
    summary = _check_page(quick, lis)
    [clip] = summary["clips"]
    assert clip["key"] == lis.shortest_bundled() == "ljspeech/LJ001-0008.wav"
    assert clip["rate"] == 22050 and clip["original"]["codec"] == "original"
    rows = clip["rows"]
    if not HAVE_BASELINES:
        assert all(len(r) == 1 and r[0]["codec"] == "vqcodec" for r in rows)
        return
    assert [r[0]["codec"] + " " + r[0]["setting"] for r in rows] == ["codec2 3200", "opus 6"]  # by rate
    # vqcodec's quality is the one whose file for this clip is closest to the baseline's
    import vqcodec

    monkeypatch.setenv("VQCODEC_WEIGHTS_DIR", str(tiny_all_weights))
    samples, rate = sf.read(str(ROOT / "data" / "speech" / clip["key"]), dtype="float32")
    top = vqcodec.max_quality("audio")
    sizes = {q: len(vqcodec.encode_audio(samples, rate, q)) for q in range(1, top + 1)}
    for base, vq in rows:
        assert vq["codec"] == "vqcodec"
        best = min(abs(s - base["nbytes"]) for s in sizes.values())
        assert vq["nbytes"] == sizes[int(vq["setting"])] and abs(vq["nbytes"] - base["nbytes"]) == best
        assert vq["metrics"]["stoi"] is not None and vq["metrics"]["f0_cents"] is None  # f0 was skipped
    assert "metric f0" in summary["skipped"] and "left out" in summary["skipped"]["metric f0"]


def test_without_baselines_vqcodec_shows_its_lowest_middle_and_top_quality(tiny_all_weights, tmp_path,
                                                                          monkeypatch):
    p = _run(tiny_all_weights, "--quick", "--codecs", "vqcodec", *NO_METRICS, "--out", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = _check_page(tmp_path, _load_script())
    rows = summary["clips"][0]["rows"]
    import vqcodec

    monkeypatch.setenv("VQCODEC_WEIGHTS_DIR", str(tiny_all_weights))
    top = vqcodec.max_quality("audio")
    assert [[c["codec"], c["setting"]] for r in rows for c in r] == [
        ["vqcodec", str(q)] for q in sorted({1, (1 + top) // 2, top})]
    assert "opus" not in summary["skipped"]  # not asked for: not a skipped baseline


def test_the_rate_search_finds_the_closest_setting():
    lis = _load_script()
    sizes = [0, 100, 180, 300, 420, 700, 1000]  # setting q -> size, growing
    tried: list[int] = []

    def size_of(q: int) -> int:
        tried.append(q)
        return sizes[q]

    for target, want in ((50, 1), (139, 1), (141, 2), (240, 2), (241, 3), (5000, 6), (700, 5)):
        tried.clear()
        assert lis.closest(size_of, 1, 6, target) == want, target
        assert len(set(tried)) <= 5


def test_the_browser_check_refuses_a_page_with_a_missing_file(tmp_path):
    lis = _load_script()
    page = tmp_path / "index.html"
    page.write_text('<html><body><audio controls src="here.wav"></audio><audio src="gone.wav"></audio>'
                    '<img src="http://example.org/x.png"></body></html>')
    sf.write(str(tmp_path / "here.wav"), np.zeros(160, dtype=np.int16), 16000, subtype="PCM_16")
    assert lis.missing_files(page) == ["gone.wav", "http://example.org/x.png"]
    with pytest.raises(RuntimeError, match="gone.wav"):
        lis.check_in_browser(page, "/nonexistent/chromium")


def test_an_unknown_clip_is_a_usage_error(tmp_path):
    p = _run(None, "--clips", "nowhere/none.wav", "--out", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 2 and "nowhere/none.wav" in p.stderr


@pytest.mark.slow
def test_page_plays_in_headless_chromium(quick):
    """The quick page in headless Chromium: non-blank screenshot, every player loads its WAV."""
    lis = _load_script()
    if lis.find_chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    result = lis.check_in_browser(quick / "index.html", lis.find_chromium())
    summary = json.loads((quick / "listening.json").read_text())
    players = sum(1 + sum(len(row) for row in clip["rows"]) for clip in summary["clips"])
    assert result["players_loaded"] == players and result["files"] == 2 * players
    # a player whose file is not audio: the check must fail
    original = summary["clips"][0]["original"]
    broken = quick / "broken.html"
    broken.write_text((quick / "index.html").read_text().replace(f'src="{original["wav"]}"',
                                                                  f'src="{original["png"]}"', 1))
    with pytest.raises(RuntimeError, match="did not load"):
        lis.check_in_browser(broken, lis.find_chromium())


@pytest.mark.slow
def test_quick_run_with_the_shipped_model_and_every_metric(tmp_path):
    """The script as run from a shell: shipped model, every metric whose package is installed, and the
    browser check when Chromium is there."""
    p = _run(None, "--quick", "--check-browser", "--out", str(tmp_path), cwd=tmp_path, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    lis = _load_script()
    summary = _check_page(tmp_path, lis)
    if lis.find_chromium() is not None:
        assert "--check-browser: ok" in p.stderr
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import speech_metrics
    finally:
        sys.path.pop(0)
    missing = speech_metrics.missing()
    for row in summary["clips"][0]["rows"]:
        for c in row:
            m = c["metrics"]
            assert 0.0 <= m["stoi"] <= 1.0
            assert (m["dnsmos_ovrl"] is None) == ("dnsmos" in missing)
            assert (m["vuv_f1"] is None) == ("f0" in missing)
            assert (m["visqol_poly"] is None) == ("visqol" in missing)
