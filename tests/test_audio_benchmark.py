"""The speech rate-distortion benchmark (benchmarks/audio_rate_distortion.py): its --quick run on the bundled
clips with the tiny audio model, rates computed from the real coded files, the issue's targets computed
from the measured numbers, and a one-line error when no audio model is installed.

Opus and Codec2 are optional here: their checks run only when opusenc/opusdec and c2enc/c2dec are on PATH."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "audio_rate_distortion.py"
BUNDLED = ("librispeech-test-other", "vctk", "ljspeech")
HAVE_OPUS = all(shutil.which(t) for t in ("opusenc", "opusdec"))
HAVE_CODEC2 = all(shutil.which(t) for t in ("c2enc", "c2dec"))


def _bench_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import audio_rate_distortion
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return audio_rate_distortion


def _run(weights: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VQCODEC_WEIGHTS_DIR": str(weights)}
    return subprocess.run([sys.executable, str(BENCH), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def quick(tiny_all_weights, tmp_path_factory):
    """(JSON document, output folder, kept coded files folder) of one --quick run with the tiny models."""
    out = tmp_path_factory.mktemp("audio_rd_quick")
    p = _run(tiny_all_weights, "--quick", "--out", str(out), "--keep-files", str(out / "coded"), "--threads", "1",
             cwd=out)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads((out / "audio_rd.json").read_text()), out, out / "coded"


def _tiny_max_quality(weights: Path) -> int:
    from vqcodec.audio.codec import AudioCodec

    return AudioCodec(weights / "audio_vqvae.safetensors", weights / "audio_prior.safetensors").max_quality


def _shortest_clip(folder: Path) -> str:
    files = [p for p in folder.rglob("*") if p.suffix in (".wav", ".flac")]
    return min(files, key=lambda p: (sf.info(str(p)).duration, str(p))).name


def test_quick_run_outputs_and_structure(quick, tiny_all_weights):
    doc, out, _ = quick
    for name in ("audio_rd.json", "audio_rd.md", "audio_rd.png"):
        assert (out / name).stat().st_size > 0
    assert doc["quick"] is True and doc["threads"] == 1 and doc["machine"]["torch_threads"] == 1
    assert "--quick" in doc["command"] and doc["date"] and doc["machine"]["cpu_count"]
    # one (the shortest) bundled clip per set
    assert [d["name"] for d in doc["datasets"]] == list(BUNDLED)
    for d in doc["datasets"]:
        assert d["clips_count"] == 1
        assert d["clips"][0]["file"] == _shortest_clip(ROOT / "data" / "speech" / d["name"])
    ljspeech = next(d for d in doc["datasets"] if d["name"] == "ljspeech")
    assert ljspeech["clips"][0]["sample_rate"] == 22050  # kept at its own rate; the codec resamples it
    # vqcodec at quality 1 and the top quality, in that order
    top = _tiny_max_quality(tiny_all_weights)
    vq = doc["codecs"]["vqcodec"]
    assert [e["setting"] for e in vq["settings"]] == ["1", str(top)]
    expected = {"vqcodec"} | ({"opus"} if HAVE_OPUS else set()) | ({"codec2"} if HAVE_CODEC2 else set())
    assert set(doc["codecs"]) == expected
    assert set(doc["skipped"]) == {"opus", "codec2"} - expected
    for codec in doc["codecs"].values():
        for e in codec["settings"]:
            assert set(e["per_set"]) == set(BUNDLED) and e["clips"] == 3 == len(e["per_clip"])
            assert 0.0 <= e["stoi"] <= 1.0 and e["mel"] >= 0.0
            assert e["pesq_wb"] is None or 1.0 <= e["pesq_wb"] <= 4.7
            assert (e.get("speed") is not None) == codec["in_process"]
    for e in vq["settings"]:
        assert e["speed"]["encode_x_realtime"] > 0 and e["speed"]["decode_x_realtime"] > 0
    assert "| vqcodec | q1 |" in (out / "audio_rd.md").read_text()


def test_aggregates_are_totals_and_means_of_the_clips(quick):
    doc, _, _ = quick
    for codec in doc["codecs"].values():
        for e in codec["settings"]:
            rows = e["per_clip"]
            kbps = sum(r["bytes"] for r in rows) * 8 / sum(r["seconds"] for r in rows) / 1000
            assert e["kbps"] == pytest.approx(kbps, rel=1e-12)
            assert e["stoi"] == pytest.approx(np.mean([r["stoi"] for r in rows]), rel=1e-12)
            for name, s in e["per_set"].items():
                mine = [r for r in rows if r["dataset"] == name]
                assert s["kbps"] == pytest.approx(sum(r["bytes"] for r in mine) * 8
                                                  / sum(r["seconds"] for r in mine) / 1000, rel=1e-12)


def test_kbps_comes_from_the_real_coded_files(quick, tiny_all_weights, monkeypatch):
    import torch

    import vqcodec

    doc, _, coded = quick
    folders = {d["name"]: ROOT / "data" / "speech" / d["name"] for d in doc["datasets"]}
    for codec in doc["codecs"].values():
        for e in codec["settings"]:
            for r in e["per_clip"]:
                path = coded / r["coded_file"]
                assert path.stat().st_size == r["bytes"] > 0
                info = sf.info(str(folders[r["dataset"]] / r["file"]))
                assert r["seconds"] == pytest.approx(info.frames / info.samplerate, rel=1e-12)
                assert r["kbps"] == pytest.approx(r["bytes"] * 8 / r["seconds"] / 1000, rel=1e-12)

    # the .vq sizes are those of vqcodec.encode_audio on the same clip (same thread count as the run)
    monkeypatch.setenv("VQCODEC_WEIGHTS_DIR", str(tiny_all_weights))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for e in doc["codecs"]["vqcodec"]["settings"]:
            for r in e["per_clip"]:
                samples, rate = sf.read(str(folders[r["dataset"]] / r["file"]), dtype="float32")
                data = vqcodec.encode_audio(samples, rate, int(e["setting"]))
                assert len(data) == r["bytes"]
                assert vqcodec.inspect(data).kbps == pytest.approx(r["kbps"], rel=1e-9)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(not HAVE_CODEC2, reason="c2enc/c2dec not installed")
def test_codec2_rate_is_its_frames_on_disk(quick):
    doc, _, coded = quick
    (e,) = doc["codecs"]["codec2"]["settings"]
    assert e["setting"] == "3200"
    for r in e["per_clip"]:
        assert r["bytes"] % 8 == 0  # 3200 bit/s: 64 bits per 20 ms frame
        assert abs(r["kbps"] - 3.2) < 0.05 * 3.2  # loses at most a partial last frame
        assert 0 < r["lag_samples"] <= 0.1 * 16000  # Codec2 delays its output; the alignment found it


@pytest.mark.skipif(not HAVE_OPUS, reason="opusenc/opusdec not installed")
def test_opus_files_are_whole_ogg_streams(quick):
    doc, _, coded = quick
    (e,) = doc["codecs"]["opus"]["settings"]
    assert e["setting"] == "6"
    for r in e["per_clip"]:
        blob = (coded / r["coded_file"]).read_bytes()
        assert blob.startswith(b"OggS") and b"OpusHead" in blob and b"OpusTags" in blob
    assert e["stoi"] > 0.7  # a real codec at 6 kbit/s keeps speech intelligible


def test_targets_in_the_json_are_computed_from_its_numbers(quick):
    doc, _, _ = quick
    reference = json.loads((ROOT / doc["reference"]["path"]).read_text()) if doc.get("reference") else None
    assert doc["targets"] == _bench_module().check_targets(doc["codecs"], doc["original"], reference)
    assert [t["status"] in ("met", "not met", "not measured") for t in doc["targets"]] == [True] * 9


def _entry(setting: str, kbps: float, stoi: float, pesq: float | None) -> dict:
    return {"setting": setting, "label": setting, "kbps": kbps, "stoi": stoi, "pesq_wb": pesq}


def _codecs(vq=(), opus=(), codec2=()) -> dict:
    out = {}
    for key, entries in (("vqcodec", vq), ("opus", opus), ("codec2", codec2)):
        if entries:
            out[key] = {"settings": list(entries)}
    return out


def test_target_checks_follow_the_numbers():
    m = _bench_module()
    c2 = [_entry("3200", 3.19, 0.86, 1.51)]
    opus = [_entry("8", 9.9, 0.94, 2.44), _entry("6", 8.1, 0.89, 1.95)]
    good = [_entry("1", 1.4, 0.81, 1.3), _entry("2", 2.9, 0.87, 1.6), _entry("5", 7.9, 0.95, 2.0)]

    statuses = [t["status"] for t in m.check_targets(_codecs(good, opus, c2))]
    assert statuses[:3] == ["met", "met", "met"]
    # issue 21's: no DNSMOS, f0 or reference run here; PESQ-WB 1.6 at <= 3 kbps and 2.0 at the top
    assert statuses[3:] == ["not measured"] * 3 + ["not met", "not met", "not measured"]
    # target 1: rate and STOI of quality 1
    assert m.target_lowest_quality(_codecs([_entry("1", 1.6, 0.9, 2.0)]))["status"] == "not met"
    assert m.target_lowest_quality(_codecs([_entry("1", 1.4, 0.79, 2.0)]))["status"] == "not met"
    assert m.target_lowest_quality(_codecs([_entry("2", 1.4, 0.9, 2.0)]))["status"] == "not measured"
    # target 2: STOI and PESQ both above Codec2 3200's, at <= 3 kbps
    assert m.target_low_rate(_codecs(good, codec2=[_entry("3200", 3.19, 0.86, 1.65)]))["status"] == "not met"
    assert m.target_low_rate(_codecs(good, codec2=[_entry("3200", 3.19, 0.88, 1.5)]))["status"] == "not met"
    assert m.target_low_rate(_codecs([_entry("2", 3.1, 0.95, 3.0)], codec2=c2))["status"] == "not met"
    assert m.target_low_rate(_codecs([_entry("2", 2.9, 0.84, 3.0)], codec2=c2))["status"] == "not met"
    assert m.target_low_rate(_codecs(good))["status"] == "not measured"
    # target 3: against Opus's lowest real rate (8.1 kbps here, not the nominal 6)
    assert m.target_opus(_codecs([_entry("5", 7.9, 0.95, 1.94)], opus))["status"] == "not met"
    assert m.target_opus(_codecs([_entry("5", 8.2, 0.95, 3.0)], opus))["status"] == "not met"
    assert m.target_opus(_codecs([_entry("5", 8.1, 0.95, 1.95)], opus))["status"] == "met"
    assert m.target_opus(_codecs([_entry("5", 7.9, 0.95, None)], opus))["status"] == "not met"
    assert m.target_opus(_codecs(good))["status"] == "not measured"


def test_missing_baseline_tools_are_skipped_with_a_reason(monkeypatch, tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import audio_codecs
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no opusenc, no c2enc
    found, skipped = audio_codecs.baseline_codecs()
    assert found == [] and set(skipped) == {"opus", "codec2"}
    assert "opusenc" in skipped["opus"] and "c2enc" in skipped["codec2"]


def test_no_audio_model_is_a_one_line_error(tiny_weights, tmp_path):
    p = _run(tiny_weights, "--quick", "--out", str(tmp_path / "out"), cwd=tmp_path)  # image weights only
    assert p.returncode == 1
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in p.stderr
    assert len(lines) == 1 and lines[0].startswith("audio_rate_distortion.py: error:"), p.stderr
    assert "audio model" in lines[0]
    assert not (tmp_path / "out" / "audio_rd.json").exists()


def test_pesq_nan_is_left_out_of_the_mean():
    m = _bench_module()
    rows = [{"bytes": 100, "seconds": 1.0, "stoi": 0.5, "pesq_wb": None, "mel": 1.0, "encode_s": 0.1,
             "decode_s": 0.1},
            {"bytes": 300, "seconds": 3.0, "stoi": 0.7, "pesq_wb": 2.0, "mel": 2.0, "encode_s": 0.1,
             "decode_s": 0.3}]
    s = m.summarise(rows, with_speed=True)
    assert s["kbps"] == pytest.approx(0.8) and s["pesq_wb"] == 2.0 and s["pesq_wb_missing"] == 1
    assert s["stoi"] == pytest.approx(0.6) and s["speed"]["decode_x_realtime"] == pytest.approx(10.0)
    assert not math.isnan(s["mel"])


def _scored(setting: str, kbps: float, **metrics) -> dict:
    return {"setting": setting, "label": f"q{setting}", "kbps": kbps, **metrics}


def test_naturalness_targets_follow_the_numbers():
    """Issue 21's targets: DNSMOS against Codec2 3200 and the originals, voicing at q6, PESQ-WB, STOI kept."""
    m = _bench_module()
    c2 = [_scored("3200", 3.19, dnsmos_ovrl=2.78, stoi=0.86, pesq_wb=1.5)]
    vq = [_scored("3", 1.4, dnsmos_ovrl=2.80, stoi=0.85, pesq_wb=1.7),
          _scored("6", 2.8, dnsmos_ovrl=2.70, stoi=0.88, pesq_wb=2.05, f0_cents=20.0, vuv_f1=0.91),
          _scored("16", 7.3, dnsmos_ovrl=2.86, stoi=0.90, pesq_wb=2.5)]
    codecs = _codecs(vq, codec2=c2)
    assert m.target_natural_low_rate(codecs)["status"] == "met"
    assert m.target_natural_low_rate(_codecs(vq[1:], codec2=c2))["status"] == "not met"  # 2.70 < 2.78
    assert m.target_natural_low_rate(_codecs(vq))["status"] == "not measured"
    assert m.target_natural_top(codecs, {"dnsmos_ovrl": 3.02})["status"] == "met"  # 2.86 >= 2.82
    assert m.target_natural_top(codecs, {"dnsmos_ovrl": 3.10})["status"] == "not met"
    assert m.target_voicing(codecs)["status"] == "met"
    assert m.target_voicing(_codecs([{**vq[1], "vuv_f1": 0.89}]))["status"] == "not met"
    assert m.target_voicing(_codecs([{**vq[1], "f0_cents": 51.0}]))["status"] == "not met"
    assert [t["status"] for t in m.target_pesq(codecs)] == ["met", "not met"]  # 2.05 at 2.8 kbps; 2.5 at the top
    ref = {"codecs": _codecs([_scored("3", 1.4, stoi=0.84), _scored("6", 2.8, stoi=0.87),
                              _scored("16", 7.3, stoi=0.911)])}
    kept = m.target_stoi_kept(codecs, ref)
    assert kept["status"] == "not met" and "q16 0.900 against 0.911" in kept["detail"]
    ref["codecs"]["vqcodec"]["settings"][2]["stoi"] = 0.91
    assert m.target_stoi_kept(codecs, ref)["status"] == "met"
    assert m.target_stoi_kept(codecs, None)["status"] == "not measured"
