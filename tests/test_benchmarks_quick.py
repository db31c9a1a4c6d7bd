"""Smoke runs (--quick) of the benchmarks that exercise the shipped model, as CI runs them.
They check that the scripts run on a fresh clone and that their outputs are sane, not the figures."""
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image


BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900)


def test_image_quality_quick(tmp_path):
    p = _run("image_quality.py", "--quick", "--out", str(tmp_path), "--threads", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "image_quality.json").read_text())
    psnrs = [lv["psnr"] for lv in res["levels"]]
    assert [lv["stages"] for lv in res["levels"]] == list(range(1, len(psnrs) + 1))
    assert len(psnrs) >= 2 and psnrs[-1] > psnrs[0]  # more stages, better quality
    assert psnrs[0] > 15
    refined = [lv["psnr"] for lv in res["refinement"]["levels"]]  # the shipped model has refinement levels
    assert refined == sorted(refined) and refined[0] > psnrs[-1]
    assert res["refinement"]["unquantized_psnr"] > refined[-1]


def test_codec_speed_quick(tmp_path):
    p = _run("codec_speed.py", "--quick", "--out", str(tmp_path), "--threads", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:] + p.stdout[-2000:]
    res = json.loads((tmp_path / "codec_speed.json").read_text())
    assert all(lv["indices_exact"] for lv in res["levels"])
    for st in res["stages"]:
        assert st["coded_bits_per_index"] < 9.0  # the prior beats uncoded 9-bit indices
        assert abs(st["coding_overhead_pct"]) < 1.0
        assert 0 <= st["raw_mode_streams"] <= st["streams"]
    assert res["stages"][0]["streams"] == 4  # 2 images x 2 qualities, each file has stage 1
    low, top = res["levels"][0], res["levels"][-1]  # quality 1: VQ layers only; the top: refinement layers too
    assert low["bpp_refinement_layers"] == 0 and top["bpp_refinement_layers"] > top["bpp_vq_layers"] > 0
    for lv in (low, top):
        assert 0 < lv["bpp_vq_layers"] + lv["bpp_refinement_layers"] < lv["bpp"]  # the rest is the header


def test_reproducible_encode_quick(tmp_path):
    """3 Kodak images encoded with 1 thread, 2 threads and in batch mode: identical files (issue 24)."""
    p = _run("reproducible_encode.py", "--quick", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:] + p.stdout[-2000:]
    assert "3 of 3 images identical" in p.stdout


def test_large_image_quick(tmp_path):
    """CLI peak RSS and time, in-process seconds per megapixel and the tiled-against-whole decoder check."""
    p = _run("large_image.py", "--quick", "--out", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:] + p.stdout[-2000:]
    res = json.loads((tmp_path / "large_image.json").read_text())
    assert [(r["width"], r["height"]) for r in res["sizes"]] == [(128, 96), (640, 480)]
    for r in res["sizes"]:
        assert 50 < r["cli_encode"]["peak_rss_mib"] < 4096 and 50 < r["cli_decode"]["peak_rss_mib"] < 4096
        assert r["in_process_encode"]["s_per_mp"] > 0 and r["in_process_decode"]["cpu_s_per_mp"] > 0
        assert r["tiled_vs_whole"]["max_lsb"] <= 1 and r["bpp"] > 0
        assert r["cli_encode"]["load_1min"] >= 0
    assert "| 640x480 |" in (tmp_path / "large_image.md").read_text()


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


def test_speaker_conversion_quick(tmp_path, tiny_audio_weights):
    """The speaker experiment's plumbing (tiny models, a synthetic speaker folder): classifier, conversion
    fractions, content and pitch columns, the chosen stage count."""
    import os
    import shutil

    from vqcodec.testing import write_speaker_folder, write_tiny_speaker_decoder

    speakers = ("11", "22", "33", "44", "55", "66")
    weights = tmp_path / "w"
    weights.mkdir()
    for name in ("audio_vqvae.safetensors", "audio_prior.safetensors"):
        shutil.copy(tiny_audio_weights / name, weights / name)
    write_tiny_speaker_decoder(weights, speakers)
    data = write_speaker_folder(tmp_path / "data", speakers, seconds=3.0)
    env = {**os.environ, "VQCODEC_WEIGHTS_DIR": str(weights)}
    p = subprocess.run([sys.executable, str(BENCH / "speaker_conversion.py"), "--quick", "--data", str(data),
                        "--out", str(tmp_path), "--threads", "1"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "speaker_conversion.json").read_text())
    assert res["speakers_in_data"] == 6 and set(res["per_stage"]) == {"1", "2"}
    assert 0 <= res["classifier"]["accuracy_original"] <= 1
    for r in res["per_stage"].values():
        c = r["converted"]
        assert c["pairs"] == 8 and abs(c["target"] + c["source"] + c["other"] - 1) < 1e-9
        assert r["content"]["mel_to_source_own_voice"] >= 0
    assert res["best_stages"] in (1, 2)
    assert "can and cannot show" in (tmp_path / "speaker_conversion.md").read_text()


