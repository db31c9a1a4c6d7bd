#!/usr/bin/env python
"""Speaker conversion as the VQ-VAE paper did it (issue 23): the conversion model (`vqcodec.audio.conversion`)
scored against the issue's targets.

    python benchmarks/conversion_eval.py --model RUN/conversion_model.safetensors
    python benchmarks/conversion_eval.py --model M --speakers-csv RUN_DATA/conversion_speakers.csv --pairs 10
    python benchmarks/conversion_eval.py --model M --quick --skip similarity,wer,dnsmos   # CI smoke run

Data (`--data`, default the shared speech folder). The speakers are those of `--manifest` (default
speechocean762/MANIFEST.csv: columns file, speaker, gender; many utterances per speaker). The held-out split is
the trainer's own (`vqcodec.training.conversion.ConversionTask._split` on the same `--speakers-csv`,
`--exclude-speakers` and `--holdout-per-speaker`; without `--speakers-csv` a list of the manifest's files is
used, which gives the same split for these speakers because the trainer splits each speaker's files by a CRC of
their names alone). `--exclude-speakers` (default: the 8 speechocean762 voices the issue holds out) must not be
in the model's speaker table: they were never trained on.

1. By id: `--pairs` (source, target) pairs, half same-gender and half cross-gender (interleaved), seeded. Source:
   a held-out utterance (never trained on) of a training speaker of the manifest; target: another training
   speaker of the manifest, given by its id (the model's speaker table: embedding and `speaker_f0`).
2. By reference: the same sources; targets: the held-out speakers, each given by ONE reference utterance (its
   `embed_speaker` embedding and the `pitch_stats` of its pitch labels), scored against its OTHER utterances.
3. Speaker similarity: Resemblyzer's pretrained `VoiceEncoder` (`preprocess_wav` at 16 kHz). A converted clip's
   embedding is compared (cosine) with the normalised mean embedding of the target speaker's utterances (by
   reference: all but the reference) and with the source speaker's (all but the source utterance); a pair
   succeeds when the target is the closer. Control: the unconverted source scored the same way. Also reported:
   top-1 identification (the target's mean is the closest of all the manifest speakers' means) and the
   target's rank, since a clip that sounds like nobody (a degraded output) can be closer to the target than
   to the source without sounding like the target.
4. Pitch-only baseline: WORLD (pyworld: DIO + StoneMask at 5 ms, as the model's pitch labels, CheapTrick, D4C,
   synthesis) resynthesis of the source with its voiced log2 f0 moved to the target's mean / std, the same
   mapping as the model's `retarget_f0`; scored the same way. Issue target: same-gender pairs beat it.
5. Content: word error rate of pocketsphinx's bundled US-English recogniser (default config, 16 kHz int16 PCM)
   (a fresh decoder per clip) on `--wer-clips` LJSpeech clips (native English, transcripts from metadata.csv)
   before and after conversion by id to training speakers of the manifest (every clip to each): all of them by
   default, or the first `--wer-targets` of a seeded F/M interleave. The WER depends on the target voice (from
   39 % to 57 % over the 28 speechocean762 training voices with audio-conversion-v2), so a figure from two voices
   moves by several points with the seed; the default pools every voice. Text normalised to upper case letters,
   apostrophes and single spaces; WER = word edits / reference words over all clips and targets, also given per
   target (`wer.per_target`).
6. Naturalness: DNSMOS P.835 overall (`speech_metrics.Dnsmos`), mean over the converted clips against the
   mean over their (unique) unconverted sources; also for the baseline.
7. f0: the median log2 f0 over the voiced points of each converted clip (the model's own pitch labels:
   `vqcodec.audio.pitch.pitch_labels`) against the target's log2-f0 mean (the table's row, or the
   reference's stats) and the source's (its pitch labels): the fraction of pairs closer to the target.

Metrics whose packages are missing (or named in `--skip`) are left out with a note. Outputs in --out (default
benchmarks/results/audio/conversion/): conversion_eval.json (everything, per pair too) and conversion_eval.md.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import random
import re
import sys
import tempfile
import time
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # sibling helper modules (speech_metrics), also when imported rather than run
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

RATE = 16000
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "speech"
HELD_OUT_SPEAKERS = ("so762_0739", "so762_0960", "so762_1336", "so762_1372", "so762_2016", "so762_2022",
                     "so762_2380", "so762_2488")
TOOLS = ("similarity", "wer", "dnsmos")
INSTALL = {"similarity": 'pip install resemblyzer "setuptools<81"', "wer": "pip install pocketsphinx",
           "dnsmos": "pip install speechmos onnxruntime librosa requests"}
GOALS = {"by_id": 0.80, "by_reference": 0.60, "wer_points": 25.0, "dnsmos_drop": 0.5}
F0_FRAME_MS = 5.0  # the WORLD baseline's analysis hop: the model's pitch-label spacing (80 samples)
F0_GAP_ST = 2.0  # pairs whose source and target log2-f0 means differ by at least this many semitones


# ------------------------------------------------------------------------------------------- scorers
@dataclass
class Tools:
    """The external scorers, each None when it cannot run (`notes` says why).

    embed: 16 kHz float32 (T,) -> (E,) speaker embedding. transcribe: 16 kHz float32 (T,) -> recognised text.
    dnsmos: 16 kHz float32 (T,) -> DNSMOS P.835 overall MOS (1..5)."""

    embed: Callable[[np.ndarray], np.ndarray] | None = None
    transcribe: Callable[[np.ndarray], str] | None = None
    dnsmos: Callable[[np.ndarray], float] | None = None
    notes: dict[str, str] = field(default_factory=dict)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_tools(skip: tuple[str, ...] = (), threads: int = 1) -> Tools:
    """The scorers of TOOLS that can run here (those in `skip` left out), with a note for each that cannot."""
    tools = Tools()
    for name in TOOLS:
        if name in skip:
            tools.notes[name] = "left out on request (--skip)"
            continue
        try:
            if name == "similarity":
                tools.embed = _resemblyzer()
            elif name == "wer":
                tools.transcribe = _pocketsphinx()
            else:
                import speech_metrics

                scorer = speech_metrics.Dnsmos(threads=threads)
                tools.dnsmos = lambda x, s=scorer: s(x)["ovrl"]
        except Exception as exc:  # noqa: BLE001 - any failure to load a tool = that metric is skipped
            tools.notes[name] = f"cannot run: {_first_line(exc)} ({INSTALL[name]})"
    return tools


def _resemblyzer() -> Callable[[np.ndarray], np.ndarray]:
    with warnings.catch_warnings():  # webrtcvad imports pkg_resources
        warnings.simplefilter("ignore")
        from resemblyzer import VoiceEncoder, preprocess_wav
    encoder = VoiceEncoder("cpu", verbose=False)

    def embed(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        try:
            wav = preprocess_wav(x, source_sr=RATE)  # level-normalised, long silences trimmed (webrtcvad)
        except Exception:  # noqa: BLE001 - a clip the VAD cannot read: embed it as it is
            wav = x
        if len(wav) < RATE // 4:  # (almost) nothing voiced: embed the whole clip rather than a scrap
            wav = x
        return np.asarray(encoder.embed_utterance(wav), dtype=np.float64)

    return embed


def _pocketsphinx() -> Callable[[np.ndarray], str]:
    from pocketsphinx import Decoder

    Decoder(loglevel="FATAL")  # fails here, not mid-run, when the bundled model is missing

    def transcribe(x: np.ndarray) -> str:
        # A fresh decoder (bundled en-us acoustic model, dictionary and language model) per clip: its live
        # cepstral mean normalisation carries over between utterances, so a shared one makes each result
        # depend on the clips before it (about 0.5 s per clip).
        decoder = Decoder(loglevel="FATAL")
        pcm = (np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    return transcribe


# ------------------------------------------------------------------------------------------- text
def normalise_text(text: str) -> str:
    """Upper case; anything but letters and apostrophes becomes a space; single spaces, trimmed."""
    return " ".join(re.sub(r"[^A-Z']+", " ", text.upper()).split())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, words in the reference) after `normalise_text`."""
    r, h = normalise_text(reference).split(), normalise_text(hypothesis).split()
    prev = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        cur = [i] + [0] * len(h)
        for j, hw in enumerate(h, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rw != hw))
        prev = cur
    return prev[-1], len(r)


