"""Training, evaluation and export of the image prior (codec/prior_image.py -> codec/prior_integer.py).

* `train_prior`: Adam on random tile-sized crops (+ horizontal flips) of index maps, JSONL log of bits per
  index per stage, validation bits on held-out maps, checkpoints every few minutes that resume exactly
  (model, optimizer, all RNG states, step).
* Export and loading live with the nets: `vqcodec.image.prior` (float file) and
  `vqcodec.image.prior_integer` (post-training quantization and the shipped integer file).
* `synthetic_index_maps`: structured stand-in data (a smooth random field quantized by a residual VQ
  with data-seeded codebooks), for development and tests before real index maps exist.

Index maps are LongTensors (S, H, W) with values in [0, K).
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vqcodec.files import atomic_write

from vqcodec.image.prior import ImagePrior, PriorConfig, load_float_prior, save_float_prior

log = logging.getLogger(__name__)

__all__ = [
    "TrainConfig",
    "train_prior",
    "evaluate_bits",
    "rate_report",
    "random_crops",
    "synthetic_index_maps",
]



# ------------------------------------------------------------------------------------------- synthetic
def synthetic_index_maps(n: int, stages: int = 8, h: int = 64, w: int = 96, k: int = 512, dim: int = 6,
                         seed: int = 0) -> list[torch.Tensor]:
    """n structured index maps (stages, h, w) int64 for development.

    A smooth random field z (dim channels, Gaussian-filtered white noise with a random length scale per
    map, plus a few sharp-edged regions) is quantized by a residual VQ: stage s picks the nearest of k
    codes to the residual left by stages < s. Codebooks are seeded from residual samples (as k-means
    initialisation would), so later stages depend on earlier ones the way a trained RVQ's do.
    """
    g = torch.Generator().manual_seed(seed)

    def field() -> torch.Tensor:
        sigma = float(torch.empty(1).uniform_(1.0, 4.0, generator=g))
        rad = int(3 * sigma) + 1
        t = torch.arange(-rad, rad + 1, dtype=torch.float32)
        ker = torch.exp(-0.5 * (t / sigma) ** 2)
        ker = ker / ker.sum()
        z = torch.randn(dim, 1, h + 2 * rad, w + 2 * rad, generator=g)
        z = F.conv2d(z, ker.view(1, 1, 1, -1))
        z = F.conv2d(z, ker.view(1, 1, -1, 1))[:, 0]
        z = z / z.std().clamp_min(1e-6)
        # piecewise-constant regions (edges) on top of the smooth field
        for _ in range(3):
            a, b, c = torch.randn(3, generator=g)
            rr, cc = torch.meshgrid(torch.arange(h) / h - 0.5, torch.arange(w) / w - 0.5, indexing="ij")
            mask = (a * rr + b * cc + 0.3 * c) > 0
            z = z + mask * torch.randn(dim, 1, 1, generator=g) * 0.7
        return z.permute(1, 2, 0).reshape(-1, dim)

    fields = [field() for _ in range(n)]
    pool = torch.cat(fields)
    codebooks = []
    res = pool.clone()
    for _ in range(stages):
        pick = torch.randint(0, res.shape[0], (k,), generator=g)
        cb = res[pick] + 0.05 * res.std() * torch.randn(k, dim, generator=g)
        codebooks.append(cb)
        idx = torch.cdist(res, cb).argmin(dim=1)
        res = res - cb[idx]
    maps = []
    for z in fields:
        r = z.clone()
        out = []
        for cb in codebooks:
            idx = torch.cdist(r, cb).argmin(dim=1)
            r = r - cb[idx]
            out.append(idx.reshape(h, w))
        maps.append(torch.stack(out).to(torch.int64))
    return maps


# ---------------------------------------------------------------------------------------------- training
@dataclass
class TrainConfig:
    """Optimisation settings (stored in checkpoints and the log)."""

    steps: int = 20000
    batch_size: int = 8
    crop_h: int = 32
    crop_w: int = 32
    lr: float = 2e-3
    warmup: int = 200
    min_lr_fraction: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    val_fraction: float = 0.1
    log_every: int = 25
    val_every: int = 500
    checkpoint_minutes: float = 5.0


def _lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_fraction * lr at tc.steps."""
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    t = min(1.0, (step - tc.warmup) / max(1, tc.steps - tc.warmup))
    return tc.lr * (tc.min_lr_fraction + (1 - tc.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * t)))


