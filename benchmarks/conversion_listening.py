#!/usr/bin/env python
"""Speaker conversions to listen to (issue 23): a page of a few conversions (source, target reference,
converted), like the pictures page. An experiment to keep the conversion honest, not a listening test.

    python benchmarks/conversion_listening.py --weights DIR          # 6 rows -> results/audio/conversion_listening/
    python benchmarks/conversion_listening.py --quick --weights DIR  # 2 rows of 2 s clips, into a temporary folder
    python benchmarks/conversion_listening.py --speakers-csv CSV --rows 8 --seed 1 --out DIR

The conversion model is the installed one (`vqcodec.registry.default_registry().optional("audio",
"conversion")`), or the one of `--weights DIR` (a folder holding audio_conversion.safetensors beside the audio
model; it becomes $VQCODEC_WEIGHTS_DIR before vqcodec is imported). Every conversion goes through the public
API: `vqcodec.convert_speaker(samples, speaker, sample_rate=rate)` at the source's own rate, and
`vqcodec.list_speakers()` for the table's pitch of an id target.

Rows (`--rows`, default 6: 3 of kind a, 2 of b, 1 of c; a kind that cannot be made here gives its rows to a):
  a. by id: a held-out utterance (never trained on) of a training speaker converted to another training speaker
     given by its id (the model's speaker table); same-gender and cross-gender pairs alternate when the manifest
     has a gender column. The target reference played beside it is one of the target's training utterances, for
     the ear only: the model uses its table row, not that recording.
  b. by reference: an utterance of a held-out speaker (never trained on) converted to another held-out speaker
     given by ONE reference recording: the utterance conversion_eval.py uses as that speaker's reference, cut
     to the clip cap and passed as (samples, rate), so the reference played is exactly what the model got. The
     source is never a speaker's reference utterance.
  c. native English: one LJSpeech clip (`DATA/ljspeech`, transcript from metadata.csv) converted by id to a
     training speaker.

The split is conversion_eval.py's (the trainer's own: `--data`, `--speakers-csv`, `--exclude-speakers`,
`--holdout-per-speaker` mean what they mean there), and so are its pair and reference choices, with this
script's own seed salts. Clips are the first `--seconds` of each file (mixed to mono).

Outputs in --out: media/*.wav (16-bit PCM at the source's rate: source, target reference, converted; the
converted one is as long as the source), media/rowNN_spectrogram.png (matplotlib: source / reference /
converted stacked, narrow-band log-magnitude STFT at 16 kHz, 0-8 kHz, one colour scale: the source's loudest
bin down to 80 dB below; skipped with a note without matplotlib), index.html (self-contained, relative links)
and listening.json (every number and file name). With pyworld, each clip's median f0 over its voiced points
(`vqcodec.audio.pitch.pitch_labels` at 16 kHz, the model's tracker) is shown; the conversion itself needs
pyworld too.
"""
from __future__ import annotations

import argparse
import datetime
import html
import importlib
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # sibling helper modules, also when imported rather than run
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

PROG = "conversion_listening.py"
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "speech"  # conversion_eval.py's default
DEFAULT_OUT = HERE / "results" / "audio" / "conversion_listening"
FIGURE_RATE = 16000
KINDS = ("by_id", "by_reference", "native_english")
KIND_TEXT = {"by_id": "by id", "by_reference": "by reference recording", "native_english": "native English, by id"}
GENDER = {"f": "female", "m": "male"}