# ------------------------------------------------------------------------------------------- data
@dataclass
class Corpus:
    """Who is who. genders: speaker -> "f" / "m". sources: training speakers of the manifest (in the model's
    table) -> their held-out utterances. utterances: every manifest speaker -> all its files. new: the held-out
    speakers (never trained on) -> their files. split: counts of the trainer's split."""

    genders: dict[str, str]
    sources: dict[str, list[Path]]
    utterances: dict[str, list[Path]]
    new: dict[str, list[Path]]
    split: dict = field(default_factory=dict)


def read_manifest(manifest: Path) -> dict[Path, tuple[str, str]]:
    """{file: (speaker, gender "f"/"m"/"?")} of a manifest CSV (columns file relative to its folder, speaker,
    gender)."""
    out = {}
    with manifest.open(newline="") as f:
        for row in csv.DictReader(f):
            g = (row.get("gender") or "?").strip().lower()[:1] or "?"
            out[(manifest.parent / row["file"].strip()).resolve()] = (row["speaker"].strip(), g)
    if not out:
        raise SystemExit(f"{manifest} lists no files")
    return out


def load_corpus(data: Path, manifest: Path, speakers_csv: Path | None, exclude: tuple[str, ...], holdout: int,
                table: tuple[str, ...]) -> Corpus:
    """The trainer's split of the training speakers (its own code), restricted to the manifest's speakers."""
    from vqcodec.training.conversion import ConversionTask, TrainConversionConfig, read_speaker_files

    files = read_manifest(manifest)
    with tempfile.TemporaryDirectory() as tmp:
        if speakers_csv is None:  # the manifest's files as the trainer's speakers CSV (absolute paths)
            speakers_csv = Path(tmp) / "speakers.csv"
            with speakers_csv.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["file", "speaker"])
                w.writerows([str(p), s] for p, (s, _) in sorted(files.items()))
        cfg = TrainConversionConfig(data=str(data), out=tmp, speakers_csv=str(speakers_csv),
                                    holdout_per_speaker=holdout, exclude_speakers=tuple(exclude))
        train, held = ConversionTask(cfg)._split()
        everything = read_speaker_files(data, speakers_csv)
    speakers = {s for s, _ in files.values()}
    genders = {s: g for s, g in files.values()}
    utterances: dict[str, list[Path]] = {}
    for p, s in everything:
        if s in speakers:
            utterances.setdefault(s, []).append(p)
    sources: dict[str, list[Path]] = {}
    for p, s in held:
        if s in speakers and s in table:
            sources.setdefault(s, []).append(p)
    new = {s: utterances[s] for s in exclude if s in utterances}
    untabled = sorted({s for _, s in train if s in speakers and s not in table})
    return Corpus(genders, sources, utterances, new, {
        "training_utterances": len(train), "held_out_utterances": len(held),
        "source_speakers": len(sources), "source_utterances": sum(map(len, sources.values())),
        "new_speakers": len(new), "training_speakers_missing_from_table": untabled})


