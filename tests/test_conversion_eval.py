"""benchmarks/conversion_eval.py (issue 23) on a tiny conversion model trained for 2 steps on a synthetic corpus:
a --quick smoke run in a subprocess with the external scorers left out (CI installs neither Resemblyzer nor
pocketsphinx), the whole evaluation in-process with fake scorers, and the pieces (pair selection, WER, goals)."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vqcodec.testing import speechlike

pytest.importorskip("pyworld")  # the pitch labels the model is driven by

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
try:
    import conversion_eval as ce
finally:
    sys.path.pop(0)

TINY = dict(hop=80, content_stride=2, latent_dim=8, num_codes=16, width=32, mlp_ratio=2.0, kernel=3, enc_blocks=1,
            dec_blocks=1, ref_blocks=1, enc_stft_hop=40, enc_n_fft=80, istft_hop=40, istft_n_fft=80, speaker_dim=8,
            ref_n_fft=256, ref_hop=64, ref_n_mels=16, harmonic={"max_harmonics": 8})
SPEAKERS = {"tr_f1": "f", "tr_f2": "f", "tr_m1": "m", "tr_m2": "m", "new_f": "f", "new_m": "m"}
HELD_OUT = ("new_f", "new_m")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A corpus folder (MANIFEST.csv with genders), a speakers CSV, a transcribed clip folder, a 2-step model."""
    from vqcodec.training.conversion import EXPORT_NAME, TrainConversionConfig, train_conversion

    root = tmp_path_factory.mktemp("conv_eval")
    data = root / "data"
    corpus = data / "corpus"
    rows = []
    for k, (spk, g) in enumerate(SPEAKERS.items()):
        (corpus / spk).mkdir(parents=True)
        for u in range(3):
            sf.write(corpus / spk / f"{spk}_{u}.wav", speechlike(0.8 + 0.1 * u, 16000, 1, seed=10 * k + u), 16000)
            rows.append((f"{spk}/{spk}_{u}.wav", spk, g))
    with (corpus / "MANIFEST.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "speaker", "gender"])
        w.writerows(rows)
    with (data / "speakers.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "speaker"])
        w.writerows((f"corpus/{p}", s) for p, s, _ in rows)
    lj = data / "lj"
    lj.mkdir()
    lines = []
    for i in range(3):
        sf.write(lj / f"LJ900-000{i}.wav", speechlike(0.7, 22050, 1, seed=100 + i)[:, 0], 22050)
        lines.append(f"LJ900-000{i}|Hello, world {i}!|Hello, world number {i}!")
    (lj / "metadata.csv").write_text("\n".join(lines) + "\n")
    out = root / "run"
    train_conversion(TrainConversionConfig(
        data=str(data), speakers_csv=str(data / "speakers.csv"), exclude_speakers=HELD_OUT, out=str(out), steps=2,
        batch_size=2, crop_frames=20, lr=1e-3, warmup_steps=1, holdout_per_speaker=1, ref_seconds=0.5,
        val_seconds=0.5, val_utterances=2, table_seconds=0.5, log_every=1, val_every=2, threads=1, progress=False,
        bf16=False, model=TINY, loss={"resolutions": [[128, 32, 16], [256, 64, 32], [512, 128, 64]]}))
    return {"root": root, "data": data, "model": out / EXPORT_NAME}


def _argv(setup, out: Path, *extra: str) -> list[str]:
    d = setup["data"]
    return ["--model", str(setup["model"]), "--data", str(d), "--manifest", str(d / "corpus" / "MANIFEST.csv"),
            "--speakers-csv", str(d / "speakers.csv"), "--exclude-speakers", ",".join(HELD_OUT),
            "--holdout-per-speaker", "1", "--wer-data", str(d / "lj"), "--out", str(out), "--quick", *extra]


def test_quick_smoke_run_without_the_scorers(setup, tmp_path):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, str(BENCH / "conversion_eval.py"),
                        *_argv(setup, out, "--skip", "similarity,wer,dnsmos")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    md = out / "conversion_eval.md"
    assert str(md) in p.stdout and "conversion_eval:" in p.stdout
    res = json.loads((out / "conversion_eval.json").read_text())
    assert res["split"]["source_speakers"] == 4 and res["split"]["new_speakers"] == 2
    for task in ("by_id", "by_reference"):
        pairs = res[task]["pairs"]
        assert len(pairs) == 4 and sum(x["same_gender"] for x in pairs) == 2
        for x in pairs:
            assert x["source_speaker"] not in HELD_OUT and x["target"] != x["source_speaker"]
            assert (x["target"] in HELD_OUT) == (task == "by_reference")
            assert "success" not in x["model"] and "f0_closer_to_target" in x["baseline"]
    refs = res["references"]
    assert set(refs) == set(HELD_OUT)
    for x in res["by_reference"]["pairs"]:
        assert x["reference"] == refs[x["target"]]["file"]
    assert len(res["wer"]["clips"]) == 2 and "wer_original" not in res["wer"]
    assert all(g["met"] is None for g in res["goals"])  # nothing measurable without the scorers
    assert set(res["skipped"]) == {"similarity", "wer", "dnsmos"}
    text = md.read_text()
    assert "not measured" in text and "--skip" in text


def _fake_tools() -> "ce.Tools":
    def embed(x):  # log energy in 16 bands: a stand-in for a speaker embedding
        power = np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64))) ** 2
        return np.log(np.array([b.sum() for b in np.array_split(power, 16)]) + 1e-9)

    return ce.Tools(embed=embed, transcribe=lambda x: "HELLO WORLD", dnsmos=lambda x: 3.0 - float(np.abs(x).mean()))


