"""Bytes of the same index maps under two integer image priors (does a retrained prior pay?).

    python benchmarks/prior_bytes.py --old codec/weights/image_prior_v3.safetensors \
        --new codec/weights/image_prior.safetensors              # 6 Kodak images x qualities 30, 60, 100
    python benchmarks/prior_bytes.py --old A --new B --quick       # one 256x256 crop, one quality

The index maps come from the installed default codec's encoder (a depth per block at each quality); both
priors code exactly those maps (vqcodec.coding.depth, raw mode allowed), so the difference is the priors'
alone. Writes prior_bytes.json to --out (default benchmarks/results/).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT / "data" / "kodak"
IMAGES = ("kodim01", "kodim05", "kodim12", "kodim15", "kodim20", "kodim23")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, required=True, help="integer prior .safetensors (the reference)")
    ap.add_argument("--new", type=Path, required=True, help="integer prior .safetensors (the candidate)")
    ap.add_argument("--qualities", default="30,60,100")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from vqcodec.registry import default_codec
    from vqcodec.coding.depth import encode_depth_stages
    from vqcodec.image.prior_integer import load_integer_prior

    codec = default_codec("image")
    priors = {"old": load_integer_prior(args.old), "new": load_integer_prior(args.new)}
    qualities = [100] if args.quick else [int(q) for q in args.qualities.split(",")]
    rows, total = [], {"old": 0, "new": 0}
    for name in IMAGES[:1] if args.quick else IMAGES:
        rgb = np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB"))
        if args.quick:
            rgb = np.ascontiguousarray(rgb[:256, :256])
        cand = codec.analyse(rgb)
        for q in qualities:
            idx = codec.encode_indices(None, q, candidates=cand)
            size = {k: sum(map(len, encode_depth_stages(p, idx))) for k, p in priors.items()}
            for k in total:
                total[k] += size[k]
            rows.append({"image": name, "quality": q, **size, "change_pct": 100 * (size["new"] / size["old"] - 1)})
            print(f"{name} q{q}: {size['old']} -> {size['new']} bytes ({rows[-1]['change_pct']:+.2f} %)")
    change = 100 * (total["new"] / total["old"] - 1)
    print(f"all: {total['old']} -> {total['new']} bytes ({change:+.2f} %)")
    doc = {"command": " ".join(["python", "benchmarks/prior_bytes.py", *(argv or sys.argv[1:])]),
           "old": str(args.old), "new": str(args.new), "total": total, "change_pct": change, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prior_bytes.json").write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
