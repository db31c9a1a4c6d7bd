#!/usr/bin/env python
"""Speech rate-distortion benchmark: vqcodec against Opus and Codec2, with the audio targets of issues 11 and 21.

    python benchmarks/audio_rate_distortion.py                      # bundled clips, benchmarks/results/audio/
    python benchmarks/audio_rate_distortion.py --quick              # CI smoke run (temporary folder)
    python benchmarks/audio_rate_distortion.py --codecs opus,codec2 # the baselines alone
    python benchmarks/audio_rate_distortion.py --decoder model  # vqcodec's files with another decoder (or an id, a FILE)
    python benchmarks/audio_rate_distortion.py --dataset DIR [--dataset DIR ...] --out DIR
    python benchmarks/audio_rate_distortion.py --skip-metrics visqol,f0  # leave slow or missing metrics out

Data: by default the three bundled sets data/speech/{librispeech-test-other,vctk,ljspeech} (four clips
each); `--dataset DIR` (repeatable) replaces them, e.g. with the full sets in ../shared/data/speech/<set>.
Every audio file under a folder (recursively) is a clip; multi-channel files are averaged to mono.

What is measured, per codec and setting (vqcodec: every quality 1..vqcodec.max_quality("audio"), or
`--qualities`; Opus: --bitrate 6, 8, 12; Codec2: 700C, 1200, 1600, 2400, 3200; see audio_codecs.py):
  * kbps from the real bytes: size of the coded file (.vq; .opus with its Ogg pages and tags; Codec2's
    headerless bit file) x 8 / the clip's duration. Aggregated as total bytes x 8 / total seconds, over
    all sets together and per set.
  * STOI (pystoi), PESQ-WB (pesq, P.862.2) and log-mel distance (vqcodec.metrics.audio), each at 16 kHz
    mono against the original resampled to 16 kHz (soxr), after aligning the output to it (delay searched
    within --max-lag); averaged over clips (together and per set). A clip where PESQ finds no utterance is
    left out of the PESQ mean and counted.
  * Perceptual and pitch metrics (issue 21; benchmarks/speech_metrics.py, `pip install -e ".[speech-bench]"`),
    on the same aligned 16 kHz signals, averaged over clips: DNSMOS P.835 overall / signal / background
    (`speechmos`' bundled ONNX models, non-intrusive: the uncoded original is scored too), ViSQOL v3
    speech mode (`visqol-python`; the deep-lattice MOS mapping, the C++ default, when `ai-edge-litert` is
    installed, and the polynomial mapping), the median f0 error in cents over the 10 ms frames voiced in
    both the original and the output, and the F1 of the output's voiced/unvoiced decisions against the
    original's (`pyworld`'s Harvest, or DIO + StoneMask with --f0-method dio). The f0 figure of a set is
    the mean of its clips' medians. A metric whose package is missing is skipped with a note.
  * vqcodec's encode and decode speed as multiples of real time: total audio seconds / total wall seconds
    of `vqcodec.encode_audio` and of `vqcodec.decode`, in process with the model loaded, torch threads
    = --threads (default 2), after one untimed warm-up encode + decode. Baselines run as subprocesses;
    their times are recorded per clip but not reported as speed.

Outputs in --out: audio_rd.json (everything, per clip too), audio_rd.md (tables), audio_rd.png (STOI,
PESQ-WB, DNSMOS OVRL and ViSQOL against kbps), audio_spectrograms.png (log-magnitude spectrograms, 0-8 kHz,
of the loudest 2 s of one clip, --spectrogram-clip: the original, Codec2 1200 and 3200 and Opus 6, each beside vqcodec at the
quality nearest its rate); the paths are printed on stdout, then the issues' targets, each met / not met /
not measured, computed from the measured numbers (issue 21's STOI target against the vqcodec STOI per quality
of --reference, an earlier run's audio_rd.json: by default 0.4.1's, benchmarks/results/audio/rd_0.4.1/).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # sibling helper modules, also when imported rather than run
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from audio_codecs import (  # noqa: E402
    BASELINE_KEYS,
    EVAL_RATE,
    AudioCodec,
    Clip,
    VqAudioCodec,
    baseline_codecs,
    load_vqcodec_audio,
    to_rate,
)
from speech_figures import loudest_window, spectrogram_grid  # noqa: E402
from speech_metrics import FIELDS, METRICS, SpeechScorer, shift  # noqa: E402

PROG = "audio_rate_distortion.py"
log = logging.getLogger("audio_rate_distortion")

REPO = HERE.parent
DEFAULT_DATASETS = tuple(REPO / "data" / "speech" / s for s in ("librispeech-test-other", "vctk", "ljspeech"))
DEFAULT_OUT = HERE / "results" / "audio"
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff"}
CODEC_KEYS = ("vqcodec", *BASELINE_KEYS)
DEFAULT_THREADS = 2
DEFAULT_MAX_LAG_S = 0.1
LOG_TICKS = (0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)  # kbps labels on the plot's log axis

# Issue 11's targets (definitions, not measurements).
Q1_MAX_KBPS, Q1_MIN_STOI = 1.5, 0.80
LOW_MAX_KBPS, LOW_MIN_STOI = 3.0, 0.85
CODEC2_ANCHOR = "3200"
# Issue 21's targets (naturalness; the STOI reference is an earlier run's JSON, --reference).
NATURAL_TOP_GAP = 0.2  # DNSMOS overall below the uncoded originals' at the top quality
VOICING_QUALITY, MAX_F0_CENTS, MIN_VUV_F1 = 6, 50.0, 0.9
PESQ_LOW, PESQ_TOP = 2.0, 2.6
STOI_DROP = 0.01
DEFAULT_REFERENCE = HERE / "results" / "audio" / "rd_0.4.1" / "audio_rd.json"  # 0.4.1's run of this benchmark

# The spectrogram figure: this clip when the run has it (a low male voice: where missing harmonics show most),
# else the first clip of the first set; the baseline settings shown, each beside vqcodec at the nearest rate.
DEFAULT_SPECTROGRAM_CLIP = "vctk/p226_011.wav"
FIGURE_SETTINGS = {"codec2": ("1200", "3200"), "opus": ("6",)}
FIGURE_SECONDS = 2.0  # the loudest 2 s of the clip: short enough that the harmonics of a low voice stay apart
# Per-clip fields averaged into each aggregate (None values left out; counts of missing PESQ kept apart).
MEAN_FIELDS = ("stoi", "pesq_wb", "mel", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "visqol",
               "visqol_poly", "f0_cents", "vuv_f1")


# ------------------------------------------------------------------------------------------------ data
def dataset_files(folder: Path) -> list[Path]:
    """Audio files under `folder` (recursively), sorted by relative path."""
    if not folder.is_dir():
        raise SystemExit(f"{PROG}: error: dataset folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise SystemExit(f"{PROG}: error: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) under {folder}")
    return files


def shortest(files: Sequence[Path]) -> Path:
    """The file with the fewest seconds (ties: first by name)."""
    return min(files, key=lambda p: (sf.info(str(p)).duration, str(p)))


def load_clip(path: Path, folder: Path, dataset: str) -> Clip:
    """Read `path` as float32 mono (channels averaged) and make its 16 kHz reference."""
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if samples.shape[0] == 0:
        raise SystemExit(f"{PROG}: error: {path} holds no samples")
    if samples.shape[1] > 1:
        log.info("%s: %d channels averaged to mono", path.name, samples.shape[1])
    mono = samples.mean(axis=1).astype(np.float32)
    return Clip(dataset, str(path.relative_to(folder)), mono, int(rate), to_rate(mono, int(rate), EVAL_RATE))


def dataset_names(folders: Sequence[Path]) -> list[str]:
    """Folder names, made unique with a numeric suffix where two folders share a name."""
    names: list[str] = []
    for f in folders:
        name, k = f.name, 2
        while name in names:
            name, k = f"{f.name}-{k}", k + 1
        names.append(name)
    return names


def load_datasets(folders: Sequence[Path], quick: bool) -> dict[str, list[Clip]]:
    """{set name: clips}; with `quick`, only the shortest clip of each set."""
    sets: dict[str, list[Clip]] = {}
    for folder, name in zip(folders, dataset_names(folders)):
        files = dataset_files(folder)
        if quick:
            files = [shortest(files)]
        sets[name] = [load_clip(p, folder, name) for p in files]
    return sets


# ------------------------------------------------------------------------------------------------ codecs
def parse_qualities(spec: str, top: int, parser: argparse.ArgumentParser) -> tuple[int, ...]:
    """"1,3,8" or "1-4,8" -> sorted unique qualities, each in 1..top."""
    out: set[int] = set()
    try:
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            lo, _, hi = part.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        parser.error(f"--qualities {spec!r}: expected a comma list of integers or ranges such as 1-4")
    bad = sorted(q for q in out if not 1 <= q <= top)
    if bad or not out:
        parser.error(f"--qualities {spec!r}: qualities must lie in 1..{top} (the audio model's max_quality)")
    return tuple(sorted(out))


def select_codecs(args: argparse.Namespace, parser: argparse.ArgumentParser
                  ) -> tuple[list[AudioCodec], dict[str, tuple[str, ...]], dict[str, str]]:
    """-> (codecs to run, {key: settings to run}, {baseline key: why skipped})."""
    keys = list(dict.fromkeys(k.strip().lower() for k in args.codecs.split(",") if k.strip()))
    unknown = [k for k in keys if k not in CODEC_KEYS]
    if unknown or not keys:
        parser.error(f"--codecs: unknown or no codec ({', '.join(unknown)}); choose from {', '.join(CODEC_KEYS)}")
    codecs: list[AudioCodec] = []
    settings: dict[str, tuple[str, ...]] = {}
    if "vqcodec" in keys:
        loaded = load_vqcodec_audio()
        if isinstance(loaded, str):
            raise SystemExit(f"{PROG}: error: cannot measure vqcodec: {loaded} "
                             f"(--codecs {','.join(BASELINE_KEYS)} measures the baselines alone)")
        api, top = loaded
        full = tuple(range(1, top + 1))
        quick = tuple(sorted({1, top}))
        chosen = parse_qualities(args.qualities, top, parser) if args.qualities else (quick if args.quick else full)
        vq = VqAudioCodec(api, tuple(map(str, full)), tuple(map(str, quick)),
                          decoder=str(args.decoder) if args.decoder else None)
        codecs.append(vq)
        settings[vq.key] = tuple(map(str, chosen))
    elif args.qualities:
        parser.error("--qualities applies to vqcodec, which --codecs leaves out")
    baselines, skipped = baseline_codecs([k for k in keys if k in BASELINE_KEYS])
    for key, why in skipped.items():
        print(f"note: skipping {key}: {why}", file=sys.stderr)
    for b in baselines:
        codecs.append(b)
        settings[b.key] = b.quick_settings if args.quick else b.settings
    if not codecs:
        raise SystemExit(f"{PROG}: error: nothing to measure: every codec named in --codecs was skipped")
    return codecs, settings, skipped


def setting_label(codec: AudioCodec, setting: str) -> str:
    """How a setting is shown: "q3", "--bitrate 6", "3200"."""
    return {"vqcodec": f"q{setting}", "opus": f"--bitrate {setting}"}.get(codec.key, setting)


# ------------------------------------------------------------------------------------------------ measuring
def clip_key(clip: Clip) -> str:
    """"set/file": how a clip is named on the command line and in the figure."""
    return f"{clip.dataset}/{clip.name}"


def measure_clip(codec: AudioCodec, setting: str, clip: Clip, coded_path: Path, workdir: Path,
                 max_lag_s: float, scorer: SpeechScorer | None = None,
                 keep: dict[tuple[str, str], np.ndarray] | None = None) -> dict[str, Any]:
    """Code one clip at one setting and score it: the per-clip record. `scorer` adds the perceptual and
    pitch fields (None where a metric does not run); `keep`, if given, receives the aligned 16 kHz output
    under (codec key, setting)."""
    from vqcodec.metrics.audio import score

    coded_path.parent.mkdir(parents=True, exist_ok=True)
    coded = codec.code(clip, setting, coded_path, workdir)
    s = score(clip.reference, coded.decoded, EVAL_RATE, max_lag_s=max_lag_s)
    extra = (scorer.score(clip_key(clip), clip.reference, coded.decoded, s["lag_samples"]) if scorer is not None
             else dict.fromkeys(FIELDS))
    if keep is not None:
        keep[(codec.key, setting)] = shift(clip.reference, coded.decoded, s["lag_samples"])[1]
    return {
        "dataset": clip.dataset,
        "file": clip.name,
        "sample_rate": clip.rate,
        "seconds": clip.seconds,
        "bytes": coded.nbytes,
        "kbps": coded.nbytes * 8 / clip.seconds / 1000,
        "stoi": s["stoi"],
        "pesq_wb": None if math.isnan(s["pesq_wb"]) else s["pesq_wb"],
        "mel": s["mel_distance"],
        **extra,
        "lag_samples": s["lag_samples"],
        "encode_s": coded.encode_s,
        "decode_s": coded.decode_s,
    }


def _mean(values: Iterable[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def summarise(rows: Sequence[Mapping[str, Any]], with_speed: bool) -> dict[str, Any]:
    """Aggregate per-clip records: kbps = total bytes x 8 / total seconds; every MEAN_FIELDS metric averaged
    over the clips that have it (None where none has)."""
    nbytes = sum(r["bytes"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    out: dict[str, Any] = {
        "clips": len(rows),
        "bytes": nbytes,
        "seconds": seconds,
        "kbps": nbytes * 8 / seconds / 1000,
        **{k: _mean(r.get(k) for r in rows) for k in MEAN_FIELDS},
        "pesq_wb_missing": sum(r["pesq_wb"] is None for r in rows),
    }
    if with_speed:
        enc, dec = sum(r["encode_s"] for r in rows), sum(r["decode_s"] for r in rows)
        out["speed"] = {"encode_s": enc, "decode_s": dec,
                        "encode_x_realtime": seconds / enc if enc else None,
                        "decode_x_realtime": seconds / dec if dec else None}
    return out


def measure_setting(codec: AudioCodec, setting: str, sets: Mapping[str, Sequence[Clip]], coded_dir: Path,
                    workdir: Path, max_lag_s: float, bar: tqdm, scorer: SpeechScorer | None = None,
                    figure_clip: str | None = None, keep: dict[tuple[str, str], np.ndarray] | None = None
                    ) -> dict[str, Any]:
    """Every clip at one setting: the setting's record (all sets together, per set, per clip). The aligned
    output of the clip named `figure_clip` goes into `keep`."""
    bar.set_description(f"{codec.key} {setting}")
    rows = []
    for name, clips in sets.items():
        for clip in clips:
            stem = Path(clip.name).with_suffix(codec.extension)
            rows.append(measure_clip(codec, setting, clip, coded_dir / codec.key / setting / name / stem,
                                     workdir, max_lag_s, scorer, keep if clip_key(clip) == figure_clip else None))
            rows[-1]["coded_file"] = str(Path(codec.key) / setting / name / stem)
            bar.update(1)
    record = {"setting": setting, "label": setting_label(codec, setting),
              **summarise(rows, codec.in_process)}
    record["per_set"] = {name: summarise([r for r in rows if r["dataset"] == name], codec.in_process)
                         for name in sets}
    record["per_clip"] = rows
    return record


def measure_original(sets: Mapping[str, Sequence[Clip]], scorer: SpeechScorer | None) -> dict[str, Any]:
    """The uncoded originals' non-intrusive scores (DNSMOS): per clip, per set, all sets together."""
    rows = [{"dataset": c.dataset, "file": c.name,
             **(scorer.original(clip_key(c), c.reference) if scorer is not None else {})}
            for clips in sets.values() for c in clips]
    keys = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808")

    def agg(part: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {"clips": len(part), **{k: _mean(r.get(k) for r in part) for k in keys}}

    return {"name": "uncoded original", **agg(rows),
            "per_set": {name: agg([r for r in rows if r["dataset"] == name]) for name in sets}, "per_clip": rows}


def measure_all(codecs: Sequence[AudioCodec], settings: Mapping[str, Sequence[str]],
                sets: Mapping[str, Sequence[Clip]], coded_dir: Path, max_lag_s: float,
                scorer: SpeechScorer | None = None, figure_clip: str | None = None,
                keep: dict[tuple[str, str], np.ndarray] | None = None) -> dict[str, Any]:
    """{codec key: {"name", "description", "in_process", "settings": [record, ...]}}; the aligned outputs of
    `figure_clip` go into `keep`."""
    n_clips = sum(len(c) for c in sets.values())
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vqcodec-audio-rd-") as tmp, \
            tqdm(total=n_clips * sum(len(settings[c.key]) for c in codecs), file=sys.stderr, unit="clip") as bar:
        for codec in codecs:
            if isinstance(codec, VqAudioCodec):
                codec.warm_up(next(iter(sets.values()))[0])
            records = [measure_setting(codec, s, sets, coded_dir, Path(tmp), max_lag_s, bar, scorer, figure_clip,
                                       keep)
                       for s in settings[codec.key]]
            results[codec.key] = {"name": codec.name, "description": codec.description,
                                  "in_process": codec.in_process, "settings": records}
    return results


# ------------------------------------------------------------------------------------------------ targets
def _entries(codecs: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    return list(codecs.get(key, {}).get("settings", []))


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _point(e: Mapping[str, Any]) -> str:
    return f"{e['label']}: {_fmt(e['kbps'], 2)} kbps, STOI {_fmt(e['stoi'])}, PESQ-WB {_fmt(e['pesq_wb'], 2)}"


def _above(a: float | None, b: float | None, strict: bool = True) -> bool:
    if a is None or b is None:
        return False
    return a > b if strict else a >= b


def target_lowest_quality(codecs: Mapping[str, Any]) -> dict[str, Any]:
    """Quality 1 at <= 1.5 kbps with STOI >= 0.80."""
    text = f"lowest quality at <= {Q1_MAX_KBPS} kbps with STOI >= {Q1_MIN_STOI:.2f}"
    q1 = [e for e in _entries(codecs, "vqcodec") if e["setting"] == "1"]
    if not q1:
        return {"target": text, "status": "not measured", "detail": "vqcodec quality 1 was not measured"}
    e = q1[0]
    met = e["kbps"] <= Q1_MAX_KBPS and _above(e["stoi"], Q1_MIN_STOI, strict=False)
    return {"target": text, "status": "met" if met else "not met", "detail": _point(e)}


def target_low_rate(codecs: Mapping[str, Any]) -> dict[str, Any]:
    """Some quality at <= 3 kbps with STOI >= 0.85 and STOI and PESQ-WB both above Codec2 3200's."""
    text = (f"at <= {LOW_MAX_KBPS:g} kbps: STOI >= {LOW_MIN_STOI:.2f}, STOI and PESQ-WB above Codec2 "
            f"{CODEC2_ANCHOR}'s")
    vq = _entries(codecs, "vqcodec")
    if not vq:
        return {"target": text, "status": "not measured", "detail": "vqcodec was not measured"}
    anchor = next((e for e in _entries(codecs, "codec2") if e["setting"] == CODEC2_ANCHOR), None)
    low = [e for e in vq if e["kbps"] <= LOW_MAX_KBPS]
    if not low:
        lowest = min(vq, key=lambda e: e["kbps"])
        return {"target": text, "status": "not met",
                "detail": f"no measured quality at <= {LOW_MAX_KBPS:g} kbps (lowest: {_point(lowest)})"}

    def passes(e: Mapping[str, Any]) -> bool:
        ok = _above(e["stoi"], LOW_MIN_STOI, strict=False)
        if anchor is not None:
            ok = ok and _above(e["stoi"], anchor["stoi"]) and _above(e["pesq_wb"], anchor["pesq_wb"])
        return ok

    passing = [e for e in low if passes(e)]
    best = max(passing or low, key=lambda e: (e["stoi"] or 0.0, e["pesq_wb"] or 0.0))
    detail = f"best at <= {LOW_MAX_KBPS:g} kbps: {_point(best)}"
    if anchor is None:
        return {"target": text, "status": "not measured",
                "detail": f"Codec2 {CODEC2_ANCHOR} was not measured; {detail}"}
    return {"target": text, "status": "met" if passing else "not met",
            "detail": f"{detail}; Codec2 {_point(anchor)}"}


def target_opus(codecs: Mapping[str, Any]) -> dict[str, Any]:
    """Some quality at or below Opus's lowest measured rate with PESQ-WB at least Opus's there."""
    text = "at or below Opus's lowest real rate: PESQ-WB >= Opus's"
    vq, opus = _entries(codecs, "vqcodec"), _entries(codecs, "opus")
    if not vq or not opus:
        return {"target": text, "status": "not measured",
                "detail": "vqcodec was not measured" if not vq else "Opus was not measured"}
    anchor = min(opus, key=lambda e: e["kbps"])
    below = [e for e in vq if e["kbps"] <= anchor["kbps"]]
    if not below:
        return {"target": text, "status": "not met",
                "detail": f"no measured quality at <= {anchor['kbps']:.2f} kbps; Opus {_point(anchor)}"}
    passing = [e for e in below if _above(e["pesq_wb"], anchor["pesq_wb"], strict=False)]
    best = max(passing or below, key=lambda e: e["pesq_wb"] or 0.0)
    return {"target": text, "status": "met" if passing else "not met",
            "detail": f"best PESQ-WB at <= {anchor['kbps']:.2f} kbps: {_point(best)}; Opus {_point(anchor)}"}


def _top(codecs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    vq = _entries(codecs, "vqcodec")
    return max(vq, key=lambda e: int(e["setting"])) if vq else None


def _status(ok: bool | None) -> str:
    return "not measured" if ok is None else "met" if ok else "not met"


def target_natural_low_rate(codecs: Mapping[str, Any]) -> dict[str, Any]:
    """Issue 21: DNSMOS overall at some quality <= 3 kbps >= Codec2 3200's."""
    text = f"DNSMOS overall at some quality <= {LOW_MAX_KBPS:g} kbps >= Codec2 {CODEC2_ANCHOR}'s"
    anchor = next((e for e in _entries(codecs, "codec2") if e["setting"] == CODEC2_ANCHOR), None)
    low = [e for e in _entries(codecs, "vqcodec") if e["kbps"] <= LOW_MAX_KBPS and e.get("dnsmos_ovrl") is not None]
    if anchor is None or anchor.get("dnsmos_ovrl") is None or not low:
        return {"target": text, "status": "not measured", "detail": "needs vqcodec <= 3 kbps and Codec2 3200 with DNSMOS"}
    best = max(low, key=lambda e: e["dnsmos_ovrl"])
    return {"target": text, "status": _status(best["dnsmos_ovrl"] >= anchor["dnsmos_ovrl"]),
            "detail": f"best: {best['label']} ({best['kbps']:.2f} kbps) {best['dnsmos_ovrl']:.2f}; Codec2 "
                      f"{CODEC2_ANCHOR} {anchor['dnsmos_ovrl']:.2f}"}


def target_natural_top(codecs: Mapping[str, Any], original: Mapping[str, Any] | None) -> dict[str, Any]:
    """Issue 21: DNSMOS overall at the top quality within NATURAL_TOP_GAP of the uncoded original's."""
    text = f"DNSMOS overall at the top quality within {NATURAL_TOP_GAP} of the uncoded original's"
    top, orig = _top(codecs), (original or {}).get("dnsmos_ovrl")
    if top is None or top.get("dnsmos_ovrl") is None or orig is None:
        return {"target": text, "status": "not measured", "detail": "needs vqcodec and the originals with DNSMOS"}
    return {"target": text, "status": _status(top["dnsmos_ovrl"] >= orig - NATURAL_TOP_GAP),
            "detail": f"{top['label']} {top['dnsmos_ovrl']:.2f}; originals {orig:.2f}"}


def target_voicing(codecs: Mapping[str, Any]) -> dict[str, Any]:
    """Issue 21: at quality VOICING_QUALITY, median f0 error <= MAX_F0_CENTS and V/UV F1 >= MIN_VUV_F1."""
    text = (f"at q{VOICING_QUALITY}: median f0 error <= {MAX_F0_CENTS:g} cents on voiced frames and V/UV F1 >= "
            f"{MIN_VUV_F1}")
    e = next((e for e in _entries(codecs, "vqcodec") if e["setting"] == str(VOICING_QUALITY)), None)
    if e is None or e.get("f0_cents") is None or e.get("vuv_f1") is None:
        return {"target": text, "status": "not measured", "detail": f"q{VOICING_QUALITY} with f0 metrics not measured"}
    return {"target": text, "status": _status(e["f0_cents"] <= MAX_F0_CENTS and e["vuv_f1"] >= MIN_VUV_F1),
            "detail": f"{e['f0_cents']:.1f} cents, F1 {e['vuv_f1']:.3f}"}


def target_pesq(codecs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Issue 21: PESQ-WB >= PESQ_LOW at some quality <= 3 kbps and >= PESQ_TOP at the top."""
    low = [e for e in _entries(codecs, "vqcodec") if e["kbps"] <= LOW_MAX_KBPS and e.get("pesq_wb") is not None]
    text = f"PESQ-WB >= {PESQ_LOW} at some quality <= {LOW_MAX_KBPS:g} kbps"
    if low:
        best = max(low, key=lambda e: e["pesq_wb"])
        first = {"target": text, "status": _status(best["pesq_wb"] >= PESQ_LOW),
                 "detail": f"best: {best['label']} ({best['kbps']:.2f} kbps) {best['pesq_wb']:.2f}"}
    else:
        first = {"target": text, "status": "not measured", "detail": "no quality <= 3 kbps with PESQ-WB"}
    top = _top(codecs)
    text = f"PESQ-WB >= {PESQ_TOP} at the top quality"
    if top is None or top.get("pesq_wb") is None:
        return [first, {"target": text, "status": "not measured", "detail": "vqcodec not measured"}]
    return [first, {"target": text, "status": _status(top["pesq_wb"] >= PESQ_TOP),
                    "detail": f"{top['label']} {top['pesq_wb']:.2f}"}]


def target_stoi_kept(codecs: Mapping[str, Any], reference: Mapping[str, Any] | None) -> dict[str, Any]:
    """Issue 21: STOI at most STOI_DROP below the reference run's (0.4.1's) at every quality both measured."""
    text = f"STOI at most {STOI_DROP} below the reference run's at every quality"
    ref = {e["setting"]: e.get("stoi") for e in _entries((reference or {}).get("codecs", {}), "vqcodec")}
    pairs = [(e["setting"], e["stoi"], ref[e["setting"]]) for e in _entries(codecs, "vqcodec")
             if e.get("stoi") is not None and ref.get(e["setting"]) is not None]
    if not pairs:
        return {"target": text, "status": "not measured", "detail": "no reference run with the same qualities"}
    worst = min(pairs, key=lambda p: p[1] - p[2])
    return {"target": text, "status": _status(all(new >= old - STOI_DROP for _, new, old in pairs)),
            "detail": f"worst: q{worst[0]} {worst[1]:.3f} against {worst[2]:.3f} "
                      f"({worst[1] - worst[2]:+.3f}; {len(pairs)} qualities compared)"}


def check_targets(codecs: Mapping[str, Any], original: Mapping[str, Any] | None = None,
                  reference: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rate/quality targets of issue 11 and the naturalness targets of issue 21, from the measured
    aggregates (all sets together); `original` the uncoded originals' scores, `reference` an earlier run's
    JSON document (its vqcodec STOI per quality)."""
    return [target_lowest_quality(codecs), target_low_rate(codecs), target_opus(codecs),
            target_natural_low_rate(codecs), target_natural_top(codecs, original), target_voicing(codecs),
            *target_pesq(codecs), target_stoi_kept(codecs, reference)]


# ------------------------------------------------------------------------------------------------ outputs
def machine_note(threads: int, note: str | None) -> dict[str, Any]:
    """What ran the benchmark, and how loaded the machine was when it started."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": threads,
        "note": note,
    }


def write_json(path: Path, obj: Any) -> Path:
    import json

    path.write_text(json.dumps(obj, indent=2) + "\n")
    return path


def _rows(doc: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for c in doc["codecs"].values():
        for e in c["settings"]:
            yield c["name"], e


def _speed_cells(e: Mapping[str, Any]) -> list[str]:
    s = e.get("speed")
    if not s:
        return ["", ""]
    return [_fmt(s["encode_x_realtime"], 1), _fmt(s["decode_x_realtime"], 1)]


PERCEPTUAL_COLUMNS = (("dnsmos_ovrl", "DNSMOS OVRL", 2), ("dnsmos_sig", "SIG", 2), ("dnsmos_bak", "BAK", 2),
                      ("visqol", "ViSQOL", 2), ("visqol_poly", "ViSQOL poly", 2), ("stoi", "STOI", 3),
                      ("pesq_wb", "PESQ-WB", 2), ("f0_cents", "f0 error (cents)", 1), ("vuv_f1", "V/UV F1", 3))


def perceptual_table(doc: Mapping[str, Any], part: str | None = None) -> list[str]:
    """Table of the perceptual and pitch metrics (all sets, or the set `part`), the uncoded original first."""
    cols = PERCEPTUAL_COLUMNS
    lines = ["| codec | setting | kbps | " + " | ".join(c[1] for c in cols) + " |",
             "|---|---|---:|" + "---:|" * len(cols)]
    orig = doc.get("original")
    if orig:
        o = orig if part is None else orig["per_set"][part]
        lines.append("| uncoded original | | | " + " | ".join(_fmt(o.get(k), d) if k.startswith("dnsmos") else ""
                                                            for k, _, d in cols) + " |")
    for name, e in _rows(doc):
        p = e if part is None else e["per_set"][part]
        lines.append(f"| {name} | {e['label']} | {p['kbps']:.2f} | "
                     + " | ".join(_fmt(p.get(k), d) for k, _, d in cols) + " |")
    return lines


def markdown_tables(doc: Mapping[str, Any]) -> list[str]:
    """The perceptual table, the all-sets table, then one table of each kind per set."""
    lines = ["## Perceptual and pitch metrics, all sets together", "", *perceptual_table(doc), "",
             "## All sets together", "",
             "| codec | setting | kbps | STOI | PESQ-WB | mel dist. | encode x RT | decode x RT |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, e in _rows(doc):
        lines.append(f"| {name} | {e['label']} | {e['kbps']:.2f} | {_fmt(e['stoi'])} | {_fmt(e['pesq_wb'], 2)} | "
                     f"{_fmt(e['mel'], 3)} | " + " | ".join(_speed_cells(e)) + " |")
    for ds in doc["datasets"]:
        clips = f"{ds['clips_count']} clip{'s' if ds['clips_count'] != 1 else ''}"
        lines += ["", f"## {ds['name']} ({clips}, {ds['seconds']:.1f} s)", "",
                  "| codec | setting | kbps | STOI | PESQ-WB | mel dist. |", "|---|---|---:|---:|---:|---:|"]
        for name, e in _rows(doc):
            p = e["per_set"][ds["name"]]
            lines.append(f"| {name} | {e['label']} | {p['kbps']:.2f} | {_fmt(p['stoi'])} | {_fmt(p['pesq_wb'], 2)} | "
                         f"{_fmt(p['mel'], 3)} |")
        lines += ["", *perceptual_table(doc, ds["name"])]
    return lines


def write_markdown(path: Path, doc: Mapping[str, Any]) -> Path:
    """audio_rd.md: how it was measured, the tables, the targets."""
    m = doc["machine"]
    sets = ", ".join(f"{d['name']} ({d['clips_count']})" for d in doc["datasets"])
    lines = [
        f"# Speech rate-distortion: {sets}",
        "",
        f"Measured {doc['date']} with `{doc['command']}` ({m['platform']}, {m['cpu_count']} CPU cores, load "
        f"average {m['load_average_at_start']} at start; torch {m['torch']} with {m['torch_threads']} thread(s))."
        + (f" Note: {m['note']}" if m["note"] else ""),
        "",
        "- kbps: bytes of the complete coded file (.vq; .opus with Ogg pages and tags; Codec2's headerless bit "
        "file) x 8 / clip seconds, as total bytes / total seconds over the clips.",
        f"- STOI, PESQ-WB, mel distance: at 16 kHz mono against the original resampled to 16 kHz (soxr), after "
        f"aligning each output to it (delay searched within {doc['max_lag_s']} s); means over clips. "
        "Lower mel distance is better.",
        "- DNSMOS (P.835, `speechmos`' ONNX models; OVRL overall, SIG speech signal, BAK background; MOS 1..5, "
        "non-intrusive, so the uncoded original has a score), ViSQOL v3 speech mode (`visqol-python`, MOS-LQO 1..5: "
        "`ViSQOL` with the deep-lattice mapping, the C++ tool's default; `ViSQOL poly` with the polynomial mapping, "
        "which rates 1-2 points higher), f0 error (median |1200 log2 f_out / f_orig| over the 10 ms frames voiced in "
        f"both, `pyworld` {doc['metrics']['f0_method']}; per set the mean of the clips' medians) and V/UV F1 (the "
        "output's voiced frames against the original's): on the same aligned 16 kHz signals; means over clips.",
        f"- x RT: vqcodec's encode_audio / decode in process, model loaded, {m['torch_threads']} torch thread(s), "
        "one untimed warm-up first: audio seconds per wall second. Baselines run as subprocesses (not timed here).",
    ]
    for key, why in doc["skipped"].items():
        lines.append(f"- {key} was skipped: {why}.")
    for key, why in doc["metrics"]["skipped"].items():
        lines.append(f"- metric {key} was skipped: {why}.")
    if doc["metrics"].get("visqol_note"):
        lines.append(f"- ViSQOL's lattice mapping did not run: {doc['metrics']['visqol_note']}.")
    if doc.get("spectrograms"):
        lines.append(f"- Spectrograms of {doc['spectrograms']['clip']}: `{doc['spectrograms']['png']}`.")
    if doc["quick"]:
        lines += ["", "**Quick smoke run** (one clip per set, few settings): not a benchmark result."]
    if doc.get("reference"):
        lines.append(f"- STOI target's reference: `{doc['reference']['path']}` (measured {doc['reference']['date']}).")
    lines += ["", *markdown_tables(doc), "", "## Targets (all sets together)", ""]
    lines += [f"- **{t['status']}**: {t['target']}. {t['detail']}." for t in doc["targets"]]
    lines += ["", "Codecs: " + "; ".join(f"{c['name']}: {c['description']}" for c in doc["codecs"].values()) + "."]
    path.write_text("\n".join(lines) + "\n")
    return path


def plot(path: Path, doc: Mapping[str, Any], log_x: bool = True) -> Path:
    """STOI and PESQ-WB against kbps (all sets together), one line per codec; DNSMOS OVRL (with the uncoded
    original as a dashed line) and ViSQOL too when measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    panels = [("stoi", "STOI"), ("pesq_wb", "PESQ-WB (MOS-LQO)"), ("dnsmos_ovrl", "DNSMOS P.835 OVRL"),
              ("visqol", "ViSQOL v3 speech (lattice)"), ("visqol_poly", "ViSQOL v3 speech (polynomial)")]
    entries = [e for c in doc["codecs"].values() for e in c["settings"]]
    panels = [p for p in panels if p[0] in ("stoi", "pesq_wb") or any(e.get(p[0]) is not None for e in entries)]
    if any(p[0] == "visqol" for p in panels):
        panels = [p for p in panels if p[0] != "visqol_poly"]
    rows = 1 if len(panels) <= 2 else 2
    fig, axes = plt.subplots(rows, 2, figsize=(12, 5 * rows), squeeze=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    original = (doc.get("original") or {}).get("dnsmos_ovrl")
    for ax, (metric, ylabel) in zip(axes.flat, panels):
        if metric == "dnsmos_ovrl" and original is not None:
            ax.axhline(original, color="black", linestyle="--", linewidth=0.9, label="uncoded original")
        for c in doc["codecs"].values():
            pts = sorted((e["kbps"], e[metric], e["label"]) for e in c["settings"] if e.get(metric) is not None)
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=4, label=c["name"])
            for x, y, label in pts:
                ax.annotate(label.replace("--bitrate ", ""), (x, y), textcoords="offset points", xytext=(3, 3),
                            fontsize=7)
        for x in (Q1_MAX_KBPS, LOW_MAX_KBPS):
            ax.axvline(x, color="grey", linestyle=":", linewidth=0.8)
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator(LOG_TICKS))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("kbps (real file bytes)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.4, which="both")
        ax.legend(loc="lower right", fontsize=8)
    title = ", ".join(d["name"] for d in doc["datasets"]) + (" (quick smoke run)" if doc["quick"] else "")
    fig.suptitle(f"Speech at 16 kHz: {title}; dotted: {Q1_MAX_KBPS} and {LOW_MAX_KBPS:g} kbps targets")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def figure_rows(results: Mapping[str, Any]) -> list[list[tuple[str, str] | None]]:
    """Which outputs the spectrogram figure shows, as rows of (codec key, setting): each baseline setting of
    FIGURE_SETTINGS that was measured (else every measured setting of that baseline) beside vqcodec at the
    quality nearest its rate (all sets together); without baselines, vqcodec's qualities two by two."""
    vq = results.get("vqcodec", {}).get("settings", [])
    rows: list[list[tuple[str, str] | None]] = []
    for key, wanted in FIGURE_SETTINGS.items():
        if key not in results:
            continue
        measured = results[key]["settings"]
        for e in [e for e in measured if e["setting"] in wanted] or measured:
            near = min(vq, key=lambda v: abs(v["kbps"] - e["kbps"])) if vq else None
            rows.append([(key, e["setting"]), ("vqcodec", near["setting"]) if near else None])
    if not rows:
        cells = [("vqcodec", e["setting"]) for e in vq]
        rows = [list(cells[i:i + 2]) + [None] * (2 - len(cells[i:i + 2])) for i in range(0, len(cells), 2)]
    return rows


def write_spectrograms(path: Path, results: Mapping[str, Any], clip: Clip,
                       outputs: Mapping[tuple[str, str], np.ndarray]) -> dict[str, Any]:
    """audio_spectrograms.png: the loudest FIGURE_SECONDS of `clip`, the original, then figure_rows' outputs
    (aligned to the original, so the same stretch); -> its JSON description."""
    key = clip_key(clip)
    a, b = loudest_window(clip.reference, EVAL_RATE, FIGURE_SECONDS)

    def label(codec: str, setting: str) -> str:
        c = results[codec]
        e = next(e for e in c["settings"] if e["setting"] == setting)
        r = next(r for r in e["per_clip"] if f"{r['dataset']}/{r['file']}" == key)
        return f"{c['name']} {e['label']}: {r['kbps']:.2f} kbps on this clip"

    panels: list[tuple[str, np.ndarray] | None] = [("uncoded original (16 kHz)", clip.reference[a:b]), None]
    shown = []
    for row in figure_rows(results):
        for cell in row:
            if cell is None or cell not in outputs:
                panels.append(None)
            else:
                panels.append((label(*cell), outputs[cell][a:b]))
                shown.append({"codec": cell[0], "setting": cell[1]})
    spectrogram_grid(path, panels, EVAL_RATE,
                     f"{key}, {a / EVAL_RATE:.2f}-{b / EVAL_RATE:.2f} s: log-magnitude spectrograms (40 ms Hann windows, "
                     "dB re full scale); each row pairs a baseline with vqcodec at the nearest rate",
                     t0=a / EVAL_RATE)
    return {"clip": key, "png": path.name, "seconds": [a / EVAL_RATE, b / EVAL_RATE], "panels": shown}


def dataset_entries(folders: Sequence[Path], sets: Mapping[str, Sequence[Clip]]) -> list[dict[str, Any]]:
    """The JSON description of each set: name, folder, clips."""
    def shown(p: Path) -> str:
        return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)

    return [{"name": name, "path": shown(folder), "clips_count": len(clips),
             "seconds": sum(c.seconds for c in clips),
             "clips": [{"file": c.name, "sample_rate": c.rate, "seconds": c.seconds} for c in clips]}
            for folder, (name, clips) in zip(folders, sets.items())]


# ------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Speech rate-distortion: vqcodec vs Opus and Codec2.")
    p.add_argument("--dataset", type=Path, action="append",
                   help="folder of audio clips (repeatable; replaces the bundled data/speech sets)")
    p.add_argument("--codecs", default=",".join(CODEC_KEYS),
                   help=f"comma list from {','.join(CODEC_KEYS)} (default: all; a baseline whose tools are "
                        "missing is skipped with a note)")
    p.add_argument("--qualities", help="vqcodec qualities, e.g. 1,3,8 or 1-4 (default: 1..max_quality; "
                                       "--quick: 1 and max)")
    p.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT_OUT.relative_to(REPO)}; with "
                                            "--quick a new temporary folder)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"torch threads for vqcodec and the metrics (default {DEFAULT_THREADS})")
    p.add_argument("--max-lag", type=float, default=DEFAULT_MAX_LAG_S,
                   help=f"largest codec delay searched when aligning, seconds (default {DEFAULT_MAX_LAG_S})")
    p.add_argument("--keep-files", type=Path, help="keep every coded file in this folder")
    p.add_argument("--decoder", help="decode vqcodec's files with this decoder (the files are the same): an "
                   "installed decoder's id, 'model' (the speech model's own, as 0.5.x decoded), or a weights file "
                   "of `vqcodec train audio-decoder`; default: the one the files name")
    p.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                   help="an earlier run's audio_rd.json whose vqcodec STOI per quality the STOI target compares "
                        "with (default: 0.4.1's run, benchmarks/results/audio/rd_0.4.1/)")
    p.add_argument("--note", help="a note on the machine (e.g. 'shared with a training run'), kept in the outputs")
    p.add_argument("--linear-x", action="store_true", help="plot kbps on a linear axis (default: log)")
    p.add_argument("--skip-metrics", default="",
                   help=f"comma list from {','.join(METRICS)}: perceptual/pitch metrics to leave out (a metric whose "
                        "package is missing is left out anyway, with a note)")
    p.add_argument("--f0-method", choices=("harvest", "dio"), default="harvest",
                   help="pyworld f0 tracker for the f0 error and V/UV F1 (default harvest; dio is ~30x faster)")
    p.add_argument("--spectrogram-clip", metavar="SET/FILE",
                   help=f"clip of the spectrogram figure, e.g. {DEFAULT_SPECTROGRAM_CLIP} (default: that one when "
                        "measured, else the first clip of the first set)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: shortest clip of each set, vqcodec qualities 1 and max, one setting per baseline")
    return p


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def metric_note(scorer: SpeechScorer) -> dict[str, Any]:
    """How the perceptual and pitch metrics ran: skipped ones (why), f0 settings, package versions."""
    from speech_metrics import F0_CEIL_HZ, F0_FLOOR_HZ, F0_FRAME_MS

    dists = ("speechmos", "onnxruntime", "librosa", "visqol-python", "ai-edge-litert", "pyworld-prebuilt", "pyworld")
    return {"skipped": dict(scorer.skipped), "visqol_note": scorer.visqol_note, "f0_method": scorer.f0_method,
            "f0_frame_ms": F0_FRAME_MS, "f0_range_hz": [F0_FLOOR_HZ, F0_CEIL_HZ],
            "packages": {d: v for d in dists if (v := _version(d))}}


