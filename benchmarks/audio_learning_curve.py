"""Learning curve of an audio training run: held-out STOI, PESQ-WB and mel distance at each validated stage
count against CPU hours, from the run's log.jsonl (`vqcodec train audio` validates every --val-every steps
on utterances held out of the training folder).

    python benchmarks/audio_learning_curve.py runs/audio/log.jsonl
    python benchmarks/audio_learning_curve.py benchmarks/results/training/audio_log.jsonl --out benchmarks/results/audio

Writes audio_learning_curve.md and audio_learning_curve.png to --out (default benchmarks/results/audio/).
CPU hours come from the log's cpu_s (process CPU seconds), else wall time x --cores.
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
    for line in log.read_text().splitlines():
        r = json.loads(line)
        if "val" not in r or not isinstance(r["val"], dict):
            continue
        hours = r["cpu_s"] / 3600 if "cpu_s" in r else r.get("time_s", float("nan")) / 3600 * cores
        rows.append({"step": r["step"], "cpu_h": hours, **r["val"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", type=Path, help="log.jsonl of an audio training run")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "audio")
    ap.add_argument("--cores", type=float, default=1.0, help="cores of a run whose log lacks cpu_s")
    args = ap.parse_args(argv)
    rows = validation_rows(args.log, args.cores)
    if not rows:
        print(f"audio_learning_curve.py: error: no validation records in {args.log}", file=sys.stderr)
        return 1
    stages = rows[0]["stages"]
    head = " | ".join(f"{s} st. ({k:.2f} kbps raw): STOI / PESQ / mel" for s, k in zip(stages, rows[0]["kbps"]))
    lines = [f"Held-out validation of `{args.log}` (command: `python benchmarks/audio_learning_curve.py {args.log}`).", "",
             f"| step | CPU h | {head} |", "|---|---|" + "---|" * len(stages)]
    for r in rows:
        cells = " | ".join(f"{r['stoi'][i]:.3f} / {r['pesq_wb'][i]:.2f} / {r['mel_distance'][i]:.3f}"
                           for i in range(len(stages)))
        lines.append(f"| {r['step']} | {r['cpu_h']:.2f} | {cells} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audio_learning_curve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "stoi", "STOI"), (axes[1], "pesq_wb", "PESQ-WB")):
        for i, s in enumerate(stages):
            ax.plot([r["cpu_h"] for r in rows], [r[key][i] for r in rows], "o-", label=f"{s} stages")
        ax.set_xlabel("CPU hours")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"audio training: held-out {args.log.name}")
    fig.tight_layout()
    fig.savefig(args.out / "audio_learning_curve.png", dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
