"""Learning curve of an audio training run: held-out STOI, PESQ-WB and mel distance at each validated stage
count against CPU hours, from the run's log.jsonl (`vqcodec train audio` and `vqcodec train audio-decoder`
validate every --val-every steps on utterances held out of the training folder), and, with --codec-run, the
DNSMOS overall of exports of the run measured through the codec by benchmarks/audio_rate_distortion.py.

    python benchmarks/audio_learning_curve.py runs/audio/log.jsonl
    python benchmarks/audio_learning_curve.py benchmarks/results/training/audio_log.jsonl --out benchmarks/results/audio
    python benchmarks/audio_learning_curve.py benchmarks/results/training/audio_decoder_F_log.jsonl \
        --codec-run 0.43:benchmarks/results/audio/decoder_E_step2300/audio_rd.json --out DIR

Writes audio_learning_curve.md and audio_learning_curve.png to --out (default benchmarks/results/audio/).
CPU hours come from the log's cpu_s (the run's CPU seconds over all its invocations). Logs the audio tasks
wrote before 0.6.0 restarted that count in each resumed process (a task field overrode the loop's), so a drop
adds the count reached before it: for those, the CPU spent between a process's last record and its stop is not
counted. Without cpu_s: wall time x --cores.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def validation_rows(log: Path, cores: float) -> list[dict]:
    """One row per validation record: step, cpu_h, and the per-stage-count metrics of `val`."""
    rows = []
    offset, last = 0.0, 0.0  # CPU seconds of the earlier processes of a resumed run; the last count seen
    for line in log.read_text().splitlines():
        r = json.loads(line)
        if "cpu_s" in r:
            if r["cpu_s"] < last:
                offset += last
            last = r["cpu_s"]
        if "val" not in r or not isinstance(r["val"], dict):
            continue
        hours = (offset + r["cpu_s"]) / 3600 if "cpu_s" in r else r.get("time_s", float("nan")) / 3600 * cores
        rows.append({"step": r["step"], "cpu_h": hours, **r["val"]})
    return rows


def codec_run_points(specs: list[str]) -> list[dict]:
    """--codec-run CPU_H:PATH -> [{"cpu_h", "path", "dnsmos": {quality: DNSMOS overall}, "pesq_wb": {...}}],
    vqcodec's rows of an audio_rate_distortion.py run (all sets together)."""
    points = []
    for spec in specs:
        hours, _, path = spec.partition(":")
        doc = json.loads(Path(path).read_text())
        settings = doc["codecs"]["vqcodec"]["settings"]
        points.append({"cpu_h": float(hours), "path": path,
                       "dnsmos": {e["setting"]: e.get("dnsmos_ovrl") for e in settings},
                       "pesq_wb": {e["setting"]: e.get("pesq_wb") for e in settings},
                       "original": (doc.get("original") or {}).get("dnsmos_ovrl")})
    return points


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", type=Path, help="log.jsonl of an audio training run")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "audio")
    ap.add_argument("--cores", type=float, default=1.0, help="cores of a run whose log lacks cpu_s")
    ap.add_argument("--codec-run", action="append", default=[], metavar="CPU_H:AUDIO_RD_JSON",
                    help="an export of the run at CPU_H hours measured by audio_rate_distortion.py: its DNSMOS "
                         "overall per quality joins the plot and the table (repeatable)")
    args = ap.parse_args(argv)
    rows = validation_rows(args.log, args.cores)
    if not rows:
        print(f"audio_learning_curve.py: error: no validation records in {args.log}", file=sys.stderr)
        return 1
    stages = rows[0]["stages"]
    raw = rows[0].get("kbps") or [None] * len(stages)
    head = " | ".join(f"{s} st.{'' if k is None else f' ({k:.2f} kbps raw)'}: STOI / PESQ / mel"
                      for s, k in zip(stages, raw))
    lines = [f"Held-out validation of `{args.log}` (command: `python benchmarks/audio_learning_curve.py {args.log}`).", "",
             f"| step | CPU h | {head} |", "|---|---|" + "---|" * len(stages)]
    for r in rows:
        cells = " | ".join(f"{r['stoi'][i]:.3f} / {r['pesq_wb'][i]:.2f} / {r['mel_distance'][i]:.3f}"
                           for i in range(len(stages)))
        lines.append(f"| {r['step']} | {r['cpu_h']:.2f} | {cells} |")
    points = codec_run_points(args.codec_run)
    if points:
        qualities = sorted(set.intersection(*(set(p["dnsmos"]) for p in points)), key=int)  # measured in every run
        lines += ["", "Through the codec (`benchmarks/audio_rate_distortion.py` runs on its bundled clips; DNSMOS "
                  "overall / PESQ-WB per quality):", "",
                  "| CPU h | " + " | ".join(f"q{q}" for q in qualities) + " | originals' DNSMOS | run |",
                  "|---|" + "---|" * (len(qualities) + 2)]
        for p in points:
            cells = " | ".join("" if p["dnsmos"].get(q) is None else
                               f"{p['dnsmos'][q]:.2f} / {p['pesq_wb'][q]:.2f}" for q in qualities)
            orig = "" if p["original"] is None else f"{p['original']:.2f}"
            lines.append(f"| {p['cpu_h']:.2f} | {cells} | {orig} | `{p['path']}` |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audio_learning_curve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if points else 2, figsize=(15 if points else 10, 4))
    if points:
        ax = axes[2]
        for q in qualities:
            xs = [p["cpu_h"] for p in points if p["dnsmos"].get(q) is not None]
            ax.plot(xs, [p["dnsmos"][q] for p in points if p["dnsmos"].get(q) is not None], "s-", label=f"q{q}")
        origs = [p["original"] for p in points if p["original"] is not None]
        if origs:
            ax.axhline(origs[-1], color="black", linestyle="--", linewidth=0.9, label="uncoded originals")
        ax.set_xlabel("CPU hours")
        ax.set_ylabel("DNSMOS overall (through the codec)")
        ax.grid(alpha=0.3)
        ax.legend()
    for ax, key, label in ((axes[0], "stoi", "STOI"), (axes[1], "pesq_wb", "PESQ-WB")):
        for i, s in enumerate(stages):
            ax.plot([r["cpu_h"] for r in rows], [r[key][i] for r in rows], "o-", label=f"{s} stages")
        ax.set_xlabel("CPU hours")
        ax.set_ylabel(f"{label} (held-out validation)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"audio training: held-out {args.log.name}")
    fig.tight_layout()
    fig.savefig(args.out / "audio_learning_curve.png", dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