def test_calibrate_quality_quick(tmp_path):
    """The quality scale's calibration on the training photos (skipped where they are not beside the clone)."""
    import pytest

    photos = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
    if not photos.is_dir():
        pytest.skip(f"training photos not found at {photos}")
    p = _run("calibrate_quality.py", "--data", str(photos), "--quick", "--out", str(tmp_path), "--threads", "1",
             cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "quality_calibration.json").read_text())
    bpp = [m["bpp"] for m in res["mean"]]
    assert bpp[-1] > bpp[0] > 0  # lambda 0 (every block at full depth) costs the most
    assert res["found"]["LAMBDA_AT_1"] >= res["found"]["LAMBDA_AT_99"]


def test_prior_bytes_quick(tmp_path):
    weights = Path(__file__).resolve().parents[1] / "codec" / "weights"
    p = _run("prior_bytes.py", "--old", str(weights / "image_prior_v3.safetensors"), "--new",
             str(weights / "image_prior.safetensors"), "--quick", "--out", str(tmp_path), "--threads", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "prior_bytes.json").read_text())
    assert res["total"]["old"] > 0 and res["total"]["new"] > 0


def test_spatial_context_probe_quick(tmp_path):
    """Both arms start at the shipped prior (equal bits at step 0), train, and the decode cost is measured."""
    p = _run("spatial_context_probe.py", "--quick", "--out", str(tmp_path), "--threads", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:] + p.stdout[-2000:]
    res = json.loads((tmp_path / "spatial_context_probe_quick.json").read_text())
    first, last = res["curve"][0], res["curve"][-1]
    assert first["checkerboard_vs_control"] == 0.0 and last["step"] == res["steps"] > 0
    assert 0.3 < res["pass_b_share"] < 0.7
    assert len(res["decode_cost"]["features_s_per_stage"]) == 7 and res["decode_cost"]["added_decode_s"] > 0


def test_audio_decoder_pilot_quick(tmp_path, tiny_audio_weights):
    """Two decoders of the same indices scored side by side: the base model's own and a decoder-stage file."""
    import torch

    from vqcodec.audio.harmonic import HarmonicConfig
    from vqcodec.audio.hn_decoder import HNDecoder, HNDecoderConfig
    from vqcodec.audio.model import load_audio_model
    from vqcodec.weights.io import save_weights, weights_hash

    base = tiny_audio_weights / "audio_vqvae.safetensors"
    model, _ = load_audio_model(base)
    torch.manual_seed(0)
    hn = HNDecoder(HNDecoderConfig(model.cfg, HarmonicConfig(max_harmonics=8), env_init=-3.0))
    config = {"decoder": "hn", **hn.hn_cfg.to_dict(), "base_model_id": "tiny", "base_weights_hash": weights_hash(base).hex()}
    save_weights(tmp_path / "hn.safetensors", hn.state_dict(), "audio-decoder-hn-test", config)
    clips = BENCH.parent / "data" / "speech" / "vctk"
    p = _run("audio_decoder_pilot.py", "--quick", "--clips", str(clips), "--base", str(base), "--decoder", "base",
             "--decoder", f"hn={tmp_path / 'hn.safetensors'}", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "pilot.json").read_text())
    assert set(res["decoders"]) == {"base", "hn"} and len(res["clips"]) == 2
    for scores in res["decoders"].values():
        assert 0 <= scores["1"]["stoi"] <= 1 and scores["2"]["mel_distance"] > 0
    assert (tmp_path / "out" / "spectrograms.png").stat().st_size > 10000


