"""Learning curve of an image training run: validation PSNR against CPU hours.

Reads the run's log.jsonl (written by `vqcodec train image`), prints a markdown table and writes
learning_curve.png and learning_curve.md to --out. CPU hours = wall hours x cores used by the run
(--cores), unless the log carries `cpu_s` (CPU seconds), as the shipped v3 model's log does.

Two validation formats are read: v3's (Kodak, PSNR at every stage count) and v4's (held-out training
photos: PSNR at some stage counts, and PSNR / raw bits per pixel with a rate-distortion depth per block
at some qualities). For v4 logs the table also says whether the recipe "keeps improving": the largest
drop of the PSNR at any stage count between two evaluations at least --gap CPU hours apart (the image
model issue allows 0.05 dB).

    python benchmarks/learning_curve.py benchmarks/results/training/image_log.jsonl --cores 2
    python benchmarks/learning_curve.py ~/vqcodec-runs/image_v4/log.jsonl --cores 1 --out benchmarks/results/image_v4
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _rows(records: list[dict], cores: float, key: str) -> list[dict]:
    """One row per validation: step, CPU hours, named figures {label: dB} and rd points [(bpp, dB)]."""
    rows = []
    for r in records:
        if key not in r:
            continue
        v = r[key]
        hours = r["cpu_s"] / 3600 if "cpu_s" in r else r.get("time_s", float("nan")) / 3600 * cores
        if "stages" in v:  # v4 format
            figures = {f"s={s}": p for s, p in zip(v["stages"], v["psnr"])}
            figures.update({f"q{q}": p for q, p in zip(v["qualities"], v["rd_psnr"])})
            rd = list(zip(v["rd_bpp"], v["rd_psnr"]))
        else:
            figures = {f"s={s + 1}": p for s, p in enumerate(v["psnr"])}
            rd = []
        rows.append({"step": r["step"], "hours": hours, "figures": figures, "rd": rd, "usage": min(v["usage"])})
    return rows


def largest_drop(rows: list[dict], gap: float) -> tuple[float, str]:
    """The largest fall of the PSNR at any stage count from an evaluation to one at least `gap` hours later:
    (dB, where)."""
    worst, where = 0.0, ""
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            if b["hours"] - a["hours"] < gap:
                continue
            for name, value in a["figures"].items():
                if not name.startswith("s="):  # a quality's PSNR moves with its rate; stage counts are fixed rates
                    continue
                drop = value - b["figures"].get(name, value)
                if drop > worst:
                    worst, where = drop, f"{name}, step {a['step']} -> {b['step']}"
    return worst, where


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", type=Path, help="log.jsonl of a training run")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--cores", type=float, default=2.0, help="cores the run used (CPU hours = wall hours x cores)")
    ap.add_argument("--live", action="store_true", help="the live weights' validation (live_val) instead of the "
                                                        "exported (averaged) weights'")
    ap.add_argument("--gap", type=float, default=0.5, help="CPU hours between evaluations for the drop check")
    args = ap.parse_args(argv)
    records = [json.loads(line) for line in args.log.read_text().splitlines() if line.strip()]
    rows = _rows(records, args.cores, "live_val" if args.live else "val")
    if not rows:
        raise SystemExit(f"learning_curve.py: error: no validation records in {args.log}")
    names = list(rows[0]["figures"])
    lines = [f"Validation during training (log `{args.log.name}`{', live weights' if args.live else ''}); command: "
             f"`python benchmarks/learning_curve.py {args.log} --cores {args.cores:g}`. s=N: every block N stages; "
             f"qN: a depth per block chosen at quality N (raw bpp beside it). PSNR in dB.", "",
             "| step | CPU h | " + " | ".join(names) + " | min code usage |",
             "|---|---|" + "---|" * len(names) + "---|"]
    for r in rows:
        bpp = {f"q{q}": b for q, (b, _) in zip([n[1:] for n in names if n.startswith("q")], r["rd"])}
        cells = [f"{r['figures'][n]:.2f}" + (f" ({bpp[n]:.2f} bpp)" if n in bpp else "") for n in names]
        lines.append(f"| {r['step']} | {r['hours']:.2f} | " + " | ".join(cells) + f" | {100 * r['usage']:.0f}% |")
    drop, where = largest_drop(rows, args.gap)
    lines += ["", f"Largest drop of the PSNR at a stage count between evaluations >= {args.gap:g} CPU h apart: {drop:.3f} dB"
              + (f" ({where})" if where else "") + "."]
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "learning_curve.md").write_text(table)
    print(table)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    stage_names = [n for n in names if n.startswith("s=")]
    for n in sorted({stage_names[0], stage_names[len(stage_names) // 2], stage_names[-1]}, key=stage_names.index):
        ax.plot([r["hours"] for r in rows], [r["figures"][n] for r in rows], marker="o", label=n.replace("s=", "") + " stages")
    ax.set_xlabel("CPU hours")
    ax.set_ylabel("validation PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "learning_curve.png", dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