def random_crops(maps: Sequence[torch.Tensor], batch: int, crop_h: int, crop_w: int,
                 gen: torch.Generator, flip: bool = True) -> torch.Tensor:
    """Batch (B, S, ch, cw) int64 of random crops (and random horizontal flips) of maps [(S, H, W)].

    Crops are clipped to the map size; maps smaller than the crop give smaller crops, so every map in a
    batch must have room for the crop (all crops of one batch have the same shape: min over the batch).
    """
    sel = torch.randint(0, len(maps), (batch,), generator=gen).tolist()
    ch = min(crop_h, *(maps[i].shape[1] for i in sel))
    cw = min(crop_w, *(maps[i].shape[2] for i in sel))
    out = []
    for i in sel:
        m = maps[i]
        r = int(torch.randint(0, m.shape[1] - ch + 1, (1,), generator=gen))
        c = int(torch.randint(0, m.shape[2] - cw + 1, (1,), generator=gen))
        crop = m[:, r:r + ch, c:c + cw]
        if flip and bool(torch.randint(0, 2, (1,), generator=gen)):
            crop = crop.flip(-1)
        out.append(crop)
    return torch.stack(out)


@torch.no_grad()
def evaluate_bits(model: ImagePrior, maps: Sequence[torch.Tensor], tiled: bool = True) -> np.ndarray:
    """Mean bits per index per stage of the float model over whole maps [(S, H, W)] (position-weighted,
    with the coding tiles when tiled=True). Returns (S,) float64."""
    model.eval()
    tot, n = None, 0
    for m in maps:
        b = model.loss(m[None], tiled=tiled).double().numpy() * m[0].numel()
        tot = b if tot is None else tot + b
        n += m[0].numel()
    return tot / max(n, 1)


def rate_report(model: ImagePrior, maps: Sequence[torch.Tensor],
                integer: IntegerImagePrior | None = None) -> dict:
    """Bits per index per stage on whole maps [(S, H, W)]: float model without tiles, float model with the
    coding tiles, and (if given) the integer prior's ideal code length under its frequencies.

    Returns a dict of lists (per stage) and means, plus tile_cost (tiled/untiled - 1, stage 1 and overall)
    and quantization_penalty (integer/float tiled - 1, overall).
    """
    untiled = evaluate_bits(model, maps, tiled=False)
    tiled = evaluate_bits(model, maps, tiled=True)
    rep = {"float_untiled": untiled.round(4).tolist(), "float_tiled": tiled.round(4).tolist(),
           "float_untiled_mean": float(untiled.mean()), "float_tiled_mean": float(tiled.mean()),
           "tile_cost_stage1": float(tiled[0] / untiled[0] - 1),
           "tile_cost_all": float(tiled.mean() / untiled.mean() - 1)}
    if integer is not None:
        n = sum(m[0].numel() for m in maps)
        ib = sum(integer.bits(m[: integer.num_stages]) * m[0].numel() for m in maps) / n
        rep.update({"integer": ib.round(4).tolist(), "integer_mean": float(ib.mean()),
                    "quantization_penalty": float(ib.mean() / tiled.mean() - 1),
                    "quantization_penalty_per_stage": (ib / tiled - 1).round(5).tolist()})
    return rep


def _split(n: int, tc: TrainConfig) -> tuple[list[int], list[int]]:
    g = torch.Generator().manual_seed(tc.seed + 1)
    perm = torch.randperm(n, generator=g).tolist()
    n_val = int(round(n * tc.val_fraction)) if n > 1 else 0
    n_val = min(max(n_val, 1 if n > 1 and tc.val_fraction > 0 else 0), n - 1)
    return sorted(perm[n_val:]), sorted(perm[:n_val])


