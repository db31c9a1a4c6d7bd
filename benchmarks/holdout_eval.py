"""Validate a released image model exactly as `vqcodec train image --holdout N` validates its runs.

Writes one log line ({"step": ..., "time_s": 0, "val": evaluate_rd(...)}) per given step, so that
`benchmarks/pilot_compare.py` can put a released model (e.g. the shipped v3) beside training runs.

    python benchmarks/holdout_eval.py --model codec/weights/image_vqvae.safetensors --steps 500,1000 \
        --out benchmarks/results/training/v4_pilots/v3_shipped.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from vqcodec.image.data import load_rgb
from vqcodec.image.model import load_image_model
from vqcodec.training.image_model import VAL_QUALITIES, VAL_STAGES, centre_crop, evaluate_rd, split_holdout

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="released image model (.safetensors)")
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "photos")
    ap.add_argument("--holdout", type=int, default=12)
    ap.add_argument("--val-crop", type=int, default=384)
    ap.add_argument("--steps", default="0", help="comma list of steps to label the line(s) with")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    _, held = split_holdout(args.data, args.holdout)
    images = [centre_crop(load_rgb(f), args.val_crop) for f in held]
    model, model_id = load_image_model(args.model)
    val = {**evaluate_rd(model, images, VAL_STAGES, VAL_QUALITIES), "model_id": model_id}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps({"step": int(s), "time_s": 0.0, "val": val}) + "\n"
                                for s in args.steps.split(",")))
    print(json.dumps(val))
    return 0


if __name__ == "__main__":
    sys.exit(main())
