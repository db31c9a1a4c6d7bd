"""Mean bpp and PSNR per quality of the image codec on training photos (never Kodak): how even the quality scale is.

    python benchmarks/quality_scale.py --data ../shared/data/photos                  # 12 photos, every 4th quality
    python benchmarks/quality_scale.py --data DIR --plans 1:0,2:0.3,2:0.06,2:0       # given refinement plans
    python benchmarks/quality_scale.py --data DIR --quick                             # 1 photo, 3 qualities

Photos: every `len(files) // images`-th file of --data in name order, cropped to their top-left 768x512 (or
less). Each is encoded at every quality of the ladder (1, then every --every up to the top) with the shipped
codec (or `$VQCODEC_WEIGHTS_DIR`'s), decoded, and the file's bits per pixel and the RGB PSNR are averaged over
the photos. With --plans, each plan LAYERS:LAMBDA replaces the scale's plan (refinement codecs only): every
block at full VQ depth, LAYERS refinement layers, the last one rate-distortion optimised at LAMBDA (0: whole).
Writes quality_scale.json and quality_scale.md to --out (default: a temporary folder with --quick, else
benchmarks/results/). Times are not reported (shared machine).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from metrics import psnr  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def pick_photos(folder: Path, count: int) -> list[Path]:
    """`count` files spread evenly over `folder`'s images in name order."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {folder}")
    step = max(1, len(files) // count)
    return files[::step][:count]


def parse_plans(spec: str) -> list[tuple[int, float]]:
    """"1:0,2:0.3" -> [(1, 0.0), (2, 0.3)]."""
    plans = []
    for item in spec.split(","):
        layers, lam = item.split(":")
        plans.append((int(layers), float(lam)))
    return plans


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of training photos (never an evaluation set)")
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--every", type=int, default=4, help="quality step of the ladder")
    ap.add_argument("--plans", default=None, help="LAYERS:LAMBDA,... refinement plans instead of qualities")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="1 photo, 3 qualities (smoke run)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from vqcodec.image.input import prepare_image
    from vqcodec.image.rate_control import RefinedPlan
    from vqcodec.registry import default_codec

    codec = default_codec("image")
    top = codec.max_quality
    photos = pick_photos(args.data, 1 if args.quick else args.images)
    if args.plans:
        if codec.refinement is None:
            raise SystemExit("--plans needs a codec with a refinement model")
        points = [("plan", p) for p in parse_plans(args.plans)]
    else:
        ladder = [1, top // 2, top] if args.quick else sorted({1, *range(args.every, top + 1, args.every), top})
        points = [("quality", q) for q in ladder]
    sums = {str(p): [0.0, 0.0] for _, p in points}
    t0 = time.perf_counter()
    scale_plan = codec.plan
    for f in photos:
        with Image.open(f) as im:
            rgb = prepare_image(im, alpha="error").rgb[:512, :768]
        for kind, p in points:
            if kind == "plan":
                codec.plan = lambda q, p=p: RefinedPlan(None, p[0], p[1])  # noqa: E731 - one plan for every quality
                data = codec.encode(rgb, top)
            else:
                codec.plan = scale_plan
                data = codec.encode(rgb, p)
            out = codec.decode(data)
            sums[str(p)][0] += 8 * len(data) / (rgb.shape[0] * rgb.shape[1]) / len(photos)
            sums[str(p)][1] += psnr(rgb, out) / len(photos)
    codec.plan = scale_plan
    rows = [{"kind": kind, "point": list(p) if kind == "plan" else p, "bpp": sums[str(p)][0],
             "psnr": sums[str(p)][1]} for kind, p in points]
    cmd = "python benchmarks/quality_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"command": cmd, "model_id": codec.model_id, "photos": [f.name for f in photos],
              "seconds": time.perf_counter() - t0, "rows": rows}
    out = args.out or (Path(tempfile.mkdtemp(prefix="vqcodec-scale-")) if args.quick else HERE / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality_scale.json").write_text(json.dumps(result, indent=2))
    head = "| layers:lambda |" if args.plans else "| quality |"
    lines = [f"Image codec `{codec.model_id}` on {len(photos)} photos of `{args.data.name}` (768x512 crops), mean "
             f"per photo (command: `{cmd}`).", "", head + " bpp | PSNR dB |", "|---:|---:|---:|"]
    for r in rows:
        point = f"{r['point'][0]}:{r['point'][1]:g}" if r["kind"] == "plan" else str(r["point"])
        lines.append(f"| {point} | {r['bpp']:.3f} | {r['psnr']:.2f} |")
    table = "\n".join(lines) + "\n"
    (out / "quality_scale.md").write_text(table)
    print(table)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
