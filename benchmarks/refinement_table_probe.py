"""What a rate-distortion-optimised (sparse) refinement layer costs, and what other tables would save (a probe).

    python benchmarks/refinement_table_probe.py --data <training photos> --layer 2 --lambdas 3,0.3,0.06,0
    python benchmarks/refinement_table_probe.py --data <training photos> --layer 1 --lambdas 0.3,0.15,0.06,0

On 5 photos of --data (768x512 crops, `quality_scale.pick_photos`) every block at full VQ depth, the given layer
is coded after the layers before it (whole), rate-distortion optimised as the codec does at each lambda (in the
layer's squared step per bit, `RefinementScale`'s unit). Printed per lambda, in bits per pixel of that layer:
its cost under the shipped tables (and the share of it spent on zero symbols); under tables refitted on these
very symbols (an in-sample bound for tables chosen per lambda, e.g. signalled per layer); and with an
"all-zero block" flag (the flags' entropy plus the coded blocks at the shipped tables' cost). Uses the codec's
private steps (its analysis, depth choice, residual and row RDO), so it measures exactly what the codec codes.
"""
import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_scale import pick_photos  # noqa: E402
from vqcodec.coding.refinement import fit_tables  # noqa: E402
from vqcodec.image.rate_control import depth_maps  # noqa: E402
from vqcodec.image.refinement import _rdo_row, grid_symbol_contexts  # noqa: E402
from vqcodec.quantization.scalar_refinement import layer_alphabet, symbols_from_units  # noqa: E402
from vqcodec.registry import default_codec  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--data", type=Path, required=True, help="training photos (never an evaluation set)")
ap.add_argument("--layer", type=int, default=2)
ap.add_argument("--lambdas", default="3,0.3,0.06,0")
ap.add_argument("--images", type=int, default=5)
args = ap.parse_args()
torch.set_num_threads(1)
codec = default_codec("image")
rm = codec.refinement
photos = pick_photos(args.data, args.images)
L = args.layer
for lam_step in [float(v) for v in args.lambdas.split(",")]:
    tot = {"pix": 0, "ship": 0.0, "oracle": 0.0, "flag": 0.0, "zero_ship": 0.0}
    grids = []
    for f in photos:
        rgb = np.asarray(Image.open(f).convert("RGB"))[:512, :768].copy()
        cand = codec.analyse(rgb, 2)
        idx = depth_maps(cand.paths, codec._depths(cand, 100), cand.height, cand.width).to(torch.int64)
        h, w = cand.height, cand.width
        res = codec._residual(cand.latents, idx).view(h, w, -1)
        lam = lam_step * rm.steps(L)[-1] ** 2
        rows, above = [], None
        for y in range(h):
            r = res[y].to(torch.int64)
            sym = symbols_from_units(r, rm.first_shift, L, rm.max_first)
            if lam > 0:
                sym = _rdo_row(rm, sym, r, above, lam)
            rows.append(sym)
            above = sym
        grid = torch.stack(rows, 1)  # (L, h, w, D)
        grids.append(grid)
        tot["pix"] += h * w * 64
    lo, hi = layer_alphabet(L, rm.max_first)
    d = grids[0].shape[-1]
    syms = torch.cat([g[L - 1].reshape(-1, d) for g in grids])
    ctxs = torch.cat([grid_symbol_contexts(g, L - 1).reshape(-1, d) for g in grids])
    table = rm.tables[L - 1]
    dims = torch.arange(d).expand_as(syms)
    p_ship = table[ctxs, dims, syms - lo].double() / table[ctxs, dims].sum(-1).double()
    bits_ship = -torch.log2(p_ship)
    oracle = fit_tables(syms, ctxs, table.shape[0], lo, hi)
    p_or = oracle[ctxs, dims, syms - lo].double() / oracle[ctxs, dims].sum(-1).double()
    tot["ship"] = float(bits_ship.sum())
    tot["oracle"] = float(-torch.log2(p_or).sum())
    blockz = (syms == 0).all(1)  # each row of syms is one latent position = one 8x8 block
    pz = float(blockz.double().mean())
    hflag = 0 if pz in (0, 1) else -(pz * math.log2(pz) + (1 - pz) * math.log2(1 - pz))
    tot["flag"] = float(bits_ship[~blockz].sum()) + hflag * blockz.numel()
    tot["zero_ship"] = float(bits_ship[syms == 0].sum())
    n = tot["pix"]
    print(f"lambda {lam_step}: nonzero {float((syms != 0).double().mean()):.4f}, empty blocks {pz:.3f}; bpp shipped {tot['ship']/n:.4f} "
          f"(zeros {tot['zero_ship']/n:.4f}), oracle tables {tot['oracle']/n:.4f}, block flag {tot['flag']/n:.4f}", flush=True)
