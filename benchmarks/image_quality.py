"""Image model quality per stage count on Kodak, before entropy coding.

For each stage count s = 1..S: raw bpp (9*s/f^2), PSNR on the 8-bit rounded RGB output (mean of per-image
PSNR), MS-SSIM, and the fraction of each stage's codes used over the whole dataset. A model with refinement
levels (0.5.0's) also gets the PSNR of each level (its first 2 stages plus the residual rounded to the level's
step, the decoder told the level, as the codec decodes) and of its unquantized latents (the decoder's ceiling).
Writes `image_quality.json` and `image_quality.md` to --out (default benchmarks/results/).

    python benchmarks/image_quality.py                 # all 24 Kodak images, shipped model
    python benchmarks/image_quality.py --quick         # 2 images: smoke run
    python benchmarks/image_quality.py --model runs/image/image_model.safetensors
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from metrics import ms_ssim, psnr  # noqa: E402

DEFAULT_DATASET = HERE.parent / "data" / "kodak"

JPEG_KODAK = [(0.221, 23.85), (0.327, 26.67), (0.423, 28.14), (0.508, 29.14), (0.660, 30.49), (0.786, 31.42),
              (0.906, 32.17), (1.037, 32.91), (1.239, 33.92)]  # Pillow JPEG q5..q60, measured by rate_distortion.py


def jpeg_psnr_at(bpp: float) -> float | None:
    """JPEG's Kodak PSNR at `bpp`, linear in log-rate between measured points (None outside the range)."""
    rates = np.log([r for r, _ in JPEG_KODAK])
    if not rates[0] <= np.log(bpp) <= rates[-1]:
        return None
    return float(np.interp(np.log(bpp), rates, [p for _, p in JPEG_KODAK]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="image model weights (default: the shipped model)")
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--quick", action="store_true", help="2 images: a smoke run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", type=int, default=None,
                    help="residual-VQ beam width (default: the codec's, ENCODER_BEAM; 1 = greedy)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from vqcodec.image.input import prepare_image
    from vqcodec.image.model import ENCODER_BEAM, load_image_model, pad_to_multiple
    from vqcodec.image.codec import DEFAULT_MODEL_PATH
    from PIL import Image

    path = args.model or DEFAULT_MODEL_PATH
    args.beam = args.beam or ENCODER_BEAM
    model, model_id = load_image_model(path)
    S, K, f = model.cfg.num_stages, model.cfg.num_codes, model.factor

    files = sorted(p for p in args.dataset.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"))
    if args.quick:
        files = files[:2]
    psnrs = np.zeros((len(files), S))
    ssims = np.zeros((len(files), S))
    counts = np.zeros((S, K))
    t0 = time.perf_counter()
    for i, p in enumerate(tqdm(files, desc="image quality", unit="img", file=sys.stderr)):
        with Image.open(p) as im:
            rgb = prepare_image(im, alpha="error").rgb
        x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, f)
        for s in range(S):
            idx = model.encode_indices(padded, s + 1, beam=args.beam)  # as the codec encodes quality s + 1
            x_hat = model.decode_indices(idx)[0, :, :h, :w]
            out = (x_hat.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
            psnrs[i, s] = psnr(rgb, out)
            ssims[i, s] = ms_ssim(rgb, out)
        counts += np.stack([np.bincount(m.reshape(-1).numpy(), minlength=K) for m in idx[0]])  # quality S
    refinement = None
    if model.cfg.refine_levels:
        from vqcodec.training.image_model import REFINE_BASE_STAGES, evaluate_refinement

        ims = []
        for p in files:
            with Image.open(p) as im:
                rgb = prepare_image(im, alpha="error").rgb
            h8, w8 = rgb.shape[0] // f * f, rgb.shape[1] // f * f
            ims.append(torch.from_numpy(rgb[:h8, :w8].copy()).permute(2, 0, 1))
        ev = evaluate_refinement(model, ims)
        refinement = {"base_stages": REFINE_BASE_STAGES, "levels": [
            {"level": j + 1, "step": st, "psnr": float(v)} for j, (st, v) in enumerate(zip(ev["steps"], ev["psnr"]))],
            "unquantized_psnr": float(ev["unquantized"])}
    rows = []
    for s in range(S):
        raw = 9 * (s + 1) / f**2
        jp = jpeg_psnr_at(raw)
        rows.append({
            "stages": s + 1,
            "raw_bpp": raw,
            "psnr": float(psnrs[:, s].mean()),
            "ms_ssim": float(ssims[:, s].mean()),
            "jpeg_psnr_at_raw_bpp": jp,
            "code_usage": float((counts[s] > 0).mean()),
        })
    result = {"model": str(path), "model_id": model_id, "dataset": str(args.dataset), "images": len(files), "beam": args.beam,
              "seconds": time.perf_counter() - t0, "levels": rows, "refinement": refinement}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "image_quality.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"Image model `{model_id}` on {len(files)} images of `{args.dataset.name}`, before entropy coding, "
        f"residual-VQ beam {args.beam} (command: `python benchmarks/image_quality.py"
        f"{' --quick' if args.quick else ''}{'' if args.beam == ENCODER_BEAM else f' --beam {args.beam}'}`).",
        "",
        "| stages | raw bpp | PSNR (dB) | JPEG PSNR at that bpp | MS-SSIM | codes used (this stage) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        jp = f"{r['jpeg_psnr_at_raw_bpp']:.2f}" if r["jpeg_psnr_at_raw_bpp"] is not None else "n/a (below JPEG's range)"
        lines.append(f"| {r['stages']} | {r['raw_bpp']:.3f} | {r['psnr']:.2f} | {jp} | {r['ms_ssim']:.4f} | "
                     f"{100 * r['code_usage']:.1f}% |")
    if refinement is not None:
        lines += ["", f"Refinement levels over {refinement['base_stages']} stages (residual rounded to the level's step, "
                  "images cropped to multiples of 8; no rate: the codec's entropy-coded rate is in the "
                  "rate-distortion benchmark):", "", "| level | step | PSNR (dB) |", "|---|---|---|"]
        lines += [f"| {r['level']} | {r['step']:g} | {r['psnr']:.2f} |" for r in refinement["levels"]]
        lines.append(f"| unquantized | | {refinement['unquantized_psnr']:.2f} |")
    table = "\n".join(lines) + "\n"
    (args.out / "image_quality.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
