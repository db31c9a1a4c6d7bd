"""Which quality layers could take an image model past 36 dB, and at what rate? (issue 20, "a higher top")

On a trained model's frozen encoder and decoder, adds layers after the first B stages (B = --base-stages) and
measures mean PSNR on the held-out training photos (the trainer's split, 384x384 centres; Kodak is not looked
at) against bits per pixel. The layers are fitted on random crops of the training photos, never on the
held-out ones:

- `vq64`: more residual stages like the model's own (512 codes over the whole 64-dim latent, k-means),
  9 bits per latent each;
- `vq{d}`: product layers: the residual cut into sub-vectors of d dims, one 512-code codebook per sub-vector
  position (k-means), 9 * 64 / d bits per latent each;
- `ref`: the codec's refinement layers (`vqcodec.quantization.scalar_refinement`: steps 2^-SHIFT, halving per
  layer) range-coded for real under per-dim tables fitted on the training crops (`vqcodec.coding.refinement`),
  one stream per held-out image and layer: bits per pixel of the actual streams;
- `sq`: the residual rounded to a uniform step (one for all dims), coded under a per-dim histogram of the
  training crops' symbols (cross-entropy of the held-out symbols: what an adaptive-free static model costs);
  `sq-ctx`: the same symbols under histograms of scale classes, the class of each (stage-1 code, dim) from
  the training residuals' mean |r| (a context the decoder has; `ctx_bits`).

Rates are raw bits (9 per VQ index, no prior) for the model's own stages and the VQ layers, and the
cross-entropy for `sq`; bits per pixel = bits per latent / 64 (8 x 8 pixels per latent). Also reports the
decoder's PSNR on the unquantized latents (the ceiling of any layer scheme on this decoder).

    python benchmarks/high_rate_layers.py --model ~/vqcodec-runs/image_v4/image_model.safetensors \
        --out benchmarks/results/training/high_rate_layers
    python benchmarks/high_rate_layers.py --plot A/high_rate_layers.json B/high_rate_layers.json --out DIR
        # one figure (DIR/high_rate_layers.png) of the curves of earlier runs, named by their folders
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

from vqcodec.coding.refinement import ROW_BUCKETS, encode_refinement_grid, fit_tables, grid_contexts
from vqcodec.image.data import load_rgb
from vqcodec.quantization.scalar_refinement import (CONTEXTS, layer_alphabet, layer_contexts, refine_symbols,
                                                    refinement_values)
from vqcodec.image.model import ImageVQVAE, load_image_model
from vqcodec.training.image_model import centre_crop, split_holdout

HERE = Path(__file__).resolve().parent
PIXELS_PER_LATENT = 64


def kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    """(N, d) float32 -> (k, d) centroids (Lloyd, k-means++-free: k random points, empty clusters re-seeded)."""
    c = x[torch.randperm(x.shape[0], generator=gen)[:k]].clone()
    for _ in range(iters):
        a = nearest(x, c)
        sums = torch.zeros_like(c).index_add_(0, a, x)
        counts = torch.bincount(a, minlength=k).float()
        empty = counts == 0
        c = torch.where(empty[:, None], x[torch.randint(0, x.shape[0], (k,), generator=gen)], sums / counts.clamp(min=1)[:, None])
    return c


def nearest(x: torch.Tensor, c: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """(N, d), (k, d) -> (N,) int64 index of the nearest centroid."""
    out = []
    c2 = (c * c).sum(1)
    for i in range(0, x.shape[0], chunk):
        xi = x[i:i + chunk]
        out.append((c2[None] - 2 * xi @ c.T).argmin(1))
    return torch.cat(out)


class VQLayer:
    """A product VQ layer: the 64-dim residual cut into 64/d sub-vectors, one k-code codebook each."""

    def __init__(self, fit: torch.Tensor, d: int, k: int, iters: int, gen: torch.Generator) -> None:
        self.d = d
        self.books = [kmeans(fit[:, j:j + d].contiguous(), k, iters, gen) for j in range(0, fit.shape[1], d)]
        self.bits = len(self.books) * math.log2(k)

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        """(N, 64) residual -> (N, 64) its reconstruction."""
        return torch.cat([b[nearest(r[:, j * self.d:(j + 1) * self.d].contiguous(), b)]
                          for j, b in enumerate(self.books)], 1)


def sq_bits(fit_sym: torch.Tensor, held_sym: torch.Tensor) -> float:
    """Mean bits per latent of held-out integer symbols (N, D) under per-dim histograms of the fit symbols
    (add-half smoothing over the union's range)."""
    lo = int(min(fit_sym.min(), held_sym.min()))
    hi = int(max(fit_sym.max(), held_sym.max()))
    total = 0.0
    for j in range(fit_sym.shape[1]):
        counts = torch.bincount(fit_sym[:, j] - lo, minlength=hi - lo + 1).double() + 0.5
        p = counts / counts.sum()
        total += -torch.log2(p[held_sym[:, j] - lo]).sum().item()
    return total / held_sym.shape[0]


def ctx_bits(fit_r: torch.Tensor, fit_ctx: torch.Tensor, held_r: torch.Tensor, held_ctx: torch.Tensor, step: float,
             contexts: int = 512, classes: int = 24, prior: float = 20.0) -> float:
    """Mean bits per latent of the held-out residuals (N, D) rounded to `step`, coded with a context the decoder
    has (the stage-1 code, (N,) int64): each (context, dim) gets the fit residuals' mean |r| (shrunk towards
    the dim's overall mean with `prior` pseudo-counts), which picks one of `classes` log-spaced scale classes,
    and each class has its own symbol histogram fitted on the fit residuals (a scale mixture, as a hyperprior
    codec's entropy model, with the scale read off the VQ code instead of a side channel)."""
    d = fit_r.shape[1]
    counts = torch.bincount(fit_ctx, minlength=contexts).double()[:, None]
    sums = torch.zeros(contexts, d, dtype=torch.float64).index_add_(0, fit_ctx, fit_r.abs().double())
    overall = fit_r.abs().double().mean(0, keepdim=True)
    scale = ((sums + prior * overall) / (counts + prior)).clamp_min(1e-9) / step  # (contexts, D), symbol units
    edges = torch.logspace(-3, 2, classes - 1, dtype=torch.float64)
    cls = torch.bucketize(scale, edges)  # (contexts, D) in 0..classes-1
    fit_sym, held_sym = torch.round(fit_r / step).long(), torch.round(held_r / step).long()
    fit_cls, held_cls = cls[fit_ctx], cls[held_ctx]  # (N, D)
    lo = int(min(fit_sym.min(), held_sym.min()))
    width = int(max(fit_sym.max(), held_sym.max())) - lo + 1
    hist = torch.zeros(classes * width, dtype=torch.float64)
    hist.index_add_(0, (fit_cls * width + fit_sym - lo).reshape(-1), torch.ones(fit_sym.numel(), dtype=torch.float64))
    hist = hist.view(classes, width) + 0.5 / width  # add-half spread over the alphabet
    prob = hist / hist.sum(1, keepdim=True)
    return float(-torch.log2(prob[held_cls, held_sym - lo]).sum() / held_sym.shape[0])


def refinement_curve(model: ImageVQVAE, images: list[torch.Tensor], z_held: list[torch.Tensor], zh: torch.Tensor,
                     qh: torch.Tensor, z_fit: list[torch.Tensor], zf: torch.Tensor, qf: torch.Tensor, base_bpp: float,
                     shift: int, layers: int) -> list[tuple[float, float, int]]:
    """The codec's refinement layers, coded for real: `refine_symbols` of the held-out latents over their base,
    tables per context (the layers before, and the row above: `grid_contexts`) fitted per layer on the
    training crops' symbols (`fit_tables`), each held-out image's layers range-coded on their own grid
    (`encode_refinement_grid`) -> [(bpp with the base's raw bits, PSNR, layers)] after 1..`layers` layers."""
    def grids(symbols: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
        out, i = [], 0
        for z in like:  # (L, N, D) -> per image (L, h, w, D)
            _, d, h, w = z.shape
            out.append(symbols[:, i:i + h * w].reshape(symbols.shape[0], h, w, d))
            i += h * w
        return out

    first = 31 if float(qh.abs().max()) > 0 else 127  # no VQ stage before: the latent itself (|z| < 31.75)
    fit = grids(refine_symbols(zf, qf, shift, layers, first), z_fit)
    held_flat = refine_symbols(zh, qh, shift, layers, first)
    held = grids(held_flat, z_held)
    d = zh.shape[1]
    pixels = sum(im.shape[-1] * im.shape[-2] for im in images)
    bits, curve = 0.0, []
    for j in range(layers):
        lo, hi = layer_alphabet(j + 1, first)
        ctx = torch.cat([grid_contexts(g[j], layer_contexts(g[:j])).reshape(-1, d) for g in fit])
        table = fit_tables(torch.cat([g[j].reshape(-1, d) for g in fit]), ctx, CONTEXTS * ROW_BUCKETS, lo, hi)
        for g in held:  # one stream per image and layer, as a file holds them
            bits += 8 * len(encode_refinement_grid(g[j], layer_contexts(g[:j]), table, lo))
        rec = qh + refinement_values(held_flat[: j + 1], shift)
        curve.append((base_bpp + bits / pixels, psnr(model, images, unflat(rec, z_held)), j + 1))
    return curve


def latents(model: ImageVQVAE, images: list[torch.Tensor]) -> list[torch.Tensor]:
    """uint8 (3, H, W) images -> their latents (1, D, H/8, W/8) float32."""
    with torch.no_grad():
        return [model.encoder(im[None].float() / 255.0) for im in images]


def psnr(model: ImageVQVAE, images: list[torch.Tensor], zs: list[torch.Tensor]) -> float:
    """Mean PSNR (dB, 8-bit RGB) of the decoder on latents `zs` (1, D, h, w) against `images`."""
    vals = []
    with torch.no_grad():
        for im, z in zip(images, zs):
            x = (model.decoder(z).clamp(0, 1) * 255).round()
            mse = ((x - im[None].float()) ** 2).mean().item()
            vals.append(10 * math.log10(255 ** 2 / max(mse, 1e-10)))
    return sum(vals) / len(vals)


def flat(zs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]) for z in zs])


