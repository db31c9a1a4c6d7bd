"""Training, evaluation and export of the image prior (vqcodec.image.prior -> vqcodec.image.prior_integer).

* `train_image_prior`: what `vqcodec train prior` runs: the index maps of a folder of images under a frozen
  image model (vqcodec.image.index_maps, computed once per run folder), the training run, and the export
  of the integer prior the codec codes with (OUT/image_prior.safetensors) once the run has finished.
* `run_image_prior` (and `train_image_prior_on_maps`, its keyword form): the float prior as a `PriorTask`
  of `vqcodec.training.loop.TrainingLoop` (which owns the schedule, checkpoints with exact resume, the
  JSONL log, stop conditions and DDP under torchrun): Adam on random tile-sized crops (+ horizontal flips)
  of index maps, bits per index per stage in the log, validation bits on held-out maps.
* Export and loading live with the nets: `vqcodec.image.prior` (float file) and
  `vqcodec.image.prior_integer` (post-training quantization and the shipped integer file).
* `synthetic_index_maps`: structured stand-in data (a smooth random field quantized by a residual VQ
  with data-seeded codebooks), for development and tests before real index maps exist.

Index maps are LongTensors (S, H, W) with values in [0, K).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vqcodec.image.prior import ImagePrior, PriorConfig, load_float_prior, save_float_prior
from vqcodec.training.checkpoint import saved_config
from vqcodec.training.loop import Built, LoopConfig, OptimizerSpec, RunContext, RunResult, Task, TrainingLoop

log = logging.getLogger(__name__)

__all__ = [
    "ImagePriorTrainConfig",
    "PriorTask",
    "train_image_prior",
    "train_image_prior_on_maps",
    "run_image_prior",
    "evaluate_bits",
    "rate_report",
    "random_crops",
    "synthetic_index_maps",
]
FLOAT_PRIOR_NAME = "prior_float.safetensors"
INTEGER_PRIOR_NAME = "image_prior.safetensors"
INDEX_MAPS_NAME = "index_maps.pt"


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
@dataclass(kw_only=True)
class ImagePriorTrainConfig(LoopConfig):
    """Loop settings (see LoopConfig; lr 2e-3 by default) plus the prior's (stored in checkpoints)."""

    steps: int = 20000
    lr: float = 2e-3
    batch_size: int = 8
    crop_h: int = 32  # crop size when the prior has no coding tiles (else the tile size)
    crop_w: int = 32
    grad_clip: float = 1.0  # max gradient norm (0: off)
    val_fraction: float = 0.1  # held-out share of the maps when no validation maps are given
    model: dict | None = None  # PriorConfig fields; None: the checkpoint's on resume, else PriorConfig(S)
    init_from: str | None = None  # start (not resume) from a float prior .safetensors or a run's checkpoint.pt


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


def _split(n: int, tc: ImagePriorTrainConfig) -> tuple[list[int], list[int]]:
    """Seeded (train, validation) map indices: a val_fraction share held out (at least one of 2+ maps)."""
    g = torch.Generator().manual_seed(tc.seed + 1)
    perm = torch.randperm(n, generator=g).tolist()
    n_val = int(round(n * tc.val_fraction)) if n > 1 else 0
    n_val = min(max(n_val, 1 if n > 1 and tc.val_fraction > 0 else 0), n - 1)
    return sorted(perm[n_val:]), sorted(perm[:n_val])


class _BitsPerStage(nn.Module):
    """forward(indices (B, S, H, W) int64) -> (S,) float mean bits per index (untiled), so that DDP,
    which synchronises the gradients of forward() calls only, sees the prior's loss."""

    def __init__(self, prior: ImagePrior) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.prior.loss(indices, tiled=False)