def read_transcripts(folder: Path) -> dict[Path, str]:
    """{wav: transcript} from an LJSpeech-style metadata.csv (id|text|normalised text; the last is used)."""
    meta = folder / "metadata.csv"
    out = {}
    if meta.is_file():
        for line in meta.read_text(encoding="utf-8").splitlines():
            parts = line.split("|")
            if len(parts) >= 2 and (folder / f"{parts[0]}.wav").is_file():
                out[folder / f"{parts[0]}.wav"] = parts[-1].strip()
    return out


def crc_rank(paths, salt: str) -> list[Path]:
    return sorted(paths, key=lambda p: (zlib.crc32(f"{salt}/{Path(p).name}".encode()), Path(p).name))


# ------------------------------------------------------------------------------------------- pairs
def select_pairs(sources: dict[str, list[Path]], targets: list[str], genders: dict[str, str], count: int,
                 seed: int, salt: str) -> list[dict]:
    """`count` pairs {"source": file, "source_speaker", "target", "same_gender"}: even-numbered pairs
    same-gender, odd ones cross-gender (when no such target exists for any source: the other kind); source
    utterances drawn in a seeded shuffled cycle, each target the least used of the eligible ones (random among
    ties), never the source's own speaker."""
    rng = random.Random(f"{seed}/{salt}")
    pool = [(p, s) for s in sorted(sources) for p in sources[s]]
    if not pool or not targets:
        return []
    rng.shuffle(pool)
    uses: Counter = Counter()
    pairs, at = [], 0
    for k in range(count):
        chosen = None
        for want_same in ((k % 2 == 0), (k % 2 != 0)):
            for step in range(len(pool)):
                p, s = pool[(at + step) % len(pool)]
                ok = [t for t in targets if t != s and (genders.get(t) == genders.get(s)) == want_same]
                if ok:
                    least = min(uses[t] for t in ok)
                    t = rng.choice([t for t in ok if uses[t] == least])
                    chosen, at = (p, s, t), at + step + 1
                    break
            if chosen:
                break
        if chosen is None:
            break
        p, s, t = chosen
        uses[t] += 1
        pairs.append({"source": p, "source_speaker": s, "target": t,
                      "same_gender": genders.get(t) == genders.get(s) and genders.get(s, "?") != "?"})
    return pairs