def test_whole_evaluation_with_fake_scorers(setup, tmp_path):
    args = ce.parse_args(_argv(setup, tmp_path))
    res = ce.run(args, tools=_fake_tools())
    for task in ("by_id", "by_reference"):
        s = res[task]["summary"]
        assert s["pairs"] == 4 and s["same_gender_pairs"] == 2
        for system in ("model", "baseline", "unconverted"):
            for v in s[system]["success"].values():
                assert v is not None and 0.0 <= v <= 1.0
        assert -1.0 <= s["model"]["cos_target"] <= 1.0 and s["model"]["dnsmos"] is not None
        assert s["candidates"] == len(SPEAKERS) and 1 <= s["model"]["median_target_rank"] <= len(SPEAKERS)
    w = res["wer"]
    assert len(w["clips"]) == 2 and len(w["targets"]) == 2 and w["wer_original"] == pytest.approx(1 / 3)
    assert w["increase_points"] == pytest.approx(0.0)  # the fake recogniser says the same for everything
    assert w["wer_own_voice"] == pytest.approx(1 / 3)  # each clip in its corpus's voice, given by the other clip
    assert [c["own_voice"]["reference"] for c in w["clips"]] == [w["clips"][1]["clip"], w["clips"][0]["clip"]]
    assert res["goals"][4]["met"] is True and all(g["met"] is not None for g in res["goals"])
    assert res["naturalness"]["all"]["difference"] is not None
    json.dumps(res, default=str)
    text = ce.markdown(res)
    assert "| by id | model | 4 (2 same) |" in text and "f0 closer" in text and "top-1" in text
    assert "in their own voice" in text
    assert ce.summary_line(res).startswith("conversion_eval: by id ")


def test_wer_pools_every_training_voice_by_default(setup, tmp_path):
    """Without --quick or --wer-targets every training speaker of the manifest is a WER target (F/M interleaved),
    and each gets its own WER; --wer-targets N keeps the first N."""
    argv = [a for a in _argv(setup, tmp_path) if a != "--quick"] + ["--pairs", "2", "--wer-clips", "2",
                                                                     "--speaker-utts", "2"]
    args = ce.parse_args(argv)
    assert args.wer_targets == 0
    tools = _fake_tools()
    res = ce.run(args, tools=tools)
    w = res["wer"]
    assert sorted(w["targets"]) == ["tr_f1", "tr_f2", "tr_m1", "tr_m2"]
    assert [SPEAKERS[t] for t in w["targets"]] == ["f", "m", "f", "m"]
    assert set(w["per_target"]) == set(w["targets"])
    assert all(v["gender"] == SPEAKERS[t] and v["wer"] == pytest.approx(1 / 3) for t, v in w["per_target"].items())
    assert w["wer_converted"] == pytest.approx(1 / 3)
    assert "per target voice" in ce.markdown(res)
    two = ce.parse_args(argv + ["--wer-targets", "2"])
    res2 = ce.run(two, tools=tools)
    assert res2["wer"]["targets"] == w["targets"][:2]


def test_pair_selection_is_balanced_seeded_and_never_self():
    genders = {"a": "f", "b": "f", "c": "m", "d": "m", "x": "f", "y": "m"}
    sources = {s: [Path(f"{s}/{i}.wav") for i in range(2)] for s in "abcd"}
    pairs = ce.select_pairs(sources, list("abcd"), genders, 10, seed=3, salt="t")
    assert len(pairs) == 10 and [p["same_gender"] for p in pairs] == [True, False] * 5
    assert all(p["target"] != p["source_speaker"] for p in pairs)
    assert all((genders[p["target"]] == genders[p["source_speaker"]]) == p["same_gender"] for p in pairs)
    assert len({p["source"] for p in pairs[:8]}) == 8  # every source utterance once before any repeats
    assert pairs == ce.select_pairs(sources, list("abcd"), genders, 10, seed=3, salt="t")
    assert pairs != ce.select_pairs(sources, list("abcd"), genders, 10, seed=4, salt="t")
    new = ce.select_pairs(sources, ["x", "y"], genders, 6, seed=0, salt="r")
    assert {p["target"] for p in new} == {"x", "y"} and sum(p["same_gender"] for p in new) == 3
    only_f = ce.select_pairs(sources, ["x"], genders, 4, seed=0, salt="r")  # no male target: all fall back to "x"
    assert len(only_f) == 4 and all(p["target"] == "x" for p in only_f)


def test_similarity_success_and_rank():
    raw = {"t": [1, 0, 0], "s": [0, 1, 0], "o": [0.9, 0.2, 0.5]}
    means = {s: ce.unit(np.array(v, dtype=float)) for s, v in raw.items()}
    r = ce.similarity(np.array([0.8, 0.1, 0.9]), means, "t", "s")  # closer to t than to s, but closest to o
    assert r["success"] and r["target_rank"] == 2 and not r["top1"]
    r = ce.similarity(np.array([1.0, 0.2, 0.0]), means, "t", "s")
    assert r["success"] and r["top1"] and r["cos_target"] > r["cos_source"]


def test_text_normalisation_and_word_errors():
    assert ce.normalise_text("  Don't stop -- 3 times, O'Brien!") == "DON'T STOP TIMES O'BRIEN"
    assert ce.word_errors("the cat sat", "the cat sat") == (0, 3)
    assert ce.word_errors("the cat sat", "the bat sat on") == (2, 3)
    assert ce.word_errors("a b c", "") == (3, 3)


def test_missing_scorers_are_skipped_with_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "resemblyzer", None)
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    tools = ce.load_tools(skip=("dnsmos",))
    assert tools.embed is None and tools.transcribe is None and tools.dnsmos is None
    assert "pip install resemblyzer" in tools.notes["similarity"] and "pocketsphinx" in tools.notes["wer"]
    assert "--skip" in tools.notes["dnsmos"]