class PriorTask(Task):
    """The float ImagePrior as a `Task`: mean bits per index (untiled) on random crops of index maps."""

    name = "prior"
    run_defining = ("batch_size", "crop_h", "crop_w", "val_fraction", "model")
    progress_keys = ("bits_mean",)
    config: ImagePriorTrainConfig

    def __init__(self, config: ImagePriorTrainConfig, maps: Sequence[torch.Tensor],
                 val_maps: Sequence[torch.Tensor] | None = None) -> None:
        super().__init__(config)
        if not maps:
            raise ValueError("train_image_prior_on_maps needs at least one index map")
        self.maps, self.val_maps = maps, val_maps

    def build(self, ctx: RunContext) -> Built:
        tc = self.config
        cfg = PriorConfig.from_dict(tc.model) if tc.model else PriorConfig(num_stages=int(self.maps[0].shape[0]))
        self.config = replace(tc, model=cfg.to_dict())  # the checkpoint records the model it holds
        if self.maps[0].shape[0] < cfg.num_stages:
            raise ValueError(f"maps have {self.maps[0].shape[0]} stages, the prior needs {cfg.num_stages}")
        if self.val_maps is None:
            tr_idx, va_idx = _split(len(self.maps), tc)
            self.train_maps = [self.maps[i][: cfg.num_stages] for i in tr_idx]
            self.val = [self.maps[i][: cfg.num_stages] for i in va_idx]
        else:
            self.train_maps = [m[: cfg.num_stages] for m in self.maps]
            self.val = [m[: cfg.num_stages] for m in self.val_maps]
        self.crop_h = cfg.tile_h if cfg.tile_h > 0 else tc.crop_h
        self.crop_w = cfg.tile_w if cfg.tile_w > 0 else tc.crop_w
        self.gen = torch.Generator().manual_seed(tc.seed + 2 + 1000 * ctx.rank)
        model = ImagePrior(cfg)
        if not ctx.resuming and tc.init_from:
            init_from = Path(tc.init_from)
            if init_from.suffix == ".pt":
                init_state = torch.load(init_from, map_location="cpu", weights_only=True)["model"]
            else:
                init_state = load_float_prior(init_from).state_dict()
            model.load_state_dict(init_state)
            log.info("initialised from %s", init_from)
        return Built(model, None, OptimizerSpec("adam", grad_clip=tc.grad_clip), train_module=_BitsPerStage(model))

    def batch(self, step: int) -> torch.Tensor:
        """(B, S, ch, cw) int64 crops of the training maps."""
        return random_crops(self.train_maps, self.config.batch_size, self.crop_h, self.crop_w, self.gen)

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        bits = model(batch)
        return bits.mean(), {"bits_mean": bits.mean().item(), "bits": bits.detach().tolist()}

    def validate(self, model: nn.Module) -> dict:
        if not self.val:
            return {}
        vb = evaluate_bits(model, self.val)
        return {"val_bits_mean": float(vb.mean()), "val_bits": [round(float(x), 4) for x in vb]}

    def export(self, model: nn.Module, out_dir: Path) -> None:
        save_float_prior(model, out_dir / FLOAT_PRIOR_NAME)

    def state_dict(self) -> dict:
        return {"data": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["data"])


def run_image_prior(tc: ImagePriorTrainConfig, maps: Sequence[torch.Tensor],
                    val_maps: Sequence[torch.Tensor] | None = None) -> RunResult:
    """Train (or with tc.resume, continue) the float prior on index maps [(S, H, W) int64]; see
    train_image_prior_on_maps. The result says whether the run finished (`RunResult.finished`) or stopped
    early."""
    return TrainingLoop(PriorTask(tc, maps, val_maps)).run()


