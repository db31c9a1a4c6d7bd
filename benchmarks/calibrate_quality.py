"""Set the image quality scale's two constants on the training photos (never on Kodak).

    python benchmarks/calibrate_quality.py --data ../shared/data/photos            # 8 photos
    python benchmarks/calibrate_quality.py --data ../shared/data/photos --quick    # 1 small crop, 4 lambdas

The quality scale (codec/image/rate_control.py) maps quality 1..99 log-linearly onto a Lagrange multiplier
between LAMBDA_AT_1 and LAMBDA_AT_99 (quality 100: lambda 0, every block at full depth). A scale is useful
where neighbouring qualities give different files, so its ends are set where the codec's curve stops
moving:
- LAMBDA_AT_1: the smallest lambda of the sweep at which >= 99 % of all blocks stop at depth 1 (a larger
  lambda changes nothing: every block already takes one stage);
- LAMBDA_AT_99: the largest lambda of the sweep whose mean PSNR is within 0.05 dB of lambda 0 (a smaller
  one buys less than 0.05 dB).
Each photo is centre-cropped to 768x512 (the Kodak size; portrait photos are turned), analysed once at the
default effort, and for every lambda of a log grid the depths are chosen, the file is written and decoded,
and bpp (from the file's bytes), PSNR and the share of depth-1 blocks are recorded. Writes
quality_calibration.json and .md to --out (default benchmarks/results/).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from metrics import psnr  # noqa: E402

PSNR_SLACK_DB = 0.05
DEPTH1_SHARE = 0.99


def centre_crop(rgb: np.ndarray, h: int = 512, w: int = 768) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3): portrait images turned to landscape, then the centre crop (smaller
    images are returned whole)."""
    if rgb.shape[0] > rgb.shape[1]:
        rgb = np.ascontiguousarray(rgb.transpose(1, 0, 2))
    top, left = max(0, (rgb.shape[0] - h) // 2), max(0, (rgb.shape[1] - w) // 2)
    return np.ascontiguousarray(rgb[top:top + h, left:left + w])


def sweep(codec, rgb: np.ndarray, lambdas: list[float]) -> list[dict]:
    """One photo: bpp, PSNR and depth-1 share at every lambda (0.0 included by the caller)."""
    from vqcodec.image.rate_control import choose_depths, depth_maps

    h, w = rgb.shape[:2]
    c = codec.analyse(rgb)
    rows = []
    for lam in lambdas:
        depths = choose_depths(c.errors, lam)
        idx = depth_maps(c.paths, depths, c.height, c.width).to(torch.int64)
        data = codec.write_indices(idx, h, w)
        rec = codec.render(idx, h, w)
        rows.append({"lambda": lam, "bpp": 8 * len(data) / (h * w), "psnr": psnr(rgb, rec),
                     "depth1_share": float((depths == 1).float().mean())})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of training photos (never Kodak)")
    ap.add_argument("--images", type=int, default=8, help="photos used (N spread evenly over the name order)")
    ap.add_argument("--quick", action="store_true", help="one 384x256 crop, 4 lambdas (CI smoke run)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from PIL import Image

    from vqcodec.registry import default_codec
    from vqcodec.image import rate_control
    from vqcodec.image.data import list_images

    paths = list_images(args.data)
    if "kodak" in str(args.data).lower():
        ap.error("the quality scale is set on training photos, never on Kodak")
    n_images = 1 if args.quick else args.images
    grid = np.logspace(1.0, -5.0, 4 if args.quick else 19).tolist()
    crop = (256, 384) if args.quick else (512, 768)
    lambdas = grid + [0.0]
    codec = default_codec("image")
    t0 = time.perf_counter()
    per_image = {}
    for p in paths[:: max(1, len(paths) // n_images)][:n_images]:
        rgb = centre_crop(np.asarray(Image.open(p).convert("RGB")), *crop)
        per_image[p.name] = sweep(codec, rgb, lambdas)
    mean = [{k: float(np.mean([rows[i][k] for rows in per_image.values()])) for k in ("bpp", "psnr", "depth1_share")}
            | {"lambda": lam} for i, lam in enumerate(lambdas)]
    top_psnr = mean[-1]["psnr"]
    at_1 = min((m["lambda"] for m in mean[:-1] if m["depth1_share"] >= DEPTH1_SHARE), default=grid[0])
    at_99 = max((m["lambda"] for m in mean[:-1] if m["psnr"] >= top_psnr - PSNR_SLACK_DB), default=grid[-1])
    doc = {"command": " ".join(["python", "benchmarks/calibrate_quality.py", *(argv or sys.argv[1:])]),
           "images": list(per_image), "seconds": time.perf_counter() - t0,
           "rule": {"LAMBDA_AT_1": f"smallest lambda with >= {DEPTH1_SHARE:.0%} depth-1 blocks",
                    "LAMBDA_AT_99": f"largest lambda within {PSNR_SLACK_DB} dB of lambda 0's mean PSNR"},
           "found": {"LAMBDA_AT_1": at_1, "LAMBDA_AT_99": at_99},
           "shipped": {"LAMBDA_AT_1": rate_control.LAMBDA_AT_1, "LAMBDA_AT_99": rate_control.LAMBDA_AT_99},
           "mean": mean, "per_image": per_image}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality_calibration.json").write_text(json.dumps(doc, indent=1))
    lines = [f"# Quality scale calibration ({len(per_image)} training photos, {crop[1]}x{crop[0]} centre crops)", "",
             f"Command: `{doc['command']}` ({doc['seconds']:.0f} s, 2-core CPU shared with other work).", "",
             f"- LAMBDA_AT_1 = {at_1:.3g} ({doc['rule']['LAMBDA_AT_1']}); shipped {rate_control.LAMBDA_AT_1:.3g}",
             f"- LAMBDA_AT_99 = {at_99:.3g} ({doc['rule']['LAMBDA_AT_99']}); shipped {rate_control.LAMBDA_AT_99:.3g}",
             "", "| lambda | bpp | PSNR dB | depth-1 blocks |", "|---:|---:|---:|---:|"]
    lines += [f"| {m['lambda']:.3g} | {m['bpp']:.3f} | {m['psnr']:.2f} | {m['depth1_share']:.1%} |" for m in mean]
    (args.out / "quality_calibration.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not math.isfinite(top_psnr):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