def output_folder(args: argparse.Namespace) -> Path:
    if args.out is not None:
        out = args.out.resolve()
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="vqcodec-audio-rd-quick-"))
    else:
        out = DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    return out


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, command: str) -> tuple[dict[str, Any], Path]:
    """Measure everything; -> (the JSON document, output folder)."""
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.max_lag < 0:
        parser.error("--max-lag must be >= 0")
    torch.set_num_threads(args.threads)
    skip = tuple(dict.fromkeys(m.strip().lower() for m in args.skip_metrics.split(",") if m.strip()))
    if set(skip) - set(METRICS):
        parser.error(f"--skip-metrics {args.skip_metrics!r}: choose from {', '.join(METRICS)}")
    codecs, settings, skipped = select_codecs(args, parser)
    folders = [f.resolve() for f in (args.dataset or DEFAULT_DATASETS)]
    sets = load_datasets(folders, args.quick)
    names = [clip_key(c) for clips in sets.values() for c in clips]
    if args.spectrogram_clip is not None and args.spectrogram_clip not in names:
        parser.error(f"--spectrogram-clip {args.spectrogram_clip!r} is not among the clips measured "
                     f"({', '.join(names)})")
    figure_clip = args.spectrogram_clip or (DEFAULT_SPECTROGRAM_CLIP if DEFAULT_SPECTROGRAM_CLIP in names
                                            else names[0])
    scorer = SpeechScorer(skip, threads=args.threads, f0_method=args.f0_method)
    for metric, why in scorer.skipped.items():
        print(f"note: metric {metric} skipped: {why}", file=sys.stderr)
    out = output_folder(args)
    log.info("%d clips from %s; %s; writing to %s", sum(len(c) for c in sets.values()), ", ".join(sets),
             "; ".join(f"{c.key} {list(settings[c.key])}" for c in codecs), out)
    with tempfile.TemporaryDirectory(prefix="vqcodec-audio-coded-") as tmp:
        coded_dir = args.keep_files.resolve() if args.keep_files else Path(tmp)
        outputs: dict[tuple[str, str], np.ndarray] = {}
        results = measure_all(codecs, settings, sets, coded_dir, args.max_lag, scorer, figure_clip, outputs)
    doc = {
        "command": command,
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": bool(args.quick),
        "machine": machine_note(args.threads, args.note),
        "threads": args.threads,
        "eval_rate": EVAL_RATE,
        "max_lag_s": args.max_lag,
        "kept_files": str(args.keep_files.resolve()) if args.keep_files else None,
        "datasets": dataset_entries(folders, sets),
        "skipped": skipped,
        "metrics": metric_note(scorer),
        "original": measure_original(sets, scorer),
        "codecs": results,
    }
    reference = None
    if args.reference is not None and args.reference.is_file():
        import json

        reference = json.loads(args.reference.read_text())
        where = args.reference.resolve()
        doc["reference"] = {"path": str(where.relative_to(REPO) if where.is_relative_to(REPO) else where),
                            "date": reference.get("date"),
                            "command": reference.get("command")}
    doc["targets"] = check_targets(results, doc["original"], reference)
    clip = next(c for clips in sets.values() for c in clips if clip_key(c) == figure_clip)
    doc["spectrograms"] = write_spectrograms(out / "audio_spectrograms.png", results, clip, outputs)
    return doc, out


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/audio_rate_distortion.py", *(sys.argv[1:] if argv is None else argv)])
    doc, out = run(args, parser, command)
    written = [write_json(out / "audio_rd.json", doc), write_markdown(out / "audio_rd.md", doc),
               plot(out / "audio_rd.png", doc, log_x=not args.linear_x), out / doc["spectrograms"]["png"]]
    for path in written:
        print(path)
    for t in doc["targets"]:
        print(f"target {t['status']}: {t['target']} -- {t['detail']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