def train_image_prior_on_maps(maps: Sequence[torch.Tensor], out_dir: Path, steps: int, resume: bool = False, *,
                              cfg: PriorConfig | None = None, train_cfg: ImagePriorTrainConfig | None = None,
                              threads: int | None = None, stop_at_step: int | None = None,
                              max_minutes: float | None = None, progress: bool | None = None,
                              val_maps: Sequence[torch.Tensor] | None = None,
                              init_from: Path | None = None) -> ImagePrior:
    """Train the float ImagePrior on index maps [(S, H, W) int64] and return it (eval mode).

    out_dir gets checkpoint.pt, log.jsonl (per log interval: step, time_s, lr, loss, bits_mean, bits per
    stage, samples_per_s; validation: val_bits_mean, val_bits per stage) and prior_float.safetensors
    (at every checkpoint). steps: total optimisation steps (also sets the learning-rate schedule).
    resume: continue from out_dir/checkpoint.pt exactly where it stopped (same batches, same result as an
    uninterrupted run with the same thread count). stop_at_step: stop (with a checkpoint) there without
    changing the schedule. max_minutes: stop (with a checkpoint) after this much wall time.
    threads: torch.set_num_threads. progress: progress bar (None: when stderr is a terminal).
    val_maps: held-out maps; default: a seeded train_cfg.val_fraction of `maps`.
    init_from: start (not resume) from these weights: a float prior .safetensors or another run's
    checkpoint.pt, e.g. a prior pre-trained on an earlier snapshot of the image model's indices.
    cfg / train_cfg: model and optimisation settings; on resume the checkpoint's model config is used, and
    its train config too unless train_cfg is given.
    """
    out_dir = Path(out_dir)
    if resume and train_cfg is None:  # continue with the interrupted run's settings
        base = saved_config(out_dir / TrainingLoop.CHECKPOINT, ImagePriorTrainConfig)
    else:
        base = train_cfg or ImagePriorTrainConfig()
    tc = replace(base, out=str(out_dir), steps=int(steps), resume=resume, threads=threads, stop_at_step=stop_at_step,
                 max_minutes=max_minutes, progress=progress, model=cfg.to_dict() if cfg is not None else base.model,
                 init_from=str(init_from) if init_from is not None else None)
    return run_image_prior(tc, maps, val_maps).model.eval()


# ---------------------------------------------------------------------------------------------- pipeline
def train_image_prior(tc: ImagePriorTrainConfig, data: str | Path, model_path: str | Path,
                      depth_qualities: Sequence[int] | None = None) -> RunResult:
    """Train (or with tc.resume, continue) the image prior of the image model `model_path` on the images of
    the folder `data`, and export the integer prior once the run has finished.

    The index maps (vqcodec.image.index_maps: full depth, or with `depth_qualities` the per-block-depth maps
    the codec writes at those qualities 1..100) are computed once into tc.out/index_maps.pt (by rank 0 under
    torchrun; the other processes wait and load them). When the run reaches tc.steps, rank 0 writes
    tc.out/image_prior.safetensors (vqcodec.image.prior_integer.export_integer_prior, its activation ranges
    calibrated on 32 of the maps). Returns the run's result (`RunResult.finished`: whether it got there).
    """
    from vqcodec.files import atomic_write
    from vqcodec.image.data import load_folder
    from vqcodec.image.index_maps import compute_depth_maps, compute_index_maps
    from vqcodec.image.model import load_image_model
    from vqcodec.image.prior_integer import export_integer_prior
    from vqcodec.image.rate_control import check_quality
    from vqcodec.training.distributed import barrier, init_distributed

    if tc.threads:
        torch.set_num_threads(tc.threads)
    rank, _ = init_distributed()
    out_dir = Path(tc.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    maps_file = out_dir / INDEX_MAPS_NAME
    if rank == 0 and not maps_file.is_file():  # one process computes the maps, the others wait and load them
        model, _ = load_image_model(model_path)
        if depth_qualities:
            maps = compute_depth_maps(model, load_folder(data), [check_quality(int(q)) for q in depth_qualities])
        else:
            maps = compute_index_maps(model, load_folder(data),  # a prior of fewer stages needs only those
                                      num_stages=int(tc.model["num_stages"]) if tc.model else None)
        atomic_write(maps_file, lambda tmp: torch.save(maps, tmp))
    barrier()
    maps = torch.load(maps_file, weights_only=True)
    result = run_image_prior(tc, maps)
    if result.finished and rank == 0:
        calibration = maps[:: max(1, len(maps) // 32)]  # activation ranges: 32 maps are plenty, all are slow
        export_integer_prior(result.model.eval(), calibration, out_dir / INTEGER_PRIOR_NAME)
        log.info("wrote %s", out_dir / INTEGER_PRIOR_NAME)
    return result