# ------------------------------------------------------------------------------------------- signal helpers
def load_clip(path: Path, method: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(samples (T,) float32 16 kHz cut to whole pitch points, f0 (T / 80,) Hz, voiced (T / 80,) float); the
    pitch track by `method` (the conversion model's `cfg.pitch`: its sources are tracked as it was trained)."""
    from vqcodec.audio.data import load_audio
    from vqcodec.audio.pitch import PITCH_HOP, pitch_labels

    x = load_audio(path)
    x = x[: x.numel() // PITCH_HOP * PITCH_HOP]
    f0, voiced = pitch_labels(x, method)
    return x, f0, voiced.float()


def median_log2_f0(y: torch.Tensor, method: str) -> float | None:
    """Median log2 f0 (octaves) over the voiced pitch-label points (`method`) of (T,) 16 kHz audio; None under
    10 voiced."""
    from vqcodec.audio.pitch import PITCH_HOP, pitch_labels

    y = y[: y.numel() // PITCH_HOP * PITCH_HOP]
    if y.numel() < 10 * PITCH_HOP:
        return None
    f0, voiced = pitch_labels(y, method)
    if int(voiced.sum()) < 10:
        return None
    return float(torch.log2(f0[voiced]).median())


def world_shift(x: np.ndarray, target_stats: tuple[float, float]) -> np.ndarray:
    """The pitch-only baseline: WORLD analysis (DIO + StoneMask at 5 ms, CheapTrick, D4C) of (T,) 16 kHz audio,
    voiced log2 f0 re-scaled from its own mean / std (`pitch_stats`) to `target_stats` (log2 mean, std),
    resynthesised; (T,) float32."""
    import pyworld

    from vqcodec.audio.conversion import pitch_stats

    a = np.ascontiguousarray(x, dtype=np.float64)
    coarse, t = pyworld.dio(a, RATE, f0_floor=50.0, f0_ceil=700.0, frame_period=F0_FRAME_MS)
    f0 = pyworld.stonemask(a, coarse, t, RATE)
    sp = pyworld.cheaptrick(a, f0, t, RATE)
    ap = pyworld.d4c(a, f0, t, RATE)
    voiced = f0 > 0
    new = f0.copy()
    if voiced.any():
        sm, ss = (float(v) for v in pitch_stats(torch.from_numpy(f0).clamp_min(1e-3), torch.from_numpy(voiced)))
        new[voiced] = 2.0 ** (target_stats[0] + target_stats[1] * (np.log2(f0[voiced]) - sm) / ss)
    y = pyworld.synthesize(new, sp, ap, RATE, F0_FRAME_MS)
    y = np.pad(y, (0, max(0, len(a) - len(y))))[: len(a)]
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


class Embeddings:
    """Speaker embeddings of files (cached) and of speakers (normalised means over files)."""

    def __init__(self, embed: Callable[[np.ndarray], np.ndarray], cap: int) -> None:
        self.embed, self.cap, self._files = embed, cap, {}

    def file(self, path: Path) -> np.ndarray:
        if path not in self._files:
            from vqcodec.audio.data import load_audio

            self._files[path] = unit(self.embed(load_audio(path).numpy()))
        return self._files[path]

    def speaker(self, files: list[Path], leave_out: tuple[Path, ...] = ()) -> np.ndarray:
        """Mean of the files' embeddings (those in leave_out excluded; at most `cap` of them, by CRC, 0: all)."""
        chosen = crc_rank([p for p in files if p not in leave_out], "conversion-eval-mean")
        if self.cap:
            chosen = chosen[: self.cap]
        if not chosen:
            raise ValueError("no utterance left for a speaker mean")
        return unit(np.mean([self.file(p) for p in chosen], axis=0))


def similarity(emb: np.ndarray, means: dict[str, np.ndarray], target: str, source: str) -> dict:
    """Cosines of a clip's embedding to the target's and the source's means (success: the target's is larger),
    and the target's rank among all the speakers' means (1: the clip is identified as the target)."""
    cos = {s: float(unit(emb) @ m) for s, m in means.items()}
    ct, cs = cos[target], cos[source]
    rank = 1 + sum(v > ct for s, v in cos.items() if s != target)
    return {"cos_target": ct, "cos_source": cs, "success": ct > cs, "target_rank": rank, "top1": rank == 1}


def f0_shift(y_log2: float | None, target_log2: float, source_log2: float) -> dict:
    if y_log2 is None:
        return {"median_f0_hz": None, "f0_closer_to_target": None, "semitones_to_target": None,
                "semitones_to_source": None}
    return {"median_f0_hz": 2.0 ** y_log2, "f0_closer_to_target": abs(y_log2 - target_log2) < abs(y_log2 - source_log2),
            "semitones_to_target": 12 * abs(y_log2 - target_log2),
            "semitones_to_source": 12 * abs(y_log2 - source_log2)}


# ------------------------------------------------------------------------------------------- the run
def _mean(values) -> float | None:
    v = [float(x) for x in values if x is not None]
    return float(np.mean(v)) if v else None


def _rate(values) -> float | None:
    v = [bool(x) for x in values if x is not None]
    return float(np.mean(v)) if v else None


def summarise_pairs(pairs: list[dict]) -> dict:
    """Success rates (all / same-gender / cross-gender), mean cosines, f0 and DNSMOS per system of scored pairs."""
    out: dict = {"pairs": len(pairs), "same_gender_pairs": sum(p["same_gender"] for p in pairs),
                 "candidates": max((p.get("candidates", 0) for p in pairs), default=0),
                 "cross_gender_pairs": sum(not p["same_gender"] for p in pairs)}
    for system in ("model", "baseline", "unconverted"):
        rows = [p[system] for p in pairs if system in p]
        same = [p[system] for p in pairs if system in p and p["same_gender"]]
        cross = [p[system] for p in pairs if system in p and not p["same_gender"]]
        s = {"success": {"all": _rate(r.get("success") for r in rows),
                         "same_gender": _rate(r.get("success") for r in same),
                         "cross_gender": _rate(r.get("success") for r in cross)},
             "cos_target": _mean(r.get("cos_target") for r in rows),
             "cos_source": _mean(r.get("cos_source") for r in rows),
             "top1": _rate(r.get("top1") for r in rows),
             "median_target_rank": _median(r.get("target_rank") for r in rows)}
        if system != "unconverted":
            gap = [p[system] for p in pairs if system in p and p.get("f0_gap_semitones", 0.0) >= F0_GAP_ST]
            s.update(f0_closer_to_target=_rate(r.get("f0_closer_to_target") for r in rows),
                     f0_closer_to_target_gap=_rate(r.get("f0_closer_to_target") for r in gap), f0_gap_pairs=len(gap),
                     median_semitones_to_target=_median(r.get("semitones_to_target") for r in rows),
                     median_semitones_to_source=_median(r.get("semitones_to_source") for r in rows),
                     dnsmos=_mean(r.get("dnsmos") for r in rows))
        out[system] = s
    return out


def _median(values) -> float | None:
    v = [float(x) for x in values if x is not None]
    return float(np.median(v)) if v else None


@torch.no_grad()
def run(args, tools: Tools | None = None) -> dict:
    """The whole evaluation (see the module docstring) -> the JSON-able result."""
    from vqcodec.audio.conversion import load_conversion_model, pitch_stats

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    tools = tools if tools is not None else load_tools(tuple(args.skip), args.threads)
    model, model_id = load_conversion_model(args.model)
    table = model.cfg.speakers
    trained_on = sorted(set(args.exclude_speakers) & set(table))
    if trained_on:
        raise SystemExit(f"{args.model} has {', '.join(trained_on)} in its speaker table: those speakers were "
                         "trained on and cannot be the held-out voices; give --exclude-speakers as the run had them")
    corpus = load_corpus(args.data, args.manifest, args.speakers_csv, tuple(args.exclude_speakers),
                         args.holdout_per_speaker, table)
    if not corpus.sources:
        raise SystemExit(f"no held-out utterance of a speaker both in {args.manifest} and in the model's table; "
                         "check --data / --speakers-csv / --holdout-per-speaker")
    table_targets = sorted(s for s in corpus.sources if s in table)  # training speakers of the manifest
    notes: list[str] = [f"{k}: {v}" for k, v in tools.notes.items()]
    emb = Embeddings(tools.embed, args.speaker_utts) if tools.embed is not None else None
    clips: dict[Path, tuple] = {}
    src_dnsmos: dict[Path, float | None] = {}

    def clip(path: Path):
        if path not in clips:
            clips[path] = load_clip(path, model.cfg.pitch)
        return clips[path]

    def dnsmos(y: np.ndarray) -> float | None:
        if tools.dnsmos is None:
            return None
        try:
            return float(tools.dnsmos(y))
        except ValueError:  # silent output
            return None

    def source_dnsmos(path: Path) -> float | None:
        if path not in src_dnsmos:
            src_dnsmos[path] = dnsmos(clip(path)[0].numpy())
        return src_dnsmos[path]

    def rel(p: Path) -> str:
        try:
            return Path(p).resolve().relative_to(Path(args.data).resolve()).as_posix()
        except ValueError:
            return str(p)

    def score_pair(pair: dict, reference: Path | None, target_stats: tuple[float, float], convert) -> dict:
        """Convert, resynthesise (baseline) and score one pair; `reference`: the by-reference target's reference
        utterance (left out of its mean), None by id."""
        x, f0, voiced = clip(pair["source"])
        src_log2 = float(pitch_stats(f0, voiced)[0])
        y = convert(x, f0, voiced)
        base = torch.from_numpy(world_shift(x.numpy(), target_stats))
        rec = {"source": rel(pair["source"]), "source_speaker": pair["source_speaker"],
               "source_gender": corpus.genders.get(pair["source_speaker"], "?"), "target": pair["target"],
               "target_gender": corpus.genders.get(pair["target"], "?"), "same_gender": pair["same_gender"],
               "seconds": round(x.numel() / RATE, 2), "target_f0_log2": list(map(float, target_stats)),
               "source_f0_log2_mean": src_log2, "f0_gap_semitones": 12 * abs(target_stats[0] - src_log2)}
        if reference is not None:
            rec["reference"] = rel(reference)
        for name, out in (("model", y), ("baseline", base)):
            r = f0_shift(median_log2_f0(out, model.cfg.pitch), target_stats[0], src_log2)
            r["dnsmos"] = dnsmos(out.numpy())
            rec[name] = r
        rec["unconverted"] = {}
        rec["source_dnsmos"] = source_dnsmos(pair["source"])
        if emb is not None:
            leave = (pair["source"],) + ((reference,) if reference is not None else ())
            means = {s: emb.speaker(files, leave) for s, files in corpus.utterances.items()}
            ids = (pair["target"], pair["source_speaker"])
            rec["model"].update(similarity(tools.embed(y.numpy()), means, *ids))
            rec["baseline"].update(similarity(tools.embed(base.numpy()), means, *ids))
            rec["unconverted"] = similarity(emb.file(pair["source"]), means, *ids)
            rec["candidates"] = len(means)
        return rec

    # 1. by id
    t0 = time.perf_counter()
    by_id = []
    for pair in select_pairs(corpus.sources, table_targets, corpus.genders, args.pairs, args.seed, "by-id"):
        t = pair["target"]
        stats = tuple(float(v) for v in model.speaker(t)[1])
        by_id.append(score_pair(pair, None, stats,
                                lambda x, f0, v, t=t: model.convert(x[None], f0[None], v[None], t)[0]))
    t_id = time.perf_counter() - t0

    # 2. by reference: one reference utterance per held-out speaker
    t0 = time.perf_counter()
    references = {}
    for s, files in sorted(corpus.new.items()):
        if len(files) < 2:
            notes.append(f"held-out speaker {s} has {len(files)} utterance(s): needs a reference and another; left out")
            continue
        ref = crc_rank(files, "conversion-eval-reference")[0]
        x, f0, voiced = clip(ref)
        mean, std = pitch_stats(f0, voiced)
        references[s] = {"file": ref, "embedding": model.embed_speaker(x[None])[0], "stats": (float(mean), float(std))}
    by_ref = []
    for pair in select_pairs(corpus.sources, sorted(references), corpus.genders, args.pairs, args.seed, "by-ref"):
        r = references[pair["target"]]
        by_ref.append(score_pair(
            pair, r["file"], r["stats"],
            lambda x, f0, v, r=r: model.convert(x[None], f0[None], v[None], r["embedding"],
                                                torch.tensor(r["stats"]))[0]))
    t_ref = time.perf_counter() - t0
    if not references:
        notes.append("no held-out speaker with two or more utterances: task 2 (by reference) not run")

    # 3. content: WER on native English clips, converted by id
    t0 = time.perf_counter()
    wer = wer_part(args, model, tools, table_targets, corpus.genders, dnsmos, rel, notes)
    t_wer = time.perf_counter() - t0

    res = {
        "command": " ".join(["python benchmarks/conversion_eval.py", *sys.argv[1:]]),
        "model": str(args.model), "model_id": model_id, "model_sha256": _sha256(args.model)[:16],
        "model_speakers": len(table), "content_bits_per_second": model.cfg.bits_per_second,
        "data": str(args.data), "manifest": str(args.manifest),
        "speakers_csv": str(args.speakers_csv) if args.speakers_csv else None,
        "holdout_per_speaker": args.holdout_per_speaker, "exclude_speakers": list(args.exclude_speakers),
        "split": corpus.split, "seed": args.seed, "threads": args.threads, "quick": bool(args.quick),
        "tools": {"similarity": "resemblyzer VoiceEncoder (pretrained GE2E), preprocess_wav, cosine",
                  "wer": "pocketsphinx Decoder, default config (bundled en-us)",
                  "dnsmos": "speech_metrics.Dnsmos (DNSMOS P.835 OVRL)",
                  "baseline": "pyworld DIO+StoneMask (5 ms), CheapTrick, D4C, synthesize; log2 f0 mean/std moved",
                  "f0": f"vqcodec.audio.pitch.pitch_labels ({model.cfg.pitch}, the model's tracker), "
                        "median log2 f0 of voiced points"},
        "skipped": tools.notes,
        "references": {s: {"file": rel(r["file"]), "f0_log2": list(r["stats"])} for s, r in references.items()},
        "by_id": {"summary": summarise_pairs(by_id), "pairs": by_id},
        "by_reference": {"summary": summarise_pairs(by_ref), "pairs": by_ref},
        "wer": wer,
        "notes": notes,
        "seconds": {"total": round(time.perf_counter() - t_start, 1), "by_id": round(t_id, 1),
                    "by_reference": round(t_ref, 1), "wer": round(t_wer, 1)},
    }
    res["naturalness"] = naturalness(res)
    res["goals"] = goals(res)
    return res


def wer_part(args, model, tools: Tools, table_targets: list[str], genders: dict, dnsmos, rel, notes: list[str]
             ) -> dict:
    """Originals and conversions by id of `--wer-clips` transcribed clips: WER of each, and DNSMOS. Also each clip
    converted into its corpus's own voice (the reference: the next clip, cyclically; the corpus is one speaker, as
    LJSpeech is): the words the content path keeps whatever the target (`wer_own_voice`, not in the target)."""
    from vqcodec.audio.conversion import pitch_stats

    transcripts = read_transcripts(args.wer_data)
    if not transcripts:
        notes.append(f"no transcribed clips (metadata.csv) in {args.wer_data}: content (WER) not measured")
        return {"clips": []}
    rng = random.Random(f"{args.seed}/wer")
    files = sorted(rng.sample(sorted(transcripts), min(args.wer_clips, len(transcripts))))
    f = [t for t in table_targets if genders.get(t) == "f"]
    m = [t for t in table_targets if genders.get(t) == "m"]
    rng.shuffle(f)
    rng.shuffle(m)
    mixed = [s for pair in zip(f, m) for s in pair] + f[len(m):] + m[len(f):]
    targets = mixed[: args.wer_targets] if args.wer_targets > 0 else mixed
    if args.wer_speakers:  # explicit table speakers (e.g. native-English LibriSpeech ones, "ls103")
        targets = [t.strip() for t in args.wer_speakers.split(",") if t.strip()]
        unknown = [t for t in targets if t not in model.cfg.speakers]
        if unknown:
            raise SystemExit(f"--wer-speakers: {unknown} are not speakers of the model's table")
    rows, edits, words, per_target = [], Counter(), Counter(), {t: [0, 0] for t in targets}
    for i, path in enumerate(files):
        x, f0, voiced = load_clip(path, model.cfg.pitch)
        text = transcripts[path]
        row = {"clip": rel(path), "text": normalise_text(text), "seconds": round(x.numel() / RATE, 2),
               "original": {"dnsmos": dnsmos(x.numpy())}, "converted": {}}
        outs = {"original": x}
        for t in targets:
            outs[t] = model.convert(x[None], f0[None], voiced[None], t)[0]
            row["converted"][t] = {"dnsmos": dnsmos(outs[t].numpy())}
        if len(files) > 1:  # its own voice, given by another clip of the corpus
            rx, rf0, rvoiced = load_clip(files[(i + 1) % len(files)], model.cfg.pitch)
            emb = model.embed_speaker(rx[None])[0]
            stats = torch.stack(pitch_stats(rf0, rvoiced))
            outs["own voice"] = model.convert(x[None], f0[None], voiced[None], emb, stats)[0]
            row["own_voice"] = {"reference": rel(files[(i + 1) % len(files)])}
        if tools.transcribe is not None:
            for key, y in outs.items():
                hyp = tools.transcribe(y.numpy())
                e, n = word_errors(text, hyp)
                group = {"original": "original", "own voice": "own_voice"}.get(key, "converted")
                slot = row[group] if group != "converted" else row["converted"][key]
                slot.update(hypothesis=normalise_text(hyp), errors=e, words=n)
                edits[group] += e
                words[group] += n
                if key in per_target:
                    per_target[key][0] += e
                    per_target[key][1] += n
        rows.append(row)
    out: dict = {"data": str(args.wer_data), "targets": targets, "clips": rows}
    if tools.transcribe is not None and words["original"]:
        out["wer_original"] = edits["original"] / words["original"]
        out["wer_converted"] = edits["converted"] / max(words["converted"], 1)
        out["increase_points"] = 100 * (out["wer_converted"] - out["wer_original"])
        if words["own_voice"]:
            out["wer_own_voice"] = edits["own_voice"] / words["own_voice"]
        out["per_target"] = {t: {"gender": genders.get(t, "?"), "wer": e / max(n, 1)}
                             for t, (e, n) in per_target.items()}
    return out


def naturalness(res: dict) -> dict:
    """Mean DNSMOS OVRL of the converted clips against their unique unconverted sources, per set and pooled."""
    out, pooled_src, pooled_conv, pooled_base = {}, {}, [], []
    for task in ("by_id", "by_reference"):
        pairs = res[task]["pairs"]
        src = {p["source"]: p["source_dnsmos"] for p in pairs}
        conv = [p["model"]["dnsmos"] for p in pairs]
        base = [p["baseline"]["dnsmos"] for p in pairs]
        out[task] = {"source": _mean(src.values()), "converted": _mean(conv), "baseline": _mean(base)}
        pooled_src.update(src)
        pooled_conv += conv
        pooled_base += base
    clips = res["wer"].get("clips", [])
    src = {c["clip"]: c["original"]["dnsmos"] for c in clips}
    conv = [v["dnsmos"] for c in clips for v in c["converted"].values()]
    out["wer_clips"] = {"source": _mean(src.values()), "converted": _mean(conv), "baseline": None}
    pooled_src.update(src)
    pooled_conv += conv
    out["all"] = {"source": _mean(pooled_src.values()), "converted": _mean(pooled_conv),
                  "baseline": _mean(pooled_base)}
    for v in out.values():
        v["difference"] = (v["converted"] - v["source"]) if v["converted"] is not None and v["source"] is not None \
            else None
    return out


def goals(res: dict) -> list[dict]:
    """The issue's targets, each {"goal", "measured", "met": True / False / None (not measured)}."""
    out = []
    for task, key, label in (("by_id", "by_id", "training speakers by id"),
                             ("by_reference", "by_reference", "held-out speakers by one reference")):
        s = res[task]["summary"]
        rate = s["model"]["success"]["all"]
        out.append({"goal": f"{label}: converted closer to the target (Resemblyzer) in >= {GOALS[key]:.0%} of pairs",
                    "measured": None if rate is None else f"{rate:.0%} of {s['pairs']}",
                    "met": None if rate is None else rate >= GOALS[key]})
    for task, label in (("by_id", "by id"), ("by_reference", "by reference")):
        s = res[task]["summary"]
        m, b = s["model"]["success"]["same_gender"], s["baseline"]["success"]["same_gender"]
        out.append({"goal": f"same-gender pairs ({label}) beat the pitch-only WORLD baseline",
                    "measured": None if m is None or b is None else
                    f"{m:.0%} vs baseline {b:.0%} ({s['same_gender_pairs']} pairs)",
                    "met": None if m is None or b is None else m > b})
    w = res["wer"]
    inc = w.get("increase_points")
    out.append({"goal": f"WER on native English rises by <= {GOALS['wer_points']:g} points",
                "measured": None if inc is None else
                f"{100 * w['wer_original']:.1f}% -> {100 * w['wer_converted']:.1f}% ({inc:+.1f} points)",
                "met": None if inc is None else inc <= GOALS["wer_points"]})
    n = res["naturalness"]["all"]
    d = n["difference"]
    out.append({"goal": f"DNSMOS OVRL of converted speech within {GOALS['dnsmos_drop']:g} of the sources'",
                "measured": None if d is None else f"{n['converted']:.2f} vs {n['source']:.2f} ({d:+.2f})",
                "met": None if d is None else d >= -GOALS["dnsmos_drop"]})
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------- report
def fmt(v, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def pct(v) -> str:
    return fmt(None if v is None else 100 * v, ".0f") + ("%" if v is not None else "")


def summary_line(res: dict) -> str:
    g = res["goals"]
    met = sum(x["met"] is True for x in g)
    measured = sum(x["met"] is not None for x in g)
    i, r = res["by_id"]["summary"], res["by_reference"]["summary"]
    w, n = res["wer"], res["naturalness"]["all"]
    wer = (f"WER {100 * w['wer_original']:.0f}% -> {100 * w['wer_converted']:.0f}%" if "wer_original" in w else
           "WER -")
    return (f"conversion_eval: by id {pct(i['model']['success']['all'])} "
            f"(baseline {pct(i['baseline']['success']['all'])}), "
            f"by reference {pct(r['model']['success']['all'])} (baseline {pct(r['baseline']['success']['all'])}), "
            f"{wer}, DNSMOS {fmt(n['source'])} -> {fmt(n['converted'])}; {met} of {measured} measured targets met "
            f"({len(g)} in all); {res['seconds']['total']:.0f} s")


def markdown(res: dict) -> str:
    mark = {True: "met", False: "**not met**", None: "not measured"}
    lines = [
        "# Speaker conversion (issue 23)",
        "",
        f"`{res['command']}`",
        "",
        f"Model `{res['model_id']}` ({res['model']}, sha256 {res['model_sha256']}…; {res['model_speakers']} table "
        f"speakers; content code {res['content_bits_per_second']:.0f} bit/s). The trainer's split of "
        f"{'`' + res['speakers_csv'] + '`' if res['speakers_csv'] else 'the manifest' + chr(39) + 's files'}: "
        f"{res['split']['training_utterances']} training / {res['split']['held_out_utterances']} held-out utterances "
        f"({res['holdout_per_speaker']} per speaker); sources: {res['split']['source_utterances']} held-out utterances "
        f"of {res['split']['source_speakers']} training speakers of the manifest; {res['split']['new_speakers']} "
        f"held-out speakers ({', '.join(res['exclude_speakers'])}). Seed {res['seed']}, {res['threads']} thread(s), "
        f"{res['seconds']['total']:.0f} s.",
        "",
        "## Targets of the issue",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    lines += [f"| {g['goal']} | {g['measured'] or '-'} | {mark[g['met']]} |" for g in res["goals"]]
    lines += ["", "## Speaker similarity and pitch", "",
              "Success: the clip's Resemblyzer embedding is closer (cosine) to the target speaker's mean than to the "
              "source speaker's (source utterance left out). `unconverted`: the source itself (a control: near 0 %). "
              "Top-1: the target's mean is the closest of all the manifest's speakers' means (median rank of the "
              "target in brackets); it separates \"sounds like the target\" from \"no longer sounds like the "
              "source\", which also counts as a success. "
              "f0 closer: the clip's median log2 f0 is nearer the target's mean than the source's, over all pairs / "
              f"over the pairs whose source and target means differ by >= {F0_GAP_ST:g} semitones (their count). "
              "DNSMOS: OVRL.",
              "",
              "| task | system | pairs | success all | same-gender | cross-gender | top-1 (rank) | cos target "
              "| cos source "
              "| f0 closer | semitones to target / source | DNSMOS |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for task, label in (("by_id", "by id"), ("by_reference", "by reference")):
        s = res[task]["summary"]
        for system in ("model", "baseline", "unconverted"):
            r = s[system]
            lines.append(
                f"| {label} | {system if system != 'baseline' else 'WORLD pitch shift'} | {s['pairs']} "
                f"({s['same_gender_pairs']} same) | {pct(r['success']['all'])} | {pct(r['success']['same_gender'])} "
                f"| {pct(r['success']['cross_gender'])} | {pct(r['top1'])} ({fmt(r['median_target_rank'], '.0f')} "
                f"of {s['candidates']}) | {fmt(r['cos_target'])} | {fmt(r['cos_source'])} "
                f"| {pct(r.get('f0_closer_to_target'))} / {pct(r.get('f0_closer_to_target_gap'))} "
                f"({r.get('f0_gap_pairs', '-')}) | {fmt(r.get('median_semitones_to_target'), '.1f')} / "
                f"{fmt(r.get('median_semitones_to_source'), '.1f')} | {fmt(r.get('dnsmos'))} |")
    w = res["wer"]
    lines += ["", "## Content (pocketsphinx WER) and naturalness (DNSMOS OVRL)", "",
              f"{len(w.get('clips', []))} clips of {w.get('data', '-')}, each converted by id to "
              f"{', '.join(w.get('targets', [])) or '-'}.", "",
              "| | WER | DNSMOS source | DNSMOS converted | difference | DNSMOS WORLD baseline |",
              "|---|---:|---:|---:|---:|---:|"]
    nat = res["naturalness"]
    wer_o, wer_c = w.get("wer_original"), w.get("wer_converted")
    lines.append(f"| transcribed clips: original | {pct(wer_o)} | {fmt(nat['wer_clips']['source'])} | | | |")
    lines.append(f"| transcribed clips: converted | {pct(wer_c)} | | {fmt(nat['wer_clips']['converted'])} "
                 f"| {fmt(nat['wer_clips']['difference'], '+.2f')} | |")
    if w.get("wer_own_voice") is not None:
        lines.append(f"| transcribed clips: in their own voice (the next clip as reference: the content path alone) "
                     f"| {pct(w['wer_own_voice'])} | | | | |")
    for key, label in (("by_id", "by-id pairs"), ("by_reference", "by-reference pairs"), ("all", "all conversions")):
        v = nat[key]
        lines.append(f"| {label} | | {fmt(v['source'])} | {fmt(v['converted'])} | {fmt(v['difference'], '+.2f')} "
                     f"| {fmt(v['baseline'])} |")
    per = sorted((w.get("per_target") or {}).items(), key=lambda kv: (kv[1]["wer"], kv[0]))
    if per:
        lines += ["", "WER of the converted clips per target voice (best first): "
                  + ", ".join(f"{t} ({v['gender']}) {pct(v['wer'])}" for t, v in per) + "."]
    lines += ["", "## Notes", ""]
    lines += [f"- {n}" for n in res["notes"]] or ["- every metric ran"]
    lines += [
        "- Resemblyzer's encoder was trained on other corpora (LibriSpeech, VoxCeleb); it is one proxy for \"sounds "
        "like the target\", not a listening test. The source mean leaves out the source utterance, so the "
        "unconverted control is not trivially 0 %.",
        "- The pitch-only baseline keeps the source's spectral envelope: it moves pitch exactly (f0 closer near "
        "100 %) but not timbre; the model must beat it on similarity to show that it converts more than pitch.",
        "- pocketsphinx is a weak recogniser (high WER even on the originals); the difference in points is what "
        "counts. Pairs are few: each rate moves by several points between seeds.",
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="A conversion model file (conversion_model.safetensors).")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="The training data folder (--data of the run).")
    ap.add_argument("--manifest", type=Path, default=None,
                    help="CSV (file relative to its folder, speaker, gender) of the speakers to evaluate "
                         "(default DATA/speechocean762/MANIFEST.csv).")
    ap.add_argument("--speakers-csv", type=Path, default=None, help="The run's --speakers-csv (default: the manifest's "
                    "files, which splits these speakers alike).")
    ap.add_argument("--exclude-speakers", default=",".join(HELD_OUT_SPEAKERS),
                    help="The held-out speakers (the run's --exclude-speakers), comma-separated.")
    ap.add_argument("--holdout-per-speaker", type=int, default=2, help="The run's --holdout-per-speaker.")
    ap.add_argument("--wer-data", type=Path, default=None,
                    help="Folder of transcribed native-English wavs with metadata.csv (default DATA/ljspeech).")
    ap.add_argument("--pairs", type=int, default=40, help="(source, target) pairs per task.")
    ap.add_argument("--wer-clips", type=int, default=12)
    ap.add_argument("--wer-targets", type=int, default=0,
                    help="Training speakers each WER clip is converted to: the first N of a seeded F/M interleave "
                         "(0: every training speaker of the manifest; --quick: 2).")
    ap.add_argument("--wer-speakers", default="",
                    help="Comma list of table speakers the WER clips are converted to instead (any of the model's, "
                         "e.g. LibriSpeech's ls103: is the lost content the target's voice or the conversion?).")
    ap.add_argument("--speaker-utts", type=int, default=0,
                    help="Utterances averaged per speaker mean embedding (0: all).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip", default="", help=f"Comma list of metrics to leave out: {', '.join(TOOLS)}.")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "audio" / "conversion")
    ap.add_argument("--quick", action="store_true", help="A smoke run: 4 pairs per task, 2 WER clips, 4 utterances "
                    "per speaker mean.")
    args = ap.parse_args(argv)
    args.manifest = args.manifest or args.data / "speechocean762" / "MANIFEST.csv"
    args.wer_data = args.wer_data or args.data / "ljspeech"
    args.exclude_speakers = tuple(s.strip() for s in args.exclude_speakers.split(",") if s.strip())
    args.skip = tuple(s.strip() for s in args.skip.split(",") if s.strip())
    unknown = sorted(set(args.skip) - set(TOOLS))
    if unknown:
        ap.error(f"--skip {','.join(unknown)}: choose from {', '.join(TOOLS)}")
    if args.quick:
        args.pairs, args.wer_clips = min(args.pairs, 4), min(args.wer_clips, 2)
        args.wer_targets = min(args.wer_targets, 2) if args.wer_targets > 0 else 2
        args.speaker_utts = min(args.speaker_utts, 4) if args.speaker_utts else 4
    for name in ("model", "manifest"):
        if not getattr(args, name).is_file():
            ap.error(f"--{name} {getattr(args, name)}: no such file")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import pyworld  # noqa: F401 - the pitch labels, the baseline and the f0 check need it
    except Exception as exc:  # noqa: BLE001
        raise SystemExit(f"pyworld is needed for the pitch labels: {_first_line(exc)} (pip install pyworld-prebuilt)")
    res = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "conversion_eval.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    md = args.out / "conversion_eval.md"
    md.write_text(markdown(res))
    print(md)
    print(summary_line(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