def log(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- plan
def plan_rows(n: int) -> dict[str, int]:
    """Rows per kind: a, b, c, then a and b alternately (c only once)."""
    order = ["by_id", "by_reference", "native_english"] + ["by_id", "by_reference"] * n
    return dict(Counter(order[:n]))


def reallocate(want: dict[str, int], possible: dict[str, bool]) -> dict[str, int]:
    """Rows of kinds that cannot be made go to the first kind that can (by id, then by reference)."""
    out = {k: (want.get(k, 0) if possible[k] else 0) for k in KINDS}
    spare = sum(want.get(k, 0) for k in KINDS if not possible[k])
    for k in ("by_id", "by_reference"):
        if spare and possible[k]:
            out[k] += spare
            spare = 0
    return out


# ------------------------------------------------------------------------------------------- audio
def read_clip(path: Path, seconds: float) -> tuple[np.ndarray, int, float]:
    """The first `seconds` of an audio file, mixed to mono: (float32 (T,), rate, the whole file's seconds)."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        rate = int(f.samplerate)
        whole = f.frames / rate
        x = f.read(int(round(seconds * rate)), dtype="float32", always_2d=True)
    return np.ascontiguousarray(x.mean(1), dtype=np.float32), rate, whole


def write_wav(path: Path, x: np.ndarray, rate: int) -> None:
    import soundfile as sf

    sf.write(str(path), np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0), rate, subtype="PCM_16")


def to_16k(x: np.ndarray, rate: int) -> np.ndarray:
    if rate == FIGURE_RATE:
        return x
    import soxr

    return soxr.resample(x, rate, FIGURE_RATE).astype(np.float32, copy=False)


class F0:
    """Median f0 (Hz) over the voiced pitch-label points of 16 kHz audio; None (with a note) without pyworld."""

    def __init__(self, method: str, notes: list[str]) -> None:
        self.method, self.notes, self.ok = method, notes, True

    def __call__(self, x16: np.ndarray) -> float | None:
        if not self.ok:
            return None
        import torch

        from conversion_eval import median_log2_f0

        try:
            v = median_log2_f0(torch.from_numpy(np.ascontiguousarray(x16, dtype=np.float32)), self.method)
        except ModuleNotFoundError as e:
            self.ok = False
            self.notes.append(f"median f0 not measured: {e}")
            return None
        return None if v is None else round(float(2.0 ** v), 2)


# ------------------------------------------------------------------------------------------- figure
def spectrogram_figure(path: Path, panels: list[tuple[str, np.ndarray]], title: str) -> Path:
    """Panels (label, 16 kHz signal) stacked, one time axis long enough for the longest, one colour scale (the
    first panel's loudest bin down to DYNAMIC_RANGE_DB below it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from speech_figures import DYNAMIC_RANGE_DB, HOP_S, MAX_HZ, log_spectrogram, save_png

    specs = [log_spectrogram(x, FIGURE_RATE) for _, x in panels]
    vmax = float(specs[0][0].max())
    longest = max(len(x) for _, x in panels) / FIGURE_RATE
    fig, axes = plt.subplots(len(panels), 1, figsize=(9.0, 2.3 * len(panels) + 0.5), squeeze=False)
    im = None
    for ax, (label, x), (db, freqs, times) in zip(axes[:, 0], panels, specs):
        im = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=vmax - DYNAMIC_RANGE_DB, vmax=vmax,
                       extent=(0.0, (times[-1] + HOP_S) if len(times) else HOP_S, 0.0, freqs[-1] / 1000.0),
                       interpolation="nearest")
        ax.set_xlim(0.0, longest)
        ax.set_ylim(0.0, MAX_HZ / 1000.0)
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("seconds")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    fig.colorbar(im, cax=fig.add_axes((0.915, 0.1, 0.015, 0.75)), label="dB")
    save_png(fig, path, dpi=90)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------- data
def read_tsv_transcripts(manifest: Path) -> dict[Path, str]:
    """{file (resolved): text} of a TRANSCRIPTS.tsv (file relative to its folder, tab, text) beside the manifest."""
    tsv = manifest.parent / "TRANSCRIPTS.tsv"
    out = {}
    if tsv.is_file():
        for line in tsv.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[0].strip():
                out[(manifest.parent / parts[0].strip()).resolve()] = parts[1].strip()
    return out


def model_info() -> dict:
    """Id, weights hash, file and pitch tracker of the installed conversion model (SystemExit when none)."""
    from safetensors import safe_open

    from vqcodec.registry import default_registry

    registry = default_registry()
    c = registry.optional("audio", "conversion")
    if c is None:
        raise SystemExit(f"no conversion model installed in {registry.folder}: give --weights DIR (a folder holding "
                         "audio_conversion.safetensors beside audio_vqvae/audio_prior.safetensors)")
    with safe_open(str(c.path), framework="pt") as f:
        meta = f.metadata() or {}
    try:
        pitch = json.loads(meta.get("config", "{}")).get("conversion", {}).get("pitch", "dio")
    except (ValueError, AttributeError):
        pitch = "harvest"
    return {"id": c.model_id, "weights_hash": c.weights_hash.hex(), "file": str(c.path), "folder": str(registry.folder),
            "release": c.release, "pitch_tracker": pitch if pitch in ("harvest", "dio") else "harvest"}


# ------------------------------------------------------------------------------------------- the run
def run(args) -> dict:
    import torch

    import conversion_eval as ce
    import vqcodec

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    notes: list[str] = []
    model = model_info()
    table_f0 = dict(vqcodec.list_speakers())
    table = tuple(table_f0)
    trained_on = sorted(set(args.exclude_speakers) & set(table))
    if trained_on:
        raise SystemExit(f"the model has {', '.join(trained_on)} in its speaker table: those speakers were trained on "
                         "and cannot be the held-out voices; give --exclude-speakers as the run had them")
    corpus = ce.load_corpus(args.data, args.manifest, args.speakers_csv, tuple(args.exclude_speakers),
                            args.holdout_per_speaker, table)
    table_targets = sorted(s for s in corpus.sources if s in table)
    transcripts = read_tsv_transcripts(args.manifest)
    native = ce.read_transcripts(args.data / "ljspeech")
    # by reference: conversion_eval's reference utterance of every held-out speaker
    references = {s: ce.crc_rank(files, "conversion-eval-reference")[0] for s, files in sorted(corpus.new.items())
                  if files}
    new_sources = {s: [p for p in files if p != references[s]] for s, files in corpus.new.items() if s in references}
    new_sources = {s: files for s, files in new_sources.items() if files}
    possible = {"by_id": len(table_targets) >= 2,
                "by_reference": bool(new_sources) and len(references) >= 2,
                "native_english": bool(native) and bool(table_targets)}
    for k, why in (("by_id", f"fewer than 2 training speakers of {args.manifest} with held-out utterances in the "
                             "model's table"),
                   ("by_reference", "fewer than 2 held-out speakers (--exclude-speakers) in the manifest, or none "
                                    "with an utterance besides its reference"),
                   ("native_english", f"no transcribed clip (metadata.csv) in {args.data / 'ljspeech'}, or no "
                                      "training speaker to convert to")):
        if not possible[k]:
            notes.append(f"no {KIND_TEXT[k]} rows: {why}")
    counts = reallocate(plan_rows(args.rows), possible)
    if not sum(counts.values()):
        raise SystemExit("no row can be made from this data and model: " + "; ".join(notes))

    def rel(p: Path) -> str:
        try:
            return Path(p).resolve().relative_to(Path(args.data).resolve()).as_posix()
        except ValueError:
            return str(p)

    plans = []
    for pair in ce.select_pairs(corpus.sources, table_targets, corpus.genders, counts["by_id"], args.seed,
                                "listening-by-id"):
        t = pair["target"]
        training = [p for p in corpus.utterances.get(t, []) if p not in set(corpus.sources.get(t, []))]
        ref = random.Random(f"{args.seed}/listening-reference/{t}").choice(sorted(training or corpus.utterances[t]))
        plans.append({**pair, "kind": "by_id", "reference": ref})
    for pair in ce.select_pairs(new_sources, sorted(references), corpus.genders, counts["by_reference"], args.seed,
                                "listening-by-ref"):
        plans.append({**pair, "kind": "by_reference", "reference": references[pair["target"]]})
    if counts["native_english"]:
        rng = random.Random(f"{args.seed}/listening-native")
        clip = rng.choice(sorted(native))
        used = Counter(p["target"] for p in plans if p["kind"] == "by_id")
        least = min(used[t] for t in table_targets)
        t = rng.choice([t for t in table_targets if used[t] == least])
        training = [p for p in corpus.utterances.get(t, []) if p not in set(corpus.sources.get(t, []))]
        ref = random.Random(f"{args.seed}/listening-reference/{t}").choice(sorted(training or corpus.utterances[t]))
        plans.append({"kind": "native_english", "source": clip, "source_speaker": "LJSpeech", "target": t,
                      "same_gender": corpus.genders.get(t) == "f", "reference": ref, "transcript": native[clip]})
    if len(plans) < args.rows:
        notes.append(f"{len(plans)} rows made of the {args.rows} asked for (not enough distinct pairs in the data)")

    media = args.out / "media"
    media.mkdir(parents=True, exist_ok=True)
    f0 = F0(model["pitch_tracker"], notes)
    try:
        figures = importlib.import_module("matplotlib") is not None
    except ImportError:
        figures = False
    if not figures:
        notes.append("no spectrograms: matplotlib is not installed (pip install matplotlib)")

    rows = []
    for i, plan in enumerate(plans, 1):
        kind, t = plan["kind"], plan["target"]
        log(f"row {i}/{len(plans)}: {KIND_TEXT[kind]}: {plan['source_speaker']} -> {t}")
        x, rate, x_whole = read_clip(plan["source"], args.seconds)
        r, r_rate, r_whole = read_clip(plan["reference"], args.seconds)
        speaker = t if kind != "by_reference" else (r, r_rate)
        t0 = time.perf_counter()
        try:
            y, y_rate = vqcodec.convert_speaker(x, speaker, sample_rate=rate)
        except ModuleNotFoundError as e:
            raise SystemExit(f"conversion needs pyworld: {e}") from None
        seconds = time.perf_counter() - t0
        y = np.asarray(y, dtype=np.float32)[:, 0]
        stem = f"row{i:02d}"
        files = {"source": f"media/{stem}_source.wav", "reference": f"media/{stem}_reference.wav",
                 "converted": f"media/{stem}_converted.wav"}
        for key, (sig, sr) in (("source", (x, rate)), ("reference", (r, r_rate)), ("converted", (y, y_rate))):
            write_wav(args.out / files[key], sig, sr)
        x16, r16, y16 = to_16k(x, rate), to_16k(r, r_rate), to_16k(y, y_rate)
        src_g, tgt_g = corpus.genders.get(plan["source_speaker"], "?"), corpus.genders.get(t, "?")
        if kind == "native_english":
            src_g = "f"  # LJSpeech: one female reader
        row = {
            "row": i, "kind": kind, "target_given_by": "reference recording" if kind == "by_reference" else "table id",
            "same_gender": bool(plan["same_gender"]) if "?" not in (src_g, tgt_g) else None,
            "transcript": plan.get("transcript") or transcripts.get(Path(plan["source"]).resolve()),
            "source": {"file": rel(plan["source"]), "speaker": plan["source_speaker"], "gender": src_g,
                       "wav": files["source"], "rate": rate, "samples": int(len(x)),
                       "seconds": round(len(x) / rate, 3), "file_seconds": round(x_whole, 3),
                       "cut": len(x) / rate < x_whole - 1e-6, "median_f0_hz": f0(x16)},
            "target": {"speaker": t, "gender": tgt_g,
                       "table_f0_hz": round(table_f0[t], 2) if kind != "by_reference" else None},
            "reference": {"file": rel(plan["reference"]), "speaker": t, "wav": files["reference"], "rate": r_rate,
                          "samples": int(len(r)), "seconds": round(len(r) / r_rate, 3), "file_seconds": round(r_whole, 3),
                          "cut": len(r) / r_rate < r_whole - 1e-6, "median_f0_hz": f0(r16),
                          "transcript": transcripts.get(Path(plan["reference"]).resolve()),
                          "given_to_model": kind == "by_reference"},
            "converted": {"wav": files["converted"], "rate": int(y_rate), "samples": int(len(y)),
                          "seconds": round(len(y) / y_rate, 3), "median_f0_hz": f0(y16),
                          "conversion_seconds": round(seconds, 3)},
            "spectrogram": None,
        }
        if figures:
            png = f"media/{stem}_spectrogram.png"
            spectrogram_figure(args.out / png, [(f"source: {plan['source_speaker']}", x16),
                                                (f"target reference: {t}", r16),
                                                (f"converted to {t}", y16)],
                               f"row {i}: {KIND_TEXT[kind]}, {plan['source_speaker']} -> {t}")
            row["spectrogram"] = png
        row["description"] = describe(row)
        rows.append(row)

    return {
        "what": "an experiment: a few speaker conversions to listen to (issue 23); no listening test was run",
        "command": " ".join(["python benchmarks/conversion_listening.py", *sys.argv[1:]]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "vqcodec_version": getattr(vqcodec, "__version__", ""),
        "model": {**model, "table_speakers": len(table)},
        "data": str(args.data), "manifest": str(args.manifest),
        "speakers_csv": str(args.speakers_csv) if args.speakers_csv else None,
        "exclude_speakers": list(args.exclude_speakers), "holdout_per_speaker": args.holdout_per_speaker,
        "split": corpus.split, "seed": args.seed, "seconds_cap": args.seconds, "rows_asked": args.rows,
        "rows_per_kind": dict(Counter(r["kind"] for r in rows)), "threads": args.threads, "quick": bool(args.quick),
        "f0": f"median over the voiced points of vqcodec.audio.pitch.pitch_labels ({model['pitch_tracker']}) "
              "at 16 kHz; table_f0_hz: 2 ** the table row's log2-f0 mean (vqcodec.list_speakers)",
        "spectrogram": "narrow-band log-magnitude STFT at 16 kHz (40 ms Hann, 5 ms hop), 0-8 kHz, colour scale: "
                       "the source's loudest bin down to 80 dB below",
        "notes": notes, "rows": rows, "seconds": round(time.perf_counter() - t_start, 1),
    }


def _who(speaker: str, gender: str) -> str:
    g = GENDER.get(gender)
    return f"{speaker} ({g})" if g else speaker


def _hz(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} Hz"


def describe(row: dict) -> str:
    s, t, kind = row["source"], row["target"], row["kind"]
    pair = "" if row["same_gender"] is None else (" Same gender." if row["same_gender"] else " Cross-gender.")
    if kind == "by_id":
        return (f"A held-out utterance (never trained on) of training speaker {_who(s['speaker'], s['gender'])}, "
                f"converted to training speaker {_who(t['speaker'], t['gender'])} given by its table id "
                f"(table pitch {_hz(t['table_f0_hz'])}).{pair} The target reference is one of "
                f"{t['speaker']}'s training utterances, for comparison only: the model used its table row.")
    if kind == "by_reference":
        return (f"An utterance of held-out speaker {_who(s['speaker'], s['gender'])} (never trained on), converted "
                f"to held-out speaker {_who(t['speaker'], t['gender'])} (never trained on) given by one reference "
                f"recording: the target reference played here, exactly as the model got it.{pair}")
    return (f"A native-English LJSpeech clip (one female reader, not in the training data), converted to training "
            f"speaker {_who(t['speaker'], t['gender'])} given by its table id (table pitch {_hz(t['table_f0_hz'])})."
            f"{pair} The target reference is one of {t['speaker']}'s training utterances, for comparison only.")


# ------------------------------------------------------------------------------------------- page
def _cell(title: str, c: dict, extra: str = "") -> str:
    esc = html.escape
    lines = [f'<td><div class="label">{esc(title)}</div>',
             f'<audio controls preload="metadata" src="{esc(c["wav"])}"></audio>',
             f'<div class="m">{c["seconds"]:.2f} s, {c["rate"]} Hz &middot; median f0 {esc(_hz(c.get("median_f0_hz")))}'
             f'{extra}</div>']
    if c.get("file"):
        lines.append(f'<div class="m">{esc(c["file"])}</div>')
    if c.get("transcript"):
        cut = " (whole file)" if c.get("cut") else ""
        lines.append(f'<div class="m">&ldquo;{esc(c["transcript"])}&rdquo;{cut}</div>')
    return "".join(lines) + "</td>"


def write_html(out: Path, res: dict) -> Path:
    esc = html.escape
    m = res["model"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>vqcodec: speaker conversions to listen to (an experiment)</title>",
        "<style>body{font-family:sans-serif;margin:16px;max-width:1400px}table{border-collapse:collapse;"
        "margin:6px 0 8px}td{border:1px solid #bbb;padding:6px;vertical-align:top;width:33%}"
        ".label{font-weight:bold;margin-bottom:4px}audio{width:100%}img{max-width:100%;display:block;"
        "margin-bottom:28px}.m{font-size:90%;color:#333;margin-top:4px}.warn{background:#fff4d0;padding:8px;"
        "border:1px solid #e0c060}</style>",
        "</head><body>",
        "<h1>Speaker conversion: a few conversions to listen to</h1>",
        '<p class="warn"><b>This is an experiment (issue 23), not a result.</b> No listening test was run: nobody '
        "has rated these clips, and nothing on this page says how well the conversion works. It is here so that "
        "anyone can hear what the model does to a few utterances, next to what the target speaker sounds like. "
        "The numbers are pitch measurements, not quality scores (benchmarks/conversion_eval.py scores the "
        "model).</p>",
        f"<p>Model: <code>{esc(m['id'])}</code>, weights hash <code>{esc(m['weights_hash'])}</code> (first 16 bytes "
        f"of the SHA-256 of {esc(Path(m['file']).name)}), {m['table_speakers']} speakers in its table, pitch "
        f"tracker {esc(m['pitch_tracker'])}. Every clip was converted with <code>vqcodec.convert_speaker(samples, "
        "speaker, sample_rate=rate)</code> at the source's own rate; the converted clip is as long as the "
        "source.</p>",
        f"<p>Data: {esc(res['data'])} (speakers of {esc(Path(res['manifest']).name)}; held-out speakers, never "
        f"trained on: {esc(', '.join(res['exclude_speakers']) or 'none')}; the trainer's split, "
        f"{res['holdout_per_speaker']} held-out utterances per training speaker). Clips: the first "
        f"{res['seconds_cap']:g} s of each file, mono, written as 16-bit PCM WAV. Median f0: {esc(res['f0'])}. "
        f"Spectrograms: {esc(res['spectrogram'])}.</p>",
        "<p>How the target is given: <b>by id</b>: a row of the model's speaker table (the reference played is one "
        "of that speaker's training utterances, for comparison only); <b>by reference recording</b>: the "
        "reference played is the recording the model was given, and nothing else about the speaker.</p>",
    ]
    if res["notes"]:
        parts.append("<p>Notes: " + esc("; ".join(res["notes"])) + ".</p>")
    parts.append(f"<p>Made with <code>{esc(res['command'])}</code> on {esc(res['date'])} "
                 f"({res['seconds']:.0f} s).</p>")
    for row in res["rows"]:
        s, t, r, c = row["source"], row["target"], row["reference"], row["converted"]
        table = "" if t.get("table_f0_hz") is None else f" &middot; table pitch {esc(_hz(t['table_f0_hz']))}"
        given = "given to the model" if r["given_to_model"] else "for comparison; not given to the model"
        parts += [
            f'<h2 id="row{row["row"]}">Row {row["row"]}: {esc(KIND_TEXT[row["kind"]])}: '
            f'{esc(_who(s["speaker"], s["gender"]))} &rarr; {esc(_who(t["speaker"], t["gender"]))}</h2>',
            f"<p>{esc(row['description'])}</p>",
        ]
        if row["transcript"]:
            cut = (f" (of the whole {s['file_seconds']:.1f} s file; the clip is its first {s['seconds']:.1f} s)"
                   if s.get("cut") else "")
            parts.append(f"<p>Transcript of the source{cut}: &ldquo;{esc(row['transcript'])}&rdquo;</p>")
        parts += [
            "<table><tr>",
            _cell(f"source: {s['speaker']}", s),
            _cell(f"target reference: {t['speaker']} ({given})", r, table),
            _cell(f"converted to {t['speaker']}", {**c, "file": None},
                  f" &middot; {c['conversion_seconds']:.2f} s to convert"),
            "</tr></table>",
        ]
        if row["spectrogram"]:
            parts.append(f'<a href="{esc(row["spectrogram"])}"><img src="{esc(row["spectrogram"])}" '
                         f'alt="spectrograms of row {row["row"]}: source, target reference, converted"></a>')
        else:
            parts.append("<p class=\"m\">(no spectrogram: matplotlib is not installed)</p>")
    parts.append("</body></html>")
    path = out / "index.html"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from conversion_eval import HELD_OUT_SPEAKERS  # numpy and torch only: no vqcodec import

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=None,
                    help="Weights folder with audio_conversion.safetensors (and the audio model): becomes "
                         "$VQCODEC_WEIGHTS_DIR (default: the installed weights).")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="The speech data folder (--data of the run).")
    ap.add_argument("--manifest", type=Path, default=None,
                    help="CSV (file relative to its folder, speaker, gender) of the speakers "
                         "(default DATA/speechocean762/MANIFEST.csv).")
    ap.add_argument("--speakers-csv", type=Path, default=None,
                    help="The run's --speakers-csv (default: the manifest's files, which splits these speakers alike).")
    ap.add_argument("--exclude-speakers", default=",".join(HELD_OUT_SPEAKERS),
                    help="The held-out speakers (the run's --exclude-speakers), comma-separated.")
    ap.add_argument("--holdout-per-speaker", type=int, default=2, help="The run's --holdout-per-speaker.")
    ap.add_argument("--rows", type=int, default=None, help="Rows on the page (default 6; --quick: 2).")
    ap.add_argument("--seconds", type=float, default=None, help="Clip length cap in seconds (default 6; --quick: 2).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads.")
    ap.add_argument("--out", type=Path, default=None,
                    help="Output folder (default benchmarks/results/audio/conversion_listening; --quick: a new "
                         "temporary folder).")
    ap.add_argument("--quick", action="store_true", help="A smoke run: 2 rows of 2 s clips, into a temporary folder.")
    args = ap.parse_args(argv)
    args.rows = args.rows if args.rows is not None else (2 if args.quick else 6)
    args.seconds = args.seconds if args.seconds is not None else (2.0 if args.quick else 6.0)
    if args.rows < 1 or args.seconds <= 0:
        ap.error("--rows must be >= 1 and --seconds > 0")
    args.manifest = args.manifest or args.data / "speechocean762" / "MANIFEST.csv"
    args.exclude_speakers = tuple(s.strip() for s in args.exclude_speakers.split(",") if s.strip())
    if not args.manifest.is_file():
        ap.error(f"--manifest {args.manifest}: no such file (check --data)")
    if args.weights is not None and not args.weights.is_dir():
        ap.error(f"--weights {args.weights}: no such folder")
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="vqcodec-conversion-listening-")) if args.quick else DEFAULT_OUT
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.weights is not None:  # before vqcodec is imported (run() imports it)
        os.environ["VQCODEC_WEIGHTS_DIR"] = str(args.weights.resolve())
    res = run(args)  # creates --out/media
    (args.out / "listening.json").write_text(json.dumps(res, indent=1) + "\n")
    write_html(args.out, res)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
