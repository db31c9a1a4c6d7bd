"""Training of the image VQ-VAE: random crops, quantizer dropout, periodic Kodak validation.

The loop itself (schedule, checkpoints every few minutes with exact resume, log, stop conditions,
DistributedDataParallel under torchrun) is `vqcodec.training.loop.TrainingLoop`; this module supplies
`ImageTask`: batches, loss, validation and export.

Entry point: `train_image(TrainImageConfig(...))`, used by `vqcodec train image`.
Under `torchrun --nproc_per_node N` the same entry point runs N replicas (gloo); each rank draws its own
crops, rank 0 validates, logs and checkpoints.

Files written to `out`:
  checkpoint.pt           resumable state (see vqcodec.training.checkpoint); not a release artefact
  log.jsonl               per log interval: step, time_s, lr, loss, mse, psnr_train_mixed, vq_loss, usage,
                          samples_per_s, restarts; validation: {"step", "time_s", "val": evaluate_stages()}
  image_model.safetensors the exported weights (written at every checkpoint)
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqcodec.image.data import RandomCrops, list_images, load_folder, load_rgb
from vqcodec.image.model import ImageModelConfig, ImageVQVAE, block_pca, load_image_model, pad_to_multiple
from vqcodec.image.rate_control import QUALITY_MAX, choose_depths, depth_maps, lagrange_multiplier
from vqcodec.training.loop import Built, LoopConfig, OptimizerSpec, RunContext, Task, TrainingLoop, module_device
from vqcodec.weights.io import save_weights

__all__ = ["TrainImageConfig", "ImageTask", "train_image", "evaluate_stages", "evaluate_rd", "export_image_model",
           "psnr", "split_holdout", "IMAGE_MODEL_ID", "DEPTH_MODES"]

log = logging.getLogger(__name__)
IMAGE_MODEL_ID = "image-f8-s8-k512-v3"
EXPORT_NAME = "image_model.safetensors"
DEPTH_MODES = ("crop", "block", "rd")
"""How training picks the stages each latent is reconstructed from (quantizer dropout):
crop: one count per crop (all S with probability full_rate_prob, else uniform 1..S), as up to v3;
block: the same draw per 8x8 block; rd: per crop all S with probability full_rate_prob, else a quality
drawn uniformly from 1..100 and each block's depth chosen by the encoder's rate-distortion rule
(`rate_control.choose_depths` on the greedy stage errors), as the codec encodes."""
VAL_STAGES = (1, 2, 4, 8, 12, 16)
VAL_QUALITIES = (10, 30, 50, 70, 90, 100)


@dataclass(kw_only=True)
class TrainImageConfig(LoopConfig):
    """Loop settings (see LoopConfig; lr 2e-4 by default) plus the image model's."""

    data: str  # folder of training images
    out: str
    steps: int = 10000
    lr: float = 2e-4
    batch_size: int = 8
    crop: int = 128
    val_data: str | None = None  # folder of validation images (e.g. Kodak)
    val_images: int = 6
    bf16: bool = True
    channels_last: bool = False  # channels_last memory format (measured +9 % steps/s with bf16 on this CPU)
    full_rate_prob: float = 0.5  # quantizer dropout: all S stages with this probability, else uniform 1..S
    init_from: str | None = None  # start (not resume) from released weights, e.g. the shipped model
    decoder_only: bool = False  # freeze encoder + codebooks, train the decoder (indices stay fixed)
    freeze_codebooks: bool = False  # train encoder and decoder through fixed codebooks (the code alphabet stays)
    commitment_weight: float | None = None  # beta of the commitment loss (None: the quantizer's, 0.25 as the paper)
    linear_lr_scale: float = 0.1  # learning rate of the linear block paths, relative to lr
    encoder_lr_scale: float = 1.0  # learning rate of the encoder's conv net, relative to lr (0: encoder frozen)
    commitment: str = "full"  # commit the encoder to the sum of all stages ("full") or of each row's active ones
    ema_decay: float = 0.99  # EMA codebook decay per step
    restart_after: int = 50  # re-seed a code unused for this many steps (0: never)
    tournament: int = 1  # candidate crops per batch entry; the most detailed is kept (see RandomCrops)
    depth_mode: str = "crop"  # see DEPTH_MODES
    holdout: int = 0  # photos of `data` kept out of training and validated on when val_data is None
    val_crop: int = 384  # validation images are centre-cropped to at most this size (0: whole images)
    model_id: str = IMAGE_MODEL_ID  # the id the exported weights carry
    model: dict = field(default_factory=dict)  # ImageModelConfig fields (defaults for missing ones)
    refine_prob: float = 0.0  # crops whose decoder input is the latent plus uniform noise (scalar refinement)
    refine_steps: tuple[float, float] = (0.03, 0.5)  # the noise's width (a refinement step), log-uniform in this range
    refine_level_weights: tuple[float, ...] | None = None  # with refine_levels: how often each level is drawn (None: evenly)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of two float images in [0, 1] after rounding both to 8 bits."""
    a = (x.clamp(0, 1) * 255).round()
    b = (y.clamp(0, 1) * 255).round()
    mse = F.mse_loss(a, b).item()
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def split_holdout(folder: str | Path, holdout: int) -> tuple[list[Path], list[Path]]:
    """(training files, held-out files) of an image folder: `holdout` files evenly spaced over the
    sorted names (so both the PNG and the JPEG part of a mixed folder are represented)."""
    files = list_images(folder)
    if holdout <= 0:
        return files, []
    if holdout >= len(files):
        raise ValueError(f"--holdout {holdout} leaves no training images of the {len(files)} in {folder}")
    step = len(files) / holdout
    held = {int(step * i + step / 2) for i in range(holdout)}
    return [f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held]


