#!/usr/bin/env python
"""Compare speech decoders on the same indices: the base model's own decoder and decoder-stage runs.

    python benchmarks/audio_decoder_pilot.py --data ~/vqcodec-runs/data/speech_train \
        --decoder base --decoder ctrl=~/vqcodec-runs/audio_dec_ctrl/audio_decoder.safetensors \
        --decoder hn=~/vqcodec-runs/audio_dec_hn/audio_decoder.safetensors --out DIR
    python benchmarks/audio_decoder_pilot.py --clips data/speech/vctk ...   # other clips
    python benchmarks/audio_decoder_pilot.py --quick --clips DIR --base B --decoder base --out DIR  # CI smoke run

Clips: by default the utterances a decoder-stage run holds out of --data (`split_holdout(..., --holdout)`,
the same ones its validation uses), first --seconds of each; `--clips DIR` takes every file of DIR instead
(evaluation sets: only for final reports). Each clip is encoded once with the base model (`--base`, default
the shipped one) and decoded by every decoder at each stage count in --stages, whole clip in one pass (no
entropy coding: the rate is the stage count's raw rate, the same for every decoder).

Scores (benchmarks/speech_metrics.py, on the 16 kHz output, no alignment needed: the decoders add no delay):
DNSMOS P.835 overall / signal / background, STOI, PESQ-WB, log-mel distance, median f0 error in cents and
voiced/unvoiced F1 (DIO + StoneMask), means over clips. Outputs in --out: pilot.json, pilot.md (table),
spectrograms.png (the loudest 2 s of the first clip: original, then each decoder at the highest stage count).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from speech_metrics import SpeechScorer  # noqa: E402
from vqcodec.audio.data import list_audio, load_audio, split_holdout  # noqa: E402
from vqcodec.audio.decoders import load_audio_decoder  # noqa: E402
from vqcodec.audio.hn_decoder import HNDecoder  # noqa: E402
from vqcodec.audio.model import SAMPLE_RATE, load_audio_model  # noqa: E402
from vqcodec.metrics.audio import score  # noqa: E402
from vqcodec.weights.io import WEIGHTS_DIR  # noqa: E402


def clips_of(args: argparse.Namespace) -> list[tuple[str, torch.Tensor]]:
    if args.clips:
        files = list_audio(args.clips)
    else:
        _, files = split_holdout(list_audio(args.data), args.holdout)
    out = []
    for p in files[: args.max_clips]:
        x = load_audio(p)[: int(args.seconds * SAMPLE_RATE)]
        x = x[: x.numel() // 320 * 320]
        if x.numel():
            out.append((p.name, x))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="a decoder run's --data (its held-out utterances are the clips)")
    p.add_argument("--holdout", type=int, default=10)
    p.add_argument("--clips", type=Path, help="score every file of this folder instead")
    p.add_argument("--max-clips", type=int, default=40)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--base", type=Path, default=WEIGHTS_DIR / "audio_vqvae.safetensors")
    p.add_argument("--decoder", action="append", required=True,
                   help="NAME=PATH of an audio_decoder.safetensors, or 'base' (the base model's own decoder)")
    p.add_argument("--stages", default="3,6,16")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true", help="2 clips of 2 s, stages 1 and 2 (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.max_clips, args.seconds, args.stages = 2, 2.0, "1,2"
    if not args.clips and not args.data:
        p.error("give --data (held-out utterances) or --clips")
    torch.set_num_threads(args.threads)
    base, _ = load_audio_model(args.base)
    decoders = {}
    for spec in args.decoder:
        if spec == "base":
            decoders["base"] = base.decoder
        else:
            name, _, path = spec.partition("=")
            decoders[name] = load_audio_decoder(Path(path).expanduser(), args.base)[0]
    stages = [int(s) for s in args.stages.split(",")]
    scorer = SpeechScorer(skip=("visqol",), threads=args.threads, f0_method="dio")
    clips = clips_of(args)
    rows: dict[str, dict[int, list[dict]]] = {n: {s: [] for s in stages} for n in decoders}
    originals = []
    shown: dict[str, np.ndarray] = {}
    for ci, (key, x) in enumerate(clips):
        ref = x.numpy().astype(np.float64)
        originals.append(scorer.original(key, ref))
        idx = base.encode_indices(x[None])
        for name, dec in decoders.items():
            for s in stages:
                with torch.no_grad():
                    z = base.quantizer.decode(idx[:, :s].transpose(1, 2))
                    if isinstance(dec, HNDecoder) and dec.hn_cfg.residual:  # its gate reads the stage count
                        y = dec(z, torch.full(z.shape[:2], s, dtype=torch.int64))
                    else:
                        y = dec(z)
                    y = y.clamp(-1, 1)[0]
                deg = y.numpy().astype(np.float64)
                r = {**scorer.score(key, ref, deg, 0), **score(x, y, SAMPLE_RATE)}
                rows[name][s].append(r)
                if ci == 0 and s == max(stages):
                    shown[name] = deg
        print(f"{ci + 1}/{len(clips)} {key}", file=sys.stderr)

    def mean(rs: list[dict], k: str) -> float | None:
        v = [r[k] for r in rs if r.get(k) is not None]
        return float(np.mean(v)) if v else None

    keys = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "stoi", "pesq_wb", "mel_distance", "f0_cents", "vuv_f1")
    summary = {n: {s: {k: mean(rows[n][s], k) for k in keys} for s in stages} for n in decoders}
    orig = {k: mean(originals, k) for k in ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak")}
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"clips": [k for k, _ in clips], "stages": stages, "original": orig, "decoders": summary,
           "paths": args.decoder, "base": str(args.base)}
    (args.out / "pilot.json").write_text(json.dumps(doc, indent=1))
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    missing = "".join(f"; {m} skipped: {why}" for m, why in scorer.skipped.items())
    lines = [f"{len(clips)} clips; original DNSMOS ovrl/sig/bak {fmt(orig['dnsmos_ovrl'])} / {fmt(orig['dnsmos_sig'])} / "
             f"{fmt(orig['dnsmos_bak'])}{missing}", "",
             "| decoder | stages | DNSMOS ovrl | sig | bak | STOI | PESQ-WB | mel | f0 cents | V/UV F1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in decoders:
        for s in stages:
            e = summary[n][s]
            lines.append(f"| {n} | {s} | " + " | ".join(fmt(e[k]) for k in keys) + " |")
    (args.out / "pilot.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if clips:
        from speech_figures import loudest_window, spectrogram_grid

        x0 = clips[0][1].numpy()
        a, b = loudest_window(x0, SAMPLE_RATE, 2.0)
        panels = [("original", x0[a:b])] + [(f"{n} ({max(stages)} stages)", v[a:b]) for n, v in shown.items()]
        spectrogram_grid(args.out / "spectrograms.png", panels, SAMPLE_RATE,
                         f"{clips[0][0]}: the loudest 2 s, each decoder on the same indices", t0=a / SAMPLE_RATE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
