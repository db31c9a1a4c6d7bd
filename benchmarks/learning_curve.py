"""Learning curve of an image training run: Kodak validation PSNR at every stage count against CPU hours.

Reads the run's log.jsonl (written by `vqcodec train image --val-data ...`), prints a markdown table and
writes learning_curve.png and learning_curve.md to --out. CPU hours = wall hours x cores used by the run
(--cores, default 2), unless the log carries `cpu_s` (CPU seconds), as the shipped model's log does.

    python benchmarks/learning_curve.py benchmarks/results/training/image_log.jsonl
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", type=Path, help="log.jsonl of a training run")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--cores", type=float, default=2.0)
    args = ap.parse_args(argv)
    vals = [r for r in map(json.loads, args.log.read_text().splitlines()) if "val" in r]
    if not vals:
        raise SystemExit(f"learning_curve.py: error: no validation records in {args.log}")
    rows = []
    for r in vals:
        # cpu_s (CPU seconds, written into the shipped log) wins over wall time_s x --cores
        hours = r["cpu_s"] / 3600 if "cpu_s" in r else r.get("time_s", float("nan")) / 3600 * args.cores
        rows.append((r["step"], hours, r["val"]["psnr"], r["val"]["usage"]))
    S = len(rows[0][2])
    lines = [f"Validation on Kodak (first 6 images) during training (log `{args.log.name}`); "
             f"command: `python benchmarks/learning_curve.py {args.log}`.", "",
             "| step | CPU h | " + " | ".join(f"PSNR s={s + 1}" for s in range(S)) + " | min code usage |",
             "|---|---|" + "---|" * S + "---|"]
    for step, hours, psnr, usage in rows:
        lines.append(f"| {step} | {hours:.2f} | " + " | ".join(f"{p:.2f}" for p in psnr) + f" | {100 * min(usage):.0f}% |")
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "learning_curve.md").write_text(table)
    print(table)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for s in (0, S // 2 - 1, S - 1):
        ax.plot([r[1] for r in rows], [r[2][s] for r in rows], marker="o", label=f"{s + 1} stages")
    ax.set_xlabel("CPU hours")
    ax.set_ylabel("Kodak PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "learning_curve.png", dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