def centre_crop(im: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) -> its centre at most size x size (0: unchanged)."""
    if size <= 0:
        return im
    h, w = im.shape[-2:]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return im[..., y : y + size, x : x + size]


@torch.no_grad()
def evaluate_rd(model: ImageVQVAE, images: list[torch.Tensor], stage_counts=VAL_STAGES,
                qualities=VAL_QUALITIES) -> dict:
    """Validation as the codec decodes, greedy encoding (beam 1) for speed.

    images: (3, H, W) uint8. Returns {"stages": [s...], "psnr": [mean dB at every block s stages],
    "qualities": [q...], "rd_psnr": [mean dB], "rd_bpp": [mean raw bits per pixel: 9 bits per present
    index], "usage": [fraction of codes used per stage]} with each block's depth chosen by the encoder's
    rate-distortion rule at quality q. The model may be on any device: the images are moved to it, the depth
    choice runs on the CPU.
    """
    model.eval()
    device = module_device(model)
    S, K = model.cfg.num_stages, model.cfg.num_codes
    stage_counts = [s for s in stage_counts if s <= S]
    psnrs, rd_psnr, rd_bpp = torch.zeros(len(stage_counts)), torch.zeros(len(qualities)), torch.zeros(len(qualities))
    counts = torch.zeros(S, K)
    bits = math.log2(K)
    for im in images:
        x = im[None].to(device).float() / 255.0
        h, w = x.shape[-2:]
        z = model.encoder(pad_to_multiple(x, model.factor))
        lh, lw = z.shape[-2:]
        paths, errors = (t.cpu() for t in model.quantizer.encode_prefixes(model._flatten(z), None, beam=1))
        full = paths[:, S - 1]  # (N, S) greedy path
        for s in range(S):
            counts[s] += torch.bincount(full[:, s], minlength=K).float()
        for i, s in enumerate(stage_counts):
            idx = full[:, :s].reshape(1, lh, lw, s).permute(0, 3, 1, 2)
            psnrs[i] += psnr(model.decode_indices(idx.to(device))[..., :h, :w], x)
        for i, q in enumerate(qualities):
            depths = choose_depths(errors, lagrange_multiplier(q))
            maps = depth_maps(paths, depths, lh, lw)[None]
            rd_psnr[i] += psnr(model.decode_indices(maps.to(device))[..., :h, :w], x)
            rd_bpp[i] += float(depths.sum()) * bits / (h * w)
    n = max(1, len(images))
    return {"stages": stage_counts, "psnr": (psnrs / n).tolist(), "qualities": list(qualities),
            "rd_psnr": (rd_psnr / n).tolist(), "rd_bpp": (rd_bpp / n).tolist(),
            "usage": (counts > 0).float().mean(1).tolist()}


@torch.no_grad()
def evaluate_stages(model: ImageVQVAE, images: list[torch.Tensor]) -> dict:
    """Reconstruct each (3, H, W) uint8 image at every stage count.

    Returns {"psnr": [S floats, mean over images], "usage": [S fractions of codes used over all images],
    "perplexity": [S]}. The model may be on any device (the images are moved to it).
    """
    model.eval()
    device = module_device(model)
    S, K = model.cfg.num_stages, model.cfg.num_codes
    psnrs = torch.zeros(S)
    counts = torch.zeros(S, K)
    for im in images:
        x = im[None].to(device).float() / 255.0
        h, w = x.shape[-2:]
        idx = model.encode_indices(pad_to_multiple(x, model.factor))
        for s in range(S):
            counts[s] += torch.bincount(idx[0, s].reshape(-1), minlength=K).float().cpu()
            x_hat = model.decode_indices(idx[:, : s + 1])[..., :h, :w]
            psnrs[s] += psnr(x_hat, x)
    p = counts / counts.sum(1, keepdim=True)
    perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum(1))
    return {
        "psnr": (psnrs / len(images)).tolist(),
        "usage": (counts > 0).float().mean(1).tolist(),
        "perplexity": perplexity.tolist(),
    }


def export_image_model(model: ImageVQVAE, path: str | Path, model_id: str = IMAGE_MODEL_ID) -> None:
    """Write the release weights (float32 tensors, config in the metadata)."""
    save_weights(path, model.release_state(), model_id, model.cfg.to_dict())


@torch.no_grad()
def _grown_latent_state(model: ImageVQVAE, released: ImageVQVAE, images: list[torch.Tensor]) -> dict:
    """`released`'s tensors widened to `model`'s larger latent (D' > D), such that `model` computes exactly
    what `released` does wherever the extra latent dimensions are zero.

    The extra dimensions d = D..D'-1 are the block-PCA components D+1..D' of `images` (uint8 (3, H, W)):
    the linear analysis path projects onto them and the linear synthesis path adds them back, so the
    unquantized model reconstructs more detail (measured on 12 held-out training photos: block PCA caps
    at 37.3 dB with 64 components, 43.2 with 96, 49.8 with 128). The nets' rows and columns for the new
    dimensions and the codebooks' new coordinates start at zero: a latent reconstructed from the first
    8 stages of the released codebooks has zeros there, so those depths decode as before.
    """
    d_old, d_new = released.cfg.latent_dim, model.cfg.latent_dim
    mean, basis = block_pca(images, d_new)
    extra = basis[:, d_old:].float()  # (192, D' - D)
    old, new = released.state_dict(), model.state_dict()
    grown = {}
    for key, target in new.items():
        if key not in old:
            continue
        src = old[key]
        if src.shape == target.shape:
            grown[key] = src
            continue
        out = torch.zeros_like(target)
        if key == "encoder.linear.proj.weight":  # (D', 192, 1, 1)
            out[:d_old] = src
            out[d_old:] = extra.T.reshape(-1, 192, 1, 1)
        elif key == "encoder.linear.proj.bias":  # (D',)
            out[:d_old] = src
            out[d_old:] = -(mean.float() @ extra)
        elif key == "decoder.linear.proj.weight":  # (192, D', 1, 1)
            out[:, :d_old] = src
            out[:, d_old:] = extra.reshape(192, -1, 1, 1)
        elif src.dim() >= 1 and src.shape[0] == d_old and target.shape[0] == d_new:  # rows: to_latent, codebooks
            out[:d_old] = src
        elif src.dim() >= 2 and src.shape[1] == d_old and target.shape[1] == d_new:  # columns: from_latent, codebooks
            out[:, :d_old] = src
        else:
            raise ValueError(f"cannot widen {key} from {tuple(src.shape)} to {tuple(target.shape)}")
        grown[key] = out
    return grown


def _load_compatible(model: ImageVQVAE, released: ImageVQVAE, source: str, images: list[torch.Tensor]) -> None:
    """Start `model` from `released` weights whose config may differ only by the number of stages, a depth input,
    refinement levels or a wider latent: the stages `released` lacks start from k-means on the first batch (a
    model of fewer stages keeps the first ones), the depth embedding at zero (the vectors of depths both have,
    and of refinement levels both have, are kept), the extra latent dimensions as `_grown_latent_state` says."""
    ours, theirs = model.cfg.to_dict(), released.cfg.to_dict()
    differ = {k for k in ours if ours[k] != theirs.get(k)}
    if (not differ <= {"num_stages", "depth_input", "latent_dim", "refine_levels", "refine_first_shift"}
            or released.cfg.latent_dim > model.cfg.latent_dim):
        raise ValueError(f"{source} has config {theirs}, this run builds {ours}; pass the matching model settings "
                         f"(only the number of stages, a depth input, refinement levels or a wider latent may differ)")
    state = model.state_dict()
    source_state = (_grown_latent_state(model, released, images) if "latent_dim" in differ
                    else released.state_dict())
    key = "decoder.depth_embedding.weight"
    if key in source_state and key in state and source_state[key].shape != state[key].shape:
        src, out = source_state[key], torch.zeros_like(state[key])  # depths 0..S, then levels 1..R
        s_old, s_new = released.cfg.num_stages, model.cfg.num_stages
        keep = min(s_old, s_new) + 1
        out[:keep] = src[:keep]
        r = min(released.cfg.refine_levels, model.cfg.refine_levels)
        out[s_new + 1 : s_new + 1 + r] = src[s_old + 1 : s_old + 1 + r]
        source_state = {**source_state, key: out}
    loaded = {k: v for k, v in source_state.items() if k in state and state[k].shape == v.shape}
    model.load_state_dict(loaded, strict=False)
    for vq in model.quantizer.stages[: min(released.cfg.num_stages, model.cfg.num_stages)]:
        vq.reset_training_state()  # EMA statistics restart from the (possibly widened) codebooks
    for s in range(released.cfg.num_stages, model.cfg.num_stages):
        model.quantizer.stages[s].initialized.fill_(False)  # k-means on the first training batch
    log.info("initialised %d tensors from %s; new: %s", len(loaded), source, sorted(set(state) - set(loaded))[:6])


class RefiningVQVAE(nn.Module):
    """The training forward of `--refine-prob`: `ImageVQVAE.forward`, except that the crops flagged in `refine`
    decode a refined latent instead of the quantized one. The refinement uses the detached latent, so the decoder
    learns to render refined latents while the encoder trains through the VQ path only (no rate term could stop
    it from growing its latents past the refinement's error). Two kinds:
    - a model without `refine_levels`: the latent plus uniform noise of the crop's width (the additive-noise proxy
      of a scalar quantizer, Balle et al. 2017);
    - a model with `refine_levels`: what the codec's refinement layers decode, the reconstruction of the first
      `base_stages` VQ stages plus the residual rounded to the crop's level's step, and the decoder is told the
      level (depth S + level) for every block of the crop.
    A module of its own so that DistributedDataParallel wraps this forward (its only parameters are the model's)."""

    def __init__(self, net: ImageVQVAE, base_stages: int = 2) -> None:
        super().__init__()
        self.net = net
        self.base_stages = base_stages

    def forward(self, x: torch.Tensor, active: torch.Tensor, rule, refine: torch.Tensor, step: torch.Tensor,
                level: torch.Tensor | None = None):
        """x (B, 3, H, W); active and rule as `ImageVQVAE.forward`; refine (B,) bool; step (B,) noise widths or
        rounding steps (latent units); level (B,) int64 1..R (models with `refine_levels`, else None)
        -> (x_hat, the quantizer output of every crop)."""
        net = self.net
        z = net.encoder(x)
        b, _, h, w = z.shape
        if isinstance(active, torch.Tensor) and active.shape[0] == b:
            active = active.repeat_interleave(h * w)
        flat = net._flatten(z)
        q = net.quantizer(flat, active, rule)
        quantized = net._unflatten(q.quantized, b, h, w)
        depth = q.active.reshape(b, h, w) if net.cfg.depth_input else None
        st = step.to(z.dtype)[:, None, None, None]
        if level is None:  # the noise is drawn on the CPU (a stream the checkpoints keep), then moved
            refined = z.detach() + (torch.rand_like(z, device="cpu").to(z.device) - 0.5) * st
        else:
            with torch.no_grad(), torch.autocast(z.device.type, enabled=False):
                flat32 = flat.detach().float()
                base = net._unflatten(net.quantizer.decode(net.quantizer.encode(flat32, self.base_stages)), b, h, w)
                refined = (base + torch.round((z.detach().float() - base) / st) * st).to(z.dtype)
            depth = torch.where(refine[:, None, None], net.cfg.num_stages + level[:, None, None], depth)
        dec_in = torch.where(refine[:, None, None, None], refined, quantized)
        return net.decoder(dec_in, depth), q


class ImageTask(Task):
    """The image VQ-VAE as a `Task`: reconstruction MSE + VQ commitment loss on random crops, with
    quantizer dropout (a random number of active stages per crop)."""

    name = "image"
    # shape the random streams, the codebook updates and what trains: a resumed run keeps the checkpoint's
    run_defining = ("batch_size", "crop", "tournament", "ema_decay", "restart_after", "model", "decoder_only",
                    "depth_mode", "holdout", "channels_last", "encoder_lr_scale", "commitment", "refine_prob",
                    "refine_steps", "refine_level_weights", "freeze_codebooks", "commitment_weight")
    progress_keys = ("psnr_train_mixed", "vq_loss")
    devices = ("cpu", "cuda")
    config: TrainImageConfig

    def build(self, ctx: RunContext) -> Built:
        cfg = self.config
        if cfg.depth_mode not in DEPTH_MODES:
            raise ValueError(f"depth_mode must be one of {DEPTH_MODES}, got {cfg.depth_mode!r}")
        model = ImageVQVAE(ImageModelConfig(**cfg.model))
        for vq in model.quantizer.stages:
            vq.decay, vq.restart_after = cfg.ema_decay, cfg.restart_after
        if cfg.commitment not in ("full", "active"):
            raise ValueError(f"commitment must be 'full' or 'active', got {cfg.commitment!r}")
        model.quantizer.commit_to_active = cfg.commitment == "active"
        if cfg.commitment_weight is not None:  # a training setting: weights files do not hold it
            if cfg.commitment_weight < 0:
                raise ValueError(f"commitment_weight must be >= 0, got {cfg.commitment_weight}")
            for vq in model.quantizer.stages:
                vq.beta = float(cfg.commitment_weight)
        train_files, held_files = split_holdout(cfg.data, cfg.holdout)
        images = [load_rgb(f) for f in train_files]
        log.info("training on %d images of %s (%d held out)", len(images), cfg.data, len(held_files))
        self.crops = RandomCrops(images, cfg.crop, seed=cfg.seed * 1000 + ctx.rank, tournament=cfg.tournament)
        self.val_images = []
        if ctx.rank == 0:
            val = load_folder(cfg.val_data)[: cfg.val_images] if cfg.val_data else [load_rgb(f) for f in held_files]
            self.val_images = [centre_crop(im, cfg.val_crop) for im in val]
        if not ctx.resuming and cfg.init_from:
            released, _ = load_image_model(cfg.init_from)  # EMA statistics restart from the codebooks
            _load_compatible(model, released, cfg.init_from, images)
        elif not ctx.resuming:
            model.init_linear_paths(images)  # block PCA of the training images (no-op without linear paths)
        if cfg.decoder_only:
            for p in list(model.encoder.parameters()) + list(model.quantizer.parameters()):
                p.requires_grad_(False)
        if cfg.freeze_codebooks:  # the encoder learns to use the codebooks as they are (no EMA, no restarts)
            for p in model.quantizer.parameters():
                p.requires_grad_(False)
        if cfg.encoder_lr_scale == 0:  # a frozen encoder; the codebooks still follow its latents (EMA)
            for p in model.encoder.parameters():
                p.requires_grad_(False)
        linear = {id(p) for m in (model.encoder.linear, model.decoder.linear) if m is not None for p in m.parameters()}
        # its own group only when it has its own rate, so runs of earlier releases keep their optimizer layout
        encoder = ({id(p) for p in model.encoder.parameters()} - linear) if cfg.encoder_lr_scale != 1.0 else set()
        trainable = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trainable if id(p) not in linear | encoder], "lr_scale": 1.0},
            {"params": [p for p in trainable if id(p) in encoder], "lr_scale": cfg.encoder_lr_scale},
            # The block transforms carry the whole picture: full-lr Adam steps on them shift every latent at
            # once, the EMA codebooks lag behind and the run destabilises (measured: -1.8 dB at stage 1
            # between steps 1000 and 1500 at lr 4e-4).
            {"params": [p for p in trainable if id(p) in linear], "lr_scale": cfg.linear_lr_scale},
        ]
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        weights = cfg.refine_level_weights
        if weights and (len(weights) != model.cfg.refine_levels or min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"refine_level_weights needs {model.cfg.refine_levels} non-negative weights (one per "
                             f"refinement level), got {weights}")
        train_module = RefiningVQVAE(model, REFINE_BASE_STAGES) if cfg.refine_prob > 0 else None
        return Built(model, groups, OptimizerSpec("adam", betas=(0.9, 0.99)), train_module)

    def train_mode(self, model: nn.Module) -> None:
        model.train()
        if self.config.decoder_only:
            model.encoder.eval()
        if self.config.decoder_only or self.config.freeze_codebooks:
            model.quantizer.eval()  # no EMA updates, no restarts: the codebooks stay as they are

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Crops (B, 3, P, P) float32 in [0, 1], active stage counts and per-crop Lagrange multipliers.

        depth_mode crop: counts (B,) int64 in [1, S], multipliers None; block: counts (B*h*w,) per 8x8
        block; rd: counts (B,) = S for full-rate crops, multipliers (B,) float32 (NaN: full rate)."""
        cfg, S = self.config, self.model.cfg.num_stages
        x = self.crops.batch(cfg.batch_size)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if cfg.depth_mode == "rd":
            full = torch.rand(cfg.batch_size) < cfg.full_rate_prob
            q = torch.randint(1, QUALITY_MAX, (cfg.batch_size,))
            lam = torch.tensor([lagrange_multiplier(int(v)) for v in q], dtype=torch.float32)
            return x, torch.full((cfg.batch_size,), S), torch.where(full, torch.nan, lam)
        if cfg.depth_mode == "block":
            full = torch.rand(cfg.batch_size) < cfg.full_rate_prob
            blocks = (cfg.crop // self.model.factor) ** 2
            active = torch.randint(1, S + 1, (cfg.batch_size, blocks))
            active = torch.where(full[:, None], S, active).reshape(-1)
            return x, active, None
        # the draws in the order of the v3 recipe, so its commands reproduce their runs
        active = torch.randint(1, S + 1, (cfg.batch_size,))
        active = torch.where(torch.rand(cfg.batch_size) < cfg.full_rate_prob, torch.full_like(active, S), active)
        return x, active, None

    def loss(self, model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        """batch: `batch()`'s tensors on the model's device. The refinement draws are made on the CPU (the random
        streams the checkpoints keep) and moved there."""
        x, active, lam = batch
        device = module_device(model)
        rule = None
        if lam is not None:
            per_block = lam.repeat_interleave((x.shape[-2] // 8) * (x.shape[-1] // 8))
            full = torch.isnan(per_block)
            S = self.model.cfg.num_stages

            def rule(errors: torch.Tensor) -> torch.Tensor:
                depths = choose_depths(errors, torch.nan_to_num(per_block, nan=0.0)[:, None])
                return torch.where(full, S, depths)
        cfg = self.config
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            if cfg.refine_prob > 0:  # model: the RefiningVQVAE (under DDP, wrapped)
                refine = torch.rand(x.shape[0]) < cfg.refine_prob
                levels = self.model.cfg.refine_levels
                if levels and cfg.refine_level_weights:  # a level per crop, drawn by the weights
                    weights = torch.tensor(cfg.refine_level_weights, dtype=torch.float64)
                    level = torch.multinomial(weights, x.shape[0], replacement=True) + 1
                elif levels:  # a level per crop; the decoder is told it
                    level = torch.randint(1, levels + 1, (x.shape[0],))
                if levels:
                    step = torch.tensor([self.model.cfg.refinement_step(int(j)) for j in level])
                else:
                    lo, hi = (math.log(v) for v in cfg.refine_steps)
                    level, step = None, torch.exp(lo + (hi - lo) * torch.rand(x.shape[0]))
                level = None if level is None else level.to(device)
                x_hat, q = model(x, active, rule, refine.to(device), step.to(device), level)
                refined = float(refine.float().mean())
            else:
                (x_hat, q), refined = model(x, active, rule), 0.0
        mse = F.mse_loss(x_hat.float(), x)
        return mse + q.loss, {
            **({"refined": refined} if cfg.refine_prob > 0 else {}),
            "mean_depth": float(q.active.float().mean()),
            "mse": mse.item(),
            "psnr_train_mixed": 10 * math.log10(1 / max(mse.item(), 1e-10)),
            "vq_loss": q.loss.item(),
            "usage": q.usage.tolist(),
        }

    def log_fields(self, model: nn.Module) -> dict:
        return {"restarts": [vq.restarts for vq in model.quantizer.stages]}  # since this invocation started

    def validate(self, model: nn.Module) -> dict:
        if not self.val_images:
            return {}
        ev = evaluate_rd(model, self.val_images)
        log.info("val psnr at stages %s: %s; rd %s", ev["stages"], [round(v, 2) for v in ev["psnr"]],
                 [(round(b, 3), round(p, 2)) for b, p in zip(ev["rd_bpp"], ev["rd_psnr"])])
        if self.config.refine_prob > 0:
            ev["refine"] = evaluate_refinement(model, self.val_images)
            log.info("val refinement psnr %s", ev["refine"])
        return {"val": ev}

    def export(self, model: nn.Module, out_dir: Path) -> None:
        export_image_model(model, out_dir / EXPORT_NAME, self.config.model_id)

    def state_dict(self) -> dict:
        return {"crops": self.crops.state()}

    def load_state_dict(self, state: dict) -> None:
        self.crops.load_state(state["crops"])


REFINE_VAL_STEPS = (0.25, 0.125, 0.0625)
REFINE_BASE_STAGES = 2
"""VQ stages under the refinement of a model with `refine_levels` (training and validation)."""


@torch.no_grad()
def evaluate_refinement(model: ImageVQVAE, images: list[torch.Tensor], base_stages: int | None = None,
                        steps: tuple[float, ...] | None = None) -> dict:
    """Mean PSNR (dB) of images (3, H, W) uint8 decoded from their first `base_stages` stages plus the residual
    rounded to each uniform step (a scalar refinement layer), and from the unquantized latent:
    {"base_stages", "steps", "psnr": [per step], "unquantized"}. Defaults: a model with `refine_levels` R is
    measured at its levels' steps over `REFINE_BASE_STAGES` stages and told each level (the unquantized latent:
    level R); any other at `REFINE_VAL_STEPS` over 4 stages, and a decoder with a depth input is told
    `base_stages` for every block. The model may be on any device (the images are moved to it)."""
    model.eval()
    device = module_device(model)
    cfg = model.cfg
    levels = cfg.refine_levels
    if base_stages is None:
        base_stages = REFINE_BASE_STAGES if levels else 4
    if steps is None:
        steps = tuple(cfg.refinement_step(j) for j in range(1, levels + 1)) if levels else REFINE_VAL_STEPS
    level_of = {cfg.refinement_step(j): j for j in range(1, levels + 1)}
    psnrs, clean = torch.zeros(len(steps)), 0.0
    for im in images:
        x = im[None].to(device).float() / 255.0
        z = model.encoder(x)
        b, _, h, w = z.shape
        flat = model._flatten(z)
        base = model.quantizer.decode(model.quantizer.encode(flat, base_stages))

        def depth_map(step: float | None) -> torch.Tensor | None:
            if not cfg.depth_input:
                return None
            if levels:
                return torch.full((b, h, w), cfg.num_stages + level_of.get(step, levels), device=device)
            return torch.full((b, h, w), base_stages, device=device)

        for i, st in enumerate(steps):
            refined = base + torch.round((flat - base) / st) * st
            psnrs[i] += psnr(model.decoder(model._unflatten(refined, b, h, w), depth_map(st)), x)
        clean += psnr(model.decoder(z, depth_map(None)), x)
    n = len(images)
    return {"base_stages": base_stages, "steps": list(steps), "psnr": (psnrs / n).tolist(), "unquantized": clean / n}


def train_image(cfg: TrainImageConfig) -> ImageVQVAE:
    """Run (or with cfg.resume, continue) the training run described by `cfg`. Returns the model."""
    return TrainingLoop(ImageTask(cfg)).run().model