def _save_checkpoint(path: Path, payload: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def train_prior(maps: Sequence[torch.Tensor], out_dir: Path, steps: int, resume: bool = False, *,
                cfg: PriorConfig | None = None, train_cfg: TrainConfig | None = None,
                threads: int | None = None, stop_after: int | None = None, progress: bool = True,
                val_maps: Sequence[torch.Tensor] | None = None,
                init_from: Path | None = None) -> ImagePrior:
    """Train the float ImagePrior on index maps [(S, H, W) int64] and return it.

    out_dir gets: checkpoint.pt (model, optimizer, RNG states, step; written every
    train_cfg.checkpoint_minutes and at the end), log.jsonl (one JSON object per log line: step, lr,
    train bits per stage, validation bits per stage when computed), prior_float.safetensors at the end.
    steps: total optimisation steps (also sets the learning-rate schedule). resume: continue from
    out_dir/checkpoint.pt exactly where it stopped (same batches, same result as an uninterrupted run with
    the same thread count). stop_after: stop (with a checkpoint) after this many steps without changing
    the schedule, e.g. to split a run. threads: torch.set_num_threads for the run.
    val_maps: held-out maps; default: a seeded train_cfg.val_fraction of `maps`.
    init_from: start (not resume) from these weights: a float prior .safetensors or another run's
    checkpoint.pt, e.g. a prior pre-trained on an earlier snapshot of the image model's indices.
    cfg / train_cfg: model and optimisation settings; on resume the checkpoint's model config is used, and
    its train config too unless train_cfg is given.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if threads is not None:
        torch.set_num_threads(int(threads))
    ckpt_path = out_dir / "checkpoint.pt"
    if not maps:
        raise ValueError("train_prior needs at least one index map")

    state = None
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"resume requested but {ckpt_path} does not exist; run without resume")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        cfg = PriorConfig.from_dict(state["prior_config"])
        if train_cfg is None:  # continue with the interrupted run's settings
            train_cfg = TrainConfig(**state["train_config"])
    tc = train_cfg or TrainConfig()
    tc = TrainConfig(**{**asdict(tc), "steps": int(steps)})
    cfg = cfg or PriorConfig(num_stages=int(maps[0].shape[0]))
    if maps[0].shape[0] < cfg.num_stages:
        raise ValueError(f"maps have {maps[0].shape[0]} stages, the prior needs {cfg.num_stages}")

    if val_maps is None:
        tr_idx, va_idx = _split(len(maps), tc)
        train_maps = [maps[i][: cfg.num_stages] for i in tr_idx]
        val = [maps[i][: cfg.num_stages] for i in va_idx]
    else:
        train_maps = [m[: cfg.num_stages] for m in maps]
        val = [m[: cfg.num_stages] for m in val_maps]

    torch.manual_seed(tc.seed)
    model = ImagePrior(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    data_gen = torch.Generator().manual_seed(tc.seed + 2)
    step = 0
    if state is None and init_from is not None:
        init_from = Path(init_from)
        if init_from.suffix == ".pt":
            init_state = torch.load(init_from, map_location="cpu", weights_only=False)["model"]
        else:
            init_state = load_float_prior(init_from).state_dict()
        model.load_state_dict(init_state)
        log.info("initialised from %s", init_from)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        data_gen.set_state(state["rng"]["data"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        step = int(state["step"])
        log.info("resumed from %s at step %d", ckpt_path, step)

    def checkpoint() -> None:
        _save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "prior_config": cfg.to_dict(), "train_config": asdict(tc),
            "rng": {"data": data_gen.get_state(), "torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(), "python": random.getstate()},
        })

    crop_h = cfg.tile_h if cfg.tile_h > 0 else tc.crop_h
    crop_w = cfg.tile_w if cfg.tile_w > 0 else tc.crop_w
    end = tc.steps if stop_after is None else min(tc.steps, int(stop_after))
    log_f = open(out_dir / "log.jsonl", "a", encoding="utf-8")
    try:
        from tqdm import tqdm
        bar = tqdm(total=end, initial=step, disable=not progress, desc="prior", dynamic_ncols=True)
        last_ckpt = time.monotonic()
        acc_bits, acc_n = None, 0
        t0 = time.monotonic()
        while step < end:
            model.train()
            lr = _lr_at(step, tc)
            for gp in opt.param_groups:
                gp["lr"] = lr
            batch = random_crops(train_maps, tc.batch_size, crop_h, crop_w, data_gen)
            bits = model.loss(batch, tiled=False)
            loss = bits.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            step += 1
            b = bits.detach().double().numpy()
            acc_bits = b if acc_bits is None else acc_bits + b
            acc_n += 1
            bar.update(1)
            if step % tc.log_every == 0 or step == end:
                mean = acc_bits / acc_n
                rec = {"step": step, "time": round(time.monotonic() - t0, 2), "lr": lr,
                       "bits_mean": float(mean.mean()), "bits": [round(float(x), 4) for x in mean]}
                if val and (step % tc.val_every == 0 or step == end):
                    vb = evaluate_bits(model, val)
                    rec["val_bits_mean"] = float(vb.mean())
                    rec["val_bits"] = [round(float(x), 4) for x in vb]
                log_f.write(json.dumps(rec) + "\n")
                log_f.flush()
                bar.set_postfix(bits=f"{mean.mean():.3f}", val=f"{rec.get('val_bits_mean', float('nan')):.3f}")
                acc_bits, acc_n = None, 0
            if time.monotonic() - last_ckpt > 60 * tc.checkpoint_minutes:
                checkpoint()
                last_ckpt = time.monotonic()
        bar.close()
        checkpoint()
    finally:
        log_f.close()
    save_float_prior(model, out_dir / "prior_float.safetensors")
    model.eval()
    return model