def test_quality_scale_quick(tmp_path):
    """The quality-scale measurement on one small photo: rate rises with quality, and a given plan is honoured."""
    photos = tmp_path / "photos"
    photos.mkdir()
    kodak = Path(__file__).resolve().parents[1] / "data" / "kodak" / "kodim23.png"
    Image.open(kodak).convert("RGB").crop((300, 200, 428, 296)).save(photos / "a.png")
    p = _run("quality_scale.py", "--data", str(photos), "--quick", "--out", str(tmp_path / "q"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:] + p.stdout[-2000:]
    rows = json.loads((tmp_path / "q" / "quality_scale.json").read_text())["rows"]
    assert [r["point"] for r in rows] == [1, 50, 100]
    assert rows[0]["bpp"] < rows[1]["bpp"] < rows[2]["bpp"] and rows[0]["psnr"] < rows[2]["psnr"]
    p = _run("quality_scale.py", "--data", str(photos), "--quick", "--plans", "1:0,2:0", "--out", str(tmp_path / "p"),
             cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:] + p.stdout[-2000:]
    rows = json.loads((tmp_path / "p" / "quality_scale.json").read_text())["rows"]
    assert rows[0]["point"] == [1, 0.0] and rows[0]["bpp"] < rows[1]["bpp"]


def test_conversion_listening_quick(tmp_path, tiny_audio_weights):
    """The conversion listening page (issue 23) with a tiny conversion model on a synthetic speechocean762-like
    folder and an LJSpeech-like one: every kind of row, WAVs as long as their sources, a page linking them all."""
    import csv
    import os
    import shutil
    from html.parser import HTMLParser

    import pytest
    import soundfile as sf

    from vqcodec.testing import speechlike, write_tiny_conversion_model

    pytest.importorskip("pyworld")  # conversion tracks the source's pitch
    weights = tmp_path / "w"
    weights.mkdir()
    for name in ("audio_vqvae.safetensors", "audio_prior.safetensors"):
        shutil.copy(tiny_audio_weights / name, weights / name)
    write_tiny_conversion_model(weights, ("tr_f1", "tr_m1", "tr_f2"))
    corpus = tmp_path / "data" / "speechocean762"
    rows = []
    for k, (spk, g) in enumerate({"tr_f1": "f", "tr_f2": "f", "tr_m1": "m", "new_f": "f", "new_m": "m"}.items()):
        (corpus / spk).mkdir(parents=True)
        for u in range(3):
            sf.write(corpus / spk / f"{spk}_{u}.flac", speechlike(0.8 + 0.2 * u, seed=10 * k + u)[:, 0], 16000)
            rows.append((f"{spk}/{spk}_{u}.flac", spk, g))
    with (corpus / "MANIFEST.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "speaker", "gender"])
        w.writerows(rows)
    lj = tmp_path / "data" / "ljspeech"
    lj.mkdir()
    for i in range(2):
        sf.write(lj / f"LJ900-000{i}.wav", speechlike(1.1, 22050, seed=100 + i)[:, 0], 22050)
    (lj / "metadata.csv").write_text("LJ900-0000|Hello, world!|Hello, world!\nLJ900-0001|Once more.|Once more.\n")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("VQCODEC_WEIGHTS_DIR", None)
    p = subprocess.run([sys.executable, str(BENCH / "conversion_listening.py"), "--weights", str(weights), "--data",
                        str(tmp_path / "data"), "--exclude-speakers", "new_f,new_m", "--quick", "--rows", "3",
                        "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == str(out)
    res = json.loads((out / "listening.json").read_text())
    assert res["model"]["id"] == "tiny-conversion" and len(res["model"]["weights_hash"]) == 32
    assert [r["kind"] for r in res["rows"]] == ["by_id", "by_reference", "native_english"]
    assert res["rows"][2]["transcript"] in ("Hello, world!", "Once more.")

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.src = set()

        def handle_starttag(self, tag, attrs):
            self.src |= {v for k, v in attrs if k in ("src", "href") and v}

    page = (out / "index.html").read_text()
    links = Links()
    links.feed(page)
    media = {f"media/{f.name}" for f in (out / "media").iterdir()}
    assert media and media <= links.src and all((out / s).is_file() for s in links.src)
    assert "No listening test was run" in page and res["model"]["weights_hash"] in page
    for r in res["rows"]:
        src, conv = sf.info(str(out / r["source"]["wav"])), sf.info(str(out / r["converted"]["wav"]))
        assert (conv.frames, conv.samplerate) == (src.frames, src.samplerate) and conv.subtype == "PCM_16"
        assert sf.info(str(out / r["reference"]["wav"])).frames > 0
        assert r["source"]["median_f0_hz"] > 0
    assert res["rows"][2]["source"]["rate"] == 22050 and res["rows"][1]["reference"]["given_to_model"]
