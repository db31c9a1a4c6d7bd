"""Does a spatial context within each stage pay? A training probe of a checkerboard context (He et al. 2021)
for the image prior's stages 2..S, measured in bits on held-out photos, against its decode-time cost.

Today a stage-s code is predicted from the earlier stages only (`ConditionalStagePrior`: one parallel pass).
A checkerboard context codes each stage in two passes: pass A ((r + c) even) as today, pass B ((r + c) odd)
with the stage-s codes of pass A known. This probe adds that knowledge to the stage net's input and trains:

    pass B input = sum_{t<s} E_t[x_t] + e_s                         (today's input)
                 + A_s[x_s] at pass-A neighbours, 0 elsewhere        (A_s (K + 1, C): row K = "stopped")
                 + b_s                                               (a pass-B flag, (C,))

A_s and b_s start at zero, so both arms start exactly at the shipped float prior. Two arms see the same
batches, learning rate and steps: the *control* fine-tunes the unchanged net (the pass-B bits of more
training alone) and the *checkerboard* arm fine-tunes the net with the new input. The checkerboard gain is
the difference on held-out photos (split by photo, not by map, so no photo is on both sides). Pass-A
positions would be coded as today, so a stage's total saving is the pass-B saving times pass B's share of
the stage's present positions.

The decode-time cost: pass B needs its own trunk pass per stage (the trunk's input differs), i.e. one more
`features` call per stage; measured here on a 768x512 image's maps with the shipped integer prior.

    python benchmarks/spatial_context_probe.py --maps runs/prior_depth/index_maps.pt
    python benchmarks/spatial_context_probe.py --data ../shared/data/photos --model codec/weights/image_vqvae.safetensors
    python benchmarks/spatial_context_probe.py --quick        # synthetic maps, a few steps (CI smoke run)

`--maps` is the file `vqcodec train prior --depth-qualities ...` writes (maps ordered photo by photo,
`--maps-per-photo` of them each). Writes spatial_context_probe.json / .md to --out.
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
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def checkerboard(h: int, w: int, parity: int) -> torch.Tensor:
    """(h, w) bool: positions with (r + c) % 2 == parity (0 = pass A, 1 = pass B)."""
    r = torch.arange(h)[:, None]
    c = torch.arange(w)[None, :]
    return ((r + c) % 2) == parity


class CheckerboardStageNet(nn.Module):
    """The shipped stage net (`ConditionalStagePrior`, copied) with the pass-B context of the module docstring.

    forward(batch (B, S, H, W) int64, use_context) -> bits (S-1,) per present pass-B index of stages 2..S
    (ABSENT = -1 past a position's depth; a stage with no present pass-B position gives 0).
    """

    def __init__(self, cond: nn.Module, codebook_size: int) -> None:
        super().__init__()
        self.cond = cond
        n, c = cond.stage_embed.shape
        self.anchor = nn.Parameter(torch.zeros(n, codebook_size + 1, c))
        self.flag = nn.Parameter(torch.zeros(n, c))
        self.k = codebook_size

    def forward(self, batch: torch.Tensor, use_context: bool) -> torch.Tensor:
        b, s, h, w = batch.shape
        ctx = self.cond.context(batch[:, : s - 1])  # (B, S-1, C, H, W): input of stages 2..S
        if use_context:
            cur = batch[:, 1:]  # (B, S-1, H, W) the stage being coded
            before = batch[:, : s - 1] >= 0  # present at the previous stage = coded in this stage
            sym = torch.where(cur >= 0, cur, torch.full_like(cur, self.k))  # stopped -> row K
            a_pos = checkerboard(h, w, 0).to(batch.device)
            emb = torch.stack([F.embedding(sym[:, i], self.anchor[i]) for i in range(s - 1)], dim=1)  # (B,S-1,H,W,C)
            emb = emb * (before & a_pos).unsqueeze(-1)
            ctx = ctx + (emb + self.flag[None, :, None, None, :]).permute(0, 1, 4, 2, 3)
        logits = self.cond.forward_context(ctx.reshape(b * (s - 1), *ctx.shape[2:]))
        logits = logits.reshape(b, s - 1, self.k, h, w)
        target = batch[:, 1:].clone()
        target[:, :, ~checkerboard(h, w, 1)] = -1  # only pass-B positions count
        nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none", ignore_index=-1)
        present = (target >= 0).to(nll.dtype)
        return nll.sum(dim=(0, 2, 3)) / present.sum(dim=(0, 2, 3)).clamp_min(1.0) / math.log(2.0)


@torch.no_grad()
def held_out_bits(net: CheckerboardStageNet, maps: list[torch.Tensor], use_context: bool) -> tuple[np.ndarray, np.ndarray]:
    """Total pass-B bits and present pass-B positions per stage 2..S over whole maps."""
    net.eval()
    bits, count = None, None
    for m in maps:
        per = net(m[None], use_context).double().numpy()
        h, w = m.shape[1:]
        n = ((m[1:] >= 0) & checkerboard(h, w, 1)).sum(dim=(1, 2)).double().numpy()
        bits = per * n if bits is None else bits + per * n
        count = n if count is None else count + n
    net.train()
    return bits, count


def decode_cost_s(repeats: int = 3, prior_path: Path = ROOT / "codec/weights/image_prior.safetensors") -> dict:
    """Seconds of one stage-net trunk pass (`features`) per stage at 768x512 (96 x 64 positions) with the
    8-stage integer prior of 0.4.x (`image-prior-pixelcnn-v4`, the one this probe's float prior was quantized
    into): the decode time a second pass per stage adds, times S - 1."""
    from vqcodec.image.prior_integer import BAND_POSITIONS, load_integer_prior

    prior = load_integer_prior(prior_path)
    gen = torch.Generator().manual_seed(0)
    earlier = torch.randint(0, prior.codebook_size, (prior.num_stages - 1, 64, 96), generator=gen)
    times = []
    for stage in range(2, prior.num_stages + 1):
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            prior.cond.features(earlier[: stage - 1], BAND_POSITIONS)
            best = min(best, time.perf_counter() - t)
        times.append(best)
    return {"features_s_per_stage": times, "added_decode_s": float(sum(times))}


def synthetic(n_photos: int, per_photo: int) -> list[torch.Tensor]:
    from vqcodec.training.image_prior import synthetic_index_maps

    maps = synthetic_index_maps(n_photos * per_photo, stages=8, h=24, w=32, k=512)
    gen = torch.Generator().manual_seed(3)
    out = []
    for m in maps:  # random per-position depths (ABSENT suffixes), as the codec writes
        depth = torch.randint(1, m.shape[0] + 1, m.shape[1:], generator=gen)
        out.append(torch.where(torch.arange(m.shape[0])[:, None, None] < depth, m, torch.full_like(m, -1)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maps", type=Path, help="index maps file (torch.save list of (S, H, W) int64)")
    ap.add_argument("--data", type=Path, help="training photos folder (computes depth maps; slower)")
    ap.add_argument("--model", type=Path, default=ROOT / "codec/weights/image_vqvae.safetensors")
    ap.add_argument("--qualities", default="20,40,60,80,100", help="with --data: qualities of the depth maps")
    ap.add_argument("--maps-per-photo", type=int, default=10, help="with --maps: consecutive maps per photo")
    ap.add_argument("--prior", type=Path, default=ROOT / "codec/weights/image_prior_float.safetensors",
                    help="float prior to start both arms from")
    ap.add_argument("--val-photos", type=int, default=12)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="synthetic maps, 6 steps (smoke run)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from vqcodec.image.prior import load_float_prior
    from vqcodec.training.image_prior import random_crops

    torch.manual_seed(0)
    per_photo = args.maps_per_photo
    if args.quick:
        maps, per_photo, args.steps, args.eval_every, args.val_photos = synthetic(6, 2), 2, 6, 3, 2
    elif args.maps:
        maps = torch.load(args.maps, weights_only=True)
    elif args.data:
        from vqcodec.image.data import load_folder
        from vqcodec.image.index_maps import compute_depth_maps
        from vqcodec.image.model import load_image_model

        qualities = [int(v) for v in args.qualities.split(",")]
        model, _ = load_image_model(args.model)
        maps = compute_depth_maps(model, load_folder(args.data), qualities)
        per_photo = 2 * len(qualities)
    else:
        ap.error("give --maps, --data or --quick")
    n_photos = len(maps) // per_photo
    perm = torch.randperm(n_photos, generator=torch.Generator().manual_seed(1)).tolist()
    val_photos = set(perm[: args.val_photos])
    train = [m for i, m in enumerate(maps) if i // per_photo not in val_photos]
    val = [m for i, m in enumerate(maps) if i // per_photo in val_photos]

    prior = load_float_prior(args.prior)
    k = prior.cfg.codebook_size
    arms = {"control": CheckerboardStageNet(load_float_prior(args.prior).cond, k),
            "checkerboard": CheckerboardStageNet(prior.cond, k)}
    use = {"control": False, "checkerboard": True}
    opts = {name: torch.optim.Adam(net.parameters(), lr=args.lr) for name, net in arms.items()}
    gen = torch.Generator().manual_seed(2)

    def evaluate(step: int) -> dict:
        row = {"step": step}
        for name, net in arms.items():
            bits, count = held_out_bits(net, val, use[name])
            row[name] = {"bits_per_index": (bits / np.maximum(count, 1)).round(4).tolist(),
                         "bits": float(bits.sum()), "indices": float(count.sum())}
        row["checkerboard_vs_control"] = row["checkerboard"]["bits"] / row["control"]["bits"] - 1.0
        print(f"step {step}: pass-B bits checkerboard vs control {100 * row['checkerboard_vs_control']:+.2f} % "
              f"({row['control']['bits'] / max(row['control']['indices'], 1):.4f} -> "
              f"{row['checkerboard']['bits'] / max(row['checkerboard']['indices'], 1):.4f} bits/index)", file=sys.stderr)
        return row

    curve = [evaluate(0)]
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = random_crops(train, args.batch_size, args.crop, args.crop, gen)
        lr = args.lr * min(1.0, step / 50) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for name, net in arms.items():
            for g in opts[name].param_groups:
                g["lr"] = lr
            loss = net(batch, use[name]).mean()
            opts[name].zero_grad()
            loss.backward()
            opts[name].step()
        if step % args.eval_every == 0 or step == args.steps:
            curve.append(evaluate(step))
    train_s = time.perf_counter() - t0

    # share of pass B among the positions each stage codes, on the held-out maps
    b_share = float(sum(((m[1:] >= 0) & checkerboard(*m.shape[1:], 1)).sum() for m in val)
                    / max(1, sum((m[1:] >= 0).sum() for m in val)))
    last = curve[-1]
    result = {
        "command": "python benchmarks/spatial_context_probe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "train_photos": n_photos - len(val_photos), "val_photos": len(val_photos), "val_maps": len(val),
        "steps": args.steps, "lr": args.lr, "batch_size": args.batch_size, "crop": args.crop,
        "train_seconds_both_arms": train_s, "threads": torch.get_num_threads(),
        "curve": curve,
        "pass_b_share": b_share,
        "pass_b_change": last["checkerboard_vs_control"],
        "stages_2_plus_change": last["checkerboard_vs_control"] * b_share,
        "decode_cost": decode_cost_s(1 if args.quick else 3),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "spatial_context_probe_quick" if args.quick else "spatial_context_probe"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1))
    lines = [f"Spatial context probe (`{result['command']}`), {result['threads']} torch threads.", "",
             f"Held-out: {len(val_photos)} photos ({len(val)} maps); trained {args.steps} steps per arm "
             f"({train_s / 60:.1f} min for both arms).", "",
             "| step | control pass-B bits/index | checkerboard pass-B bits/index | change |", "|---:|---:|---:|---:|"]
    for row in curve:
        c, b = row["control"], row["checkerboard"]
        lines.append(f"| {row['step']} | {c['bits'] / max(c['indices'], 1):.4f} | {b['bits'] / max(b['indices'], 1):.4f} "
                     f"| {100 * row['checkerboard_vs_control']:+.2f} % |")
    lines += ["", f"Pass B holds {100 * b_share:.1f} % of the indices of stages 2..S, so stages 2..S would change by "
              f"**{100 * result['stages_2_plus_change']:+.2f} %** (pass A coded as today).",
              f"Decode cost: a second trunk pass per stage, {result['decode_cost']['added_decode_s']:.3f} s at 768x512 "
              "(integer prior, one thread)."]
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