def unflat(v: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    out, i = [], 0
    for z in like:
        b, d, h, w = z.shape
        out.append(v[i:i + h * w].reshape(1, h, w, d).permute(0, 3, 1, 2))
        i += h * w
    return out


def plot(files: list[Path], out: Path, only: set[str] | None = None) -> Path:
    """Draw the curves of earlier runs' high_rate_layers.json into out/high_rate_layers.png (only the curves
    named in `only`, e.g. {"s4+sq"}, when given; the model's own stages always)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    for f in files:
        report = json.loads(f.read_text())
        run = f.parent.name
        for name, curve in report["curves"].items():
            if (name == "model" and f != files[0]) or (only and name != "model" and name not in only):
                continue
            style = "k-" if name == "model" else ("--" if "vq" in name else "-")
            ax.plot([p[0] for p in curve], [p[1] for p in curve], style, marker=".",
                    label=f"{run}: {name}" if name != "model" else f"{run}: the model's own stages (raw)")
        ax.axhline(report["unquantized_psnr"], lw=0.5, color="grey")
    ax.axhline(36.0, lw=1, color="red", ls=":")
    ax.set_xlabel("bits per pixel (VQ: 9 raw bits per index; sq: static-histogram cross-entropy)")
    ax.set_ylabel("mean PSNR, held-out training photos (dB)")
    ax.set_xlim(0, 4)
    ax.set_ylim(26, 40)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "high_rate_layers.png", dpi=110, bbox_inches="tight")
    return out / "high_rate_layers.png"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="image model weights (.safetensors)")
    ap.add_argument("--plot", type=Path, nargs="+", help="draw these earlier runs' JSON files instead")
    ap.add_argument("--curves", default="", help="with --plot: comma list of the curves to draw (default all)")
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "photos")
    ap.add_argument("--holdout", type=int, default=12)
    ap.add_argument("--val-crop", type=int, default=384)
    ap.add_argument("--fit-images", type=int, default=60, help="training photos to fit the layers on")
    ap.add_argument("--fit-crop", type=int, default=256)
    ap.add_argument("--base-stages", default="8,16",
                    help="comma list: the model's stages before the new layers (0: the layers code the latent alone)")
    ap.add_argument("--layers", type=int, default=4, help="VQ layers added per scheme (0: only sq)")
    ap.add_argument("--dims", default="64,16,8", help="comma list of sub-vector sizes for the VQ layers")
    ap.add_argument("--steps", default="0.5,0.35,0.25,0.18,0.125,0.09", help="uniform steps for sq")
    ap.add_argument("--iters", type=int, default=15, help="k-means iterations")
    ap.add_argument("--refine-layers", type=int, default=5,
                    help="refinement layers coded for real (`ref` curves; 0: none), steps halving from 2^-SHIFT")
    ap.add_argument("--refine-shift", type=int, default=2, help="the first refinement layer's step is 2^-SHIFT")
    ap.add_argument("--quick", action="store_true", help="3 held-out photos, 8 fit photos, 1 layer (smoke run)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.plot:
        print(plot(args.plot, args.out, {c for c in args.curves.split(",") if c} or None))
        return 0
    if args.model is None:
        ap.error("--model is required (or --plot)")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if args.quick:
        args.holdout, args.fit_images, args.layers, args.iters = 12, 8, 1, 3
    train, held = split_holdout(args.data, args.holdout)
    if args.quick:
        held = held[:3]
    gen = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    images = [centre_crop(load_rgb(f), args.val_crop) for f in held]
    fit_images = []
    for f in rng.sample(train, min(args.fit_images, len(train))):
        im = load_rgb(f)
        h, w = im.shape[-2:]
        s = min(args.fit_crop, h, w) // 8 * 8
        y, x = rng.randrange(h - s + 1), rng.randrange(w - s + 1)
        fit_images.append(im[:, y:y + s, x:x + s])
    model, model_id = load_image_model(args.model)
    if model.cfg.depth_input:
        raise SystemExit("this experiment decodes without a depth map; the model needs one")
    z_held, z_fit = latents(model, images), latents(model, fit_images)
    zh, zf = flat(z_held), flat(z_fit)
    report: dict = {"model": str(args.model), "model_id": model_id, "held_out": [f.name for f in held],
                    "fit_images": len(fit_images), "fit_latents": zf.shape[0], "held_latents": zh.shape[0],
                    "unquantized_psnr": psnr(model, images, z_held), "curves": {}}
    S = model.cfg.num_stages
    with torch.no_grad():
        idx_h = model.quantizer.encode(zh, S)
        idx_f = model.quantizer.encode(zf, S)
        own = []
        for s in range(1, S + 1):
            q = model.quantizer.decode(idx_h[:, :s])
            own.append((s * 9 / PIXELS_PER_LATENT, psnr(model, images, unflat(q, z_held))))
        report["curves"]["model"] = own
        for base in [int(b) for b in args.base_stages.split(",")]:
            qh = model.quantizer.decode(idx_h[:, :base]) if base else torch.zeros_like(zh)
            qf = model.quantizer.decode(idx_f[:, :base]) if base else torch.zeros_like(zf)
            base_bpp = base * 9 / PIXELS_PER_LATENT
            for d in [int(x) for x in args.dims.split(",")] if args.layers else []:
                rh, rf, bpp = zh - qh, zf - qf, base_bpp
                curve, recon_h, recon_f = [], qh.clone(), qf.clone()
                for _ in range(args.layers):
                    layer = VQLayer(rf, d, 512, args.iters, gen)
                    dh, df = layer(rh), layer(rf)
                    recon_h, recon_f = recon_h + dh, recon_f + df
                    rh, rf = rh - dh, rf - df
                    bpp += layer.bits / PIXELS_PER_LATENT
                    curve.append((bpp, psnr(model, images, unflat(recon_h, z_held))))
                report["curves"][f"s{base}+vq{d}"] = curve
                print(f"s{base}+vq{d}: " + ", ".join(f"{b:.2f} bpp {p:.2f} dB" for b, p in curve), flush=True)
            curve, ctx_curve = [], []
            for step in [float(x) for x in args.steps.split(",")]:
                sym_h = torch.round((zh - qh) / step).long()
                sym_f = torch.round((zf - qf) / step).long()
                bits = sq_bits(sym_f, sym_h)
                quality = psnr(model, images, unflat(qh + sym_h.float() * step, z_held))
                curve.append((base_bpp + bits / PIXELS_PER_LATENT, quality, step))
                if base:
                    bits_ctx = ctx_bits(zf - qf, idx_f[:, 0], zh - qh, idx_h[:, 0], step)
                    ctx_curve.append((base_bpp + bits_ctx / PIXELS_PER_LATENT, quality, step))
            report["curves"][f"s{base}+sq"] = curve
            print(f"s{base}+sq: " + ", ".join(f"{b:.2f} bpp {p:.2f} dB (step {st})" for b, p, st in curve), flush=True)
            if ctx_curve:
                report["curves"][f"s{base}+sq-ctx"] = ctx_curve
                print(f"s{base}+sq-ctx: " + ", ".join(f"{b:.2f} bpp {p:.2f} dB" for b, p, _ in ctx_curve), flush=True)
            if args.refine_layers:
                curve = refinement_curve(model, images, z_held, zh, qh, z_fit, zf, qf, base_bpp, args.refine_shift,
                                         args.refine_layers)
                report["curves"][f"s{base}+ref"] = curve
                print(f"s{base}+ref: " + ", ".join(f"{b:.2f} bpp {p:.2f} dB" for b, p, _ in curve), flush=True)
    report["seconds"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "high_rate_layers.json").write_text(json.dumps(report, indent=1))
    lines = [f"# High-rate layers on {model_id} (`{' '.join(['python benchmarks/high_rate_layers.py'] + (argv or sys.argv[1:]))}`)",
             "", f"{len(images)} held-out photos ({args.val_crop}x{args.val_crop} centres), layers fitted on "
             f"{zf.shape[0]} latents of {len(fit_images)} training crops; decoder on unquantized latents: "
             f"{report['unquantized_psnr']:.2f} dB. Raw bits (9 per VQ index; `sq`: cross-entropy under static "
             f"per-dim histograms).", "", "| scheme | bpp | PSNR dB |", "|---|---:|---:|"]
    for name, curve in report["curves"].items():
        for point in curve:
            lines.append(f"| {name} | {point[0]:.3f} | {point[1]:.2f} |")
    (args.out / "high_rate_layers.md").write_text("\n".join(lines) + "\n")
    print(f"unquantized {report['unquantized_psnr']:.2f} dB; model s16 {own[-1][1]:.2f} dB at {own[-1][0]:.2f} bpp; "
          f"{report['seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
