"""Compare image training runs (pilots) at equal steps on their validation rate-distortion curves.

Each run's log.jsonl holds, per validation, PSNR against raw bits per pixel with a depth per block chosen
at several qualities (v4 validation format, see `vqcodec.training.image_model.evaluate_rd`). For every
validation step the runs share, this prints the BD-rate (PCHIP over the overlapping PSNR range, raw index
bits: 9 per present index, before entropy coding) of each run against the first, the PSNR at full depth,
and the run's training speed (CPU seconds per step from the log's time_s x --cores).

    python benchmarks/pilot_compare.py ~/vqcodec-runs/pilots/A_crop/log.jsonl ~/vqcodec-runs/pilots/B_rd_depthin/log.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics import bd_rate  # noqa: E402


def _validations(path: Path, key: str) -> dict[int, dict]:
    out = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if key in r and "rd_bpp" in r[key]:
            out[r["step"]] = {**r[key], "time_s": r["time_s"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", type=Path, nargs="+", help="log.jsonl of each run; the first is the anchor")
    ap.add_argument("--live", action="store_true", help="compare the live weights instead of the averaged ones")
    ap.add_argument("--cores", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    args = ap.parse_args(argv)
    key = "live_val" if args.live else "val"
    runs = {(p.parent.name if p.name == "log.jsonl" else p.stem): _validations(p, key) for p in args.logs}
    anchor = next(iter(runs))
    steps = sorted(set.intersection(*(set(v) for v in runs.values())))
    if not steps:
        raise SystemExit("pilot_compare.py: error: the runs share no validation step")
    lines = [f"Runs against `{anchor}` at equal steps ({'live' if args.live else 'exported'} weights); command: "
             f"`python benchmarks/pilot_compare.py {' '.join(str(p) for p in args.logs)}`.", "",
             "| step | run | BD-rate raw bpp vs anchor | PSNR at each full depth (dB) | CPU s/step |", "|---|---|---|---|---|"]
    for step in steps:
        a = runs[anchor][step]
        for name, vals in runs.items():
            v = vals[step]
            try:
                bd = f"{bd_rate(a['rd_bpp'], a['rd_psnr'], v['rd_bpp'], v['rd_psnr'], method='pchip'):+.2f} %"
            except ValueError as e:
                bd = f"n/a ({e})"[:60]
            depth = ", ".join(f"{s}: {p:.2f}" for s, p in zip(v["stages"], v["psnr"]))
            lines.append(f"| {step} | {name} | {bd} | {depth} | {v['time_s'] * args.cores / step:.3f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
