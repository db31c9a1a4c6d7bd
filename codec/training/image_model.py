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

from vqcodec.image.data import RandomCrops, load_folder
from vqcodec.image.model import ImageModelConfig, ImageVQVAE, load_image_model, pad_to_multiple
from vqcodec.training.loop import Built, LoopConfig, OptimizerSpec, RunContext, Task, TrainingLoop
from vqcodec.weights.io import save_weights

__all__ = ["TrainImageConfig", "ImageTask", "train_image", "evaluate_stages", "export_image_model", "psnr",
           "IMAGE_MODEL_ID"]

log = logging.getLogger(__name__)
IMAGE_MODEL_ID = "image-f8-s8-k512-v3"
EXPORT_NAME = "image_model.safetensors"


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
    full_rate_prob: float = 0.5  # quantizer dropout: all S stages with this probability, else uniform 1..S
    init_from: str | None = None  # start (not resume) from released weights, e.g. the shipped model
    decoder_only: bool = False  # freeze encoder + codebooks, train the decoder (indices stay fixed)
    linear_lr_scale: float = 0.1  # learning rate of the linear block paths, relative to lr
    ema_decay: float = 0.99  # EMA codebook decay per step
    restart_after: int = 50  # re-seed a code unused for this many steps (0: never)
    tournament: int = 1  # candidate crops per batch entry; the most detailed is kept (see RandomCrops)
    model: dict = field(default_factory=dict)  # ImageModelConfig fields (defaults for missing ones)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of two float images in [0, 1] after rounding both to 8 bits."""
    a = (x.clamp(0, 1) * 255).round()
    b = (y.clamp(0, 1) * 255).round()
    mse = F.mse_loss(a, b).item()
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


@torch.no_grad()
def evaluate_stages(model: ImageVQVAE, images: list[torch.Tensor]) -> dict:
    """Reconstruct each (3, H, W) uint8 image at every stage count.

    Returns {"psnr": [S floats, mean over images], "usage": [S fractions of codes used over all images],
    "perplexity": [S]}.
    """
    model.eval()
    S, K = model.cfg.num_stages, model.cfg.num_codes
    psnrs = torch.zeros(S)
    counts = torch.zeros(S, K)
    for im in images:
        x = im[None].float() / 255.0
        h, w = x.shape[-2:]
        idx = model.encode_indices(pad_to_multiple(x, model.factor))
        for s in range(S):
            counts[s] += torch.bincount(idx[0, s].reshape(-1), minlength=K).float()
            x_hat = model.decode_indices(idx[:, : s + 1])[..., :h, :w]
            psnrs[s] += psnr(x_hat, x)
    p = counts / counts.sum(1, keepdim=True)
    perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum(1))
    return {
        "psnr": (psnrs / len(images)).tolist(),
        "usage": (counts > 0).float().mean(1).tolist(),
        "perplexity": perplexity.tolist(),
    }


def export_image_model(model: ImageVQVAE, path: str | Path) -> None:
    """Write the release weights (float32 tensors, config in the metadata)."""
    save_weights(path, model.release_state(), IMAGE_MODEL_ID, model.cfg.to_dict())


class ImageTask(Task):
    """The image VQ-VAE as a `Task`: reconstruction MSE + VQ commitment loss on random crops, with
    quantizer dropout (a random number of active stages per crop)."""

    name = "image"
    # shape the random streams, the codebook updates and what trains: a resumed run keeps the checkpoint's
    run_defining = ("batch_size", "crop", "tournament", "ema_decay", "restart_after", "model", "decoder_only")
    progress_keys = ("psnr_train_mixed", "vq_loss")
    config: TrainImageConfig

    def build(self, ctx: RunContext) -> Built:
        cfg = self.config
        model = ImageVQVAE(ImageModelConfig(**cfg.model))
        for vq in model.quantizer.stages:
            vq.decay, vq.restart_after = cfg.ema_decay, cfg.restart_after
        images = load_folder(cfg.data)
        self.crops = RandomCrops(images, cfg.crop, seed=cfg.seed * 1000 + ctx.rank, tournament=cfg.tournament)
        self.val_images = load_folder(cfg.val_data)[: cfg.val_images] if (cfg.val_data and ctx.rank == 0) else []
        if not ctx.resuming and cfg.init_from:
            released, _ = load_image_model(cfg.init_from)  # EMA statistics restart from the codebooks
            if released.cfg != model.cfg:
                raise ValueError(f"{cfg.init_from} has config {released.cfg.to_dict()}, this run builds "
                                 f"{model.cfg.to_dict()}; pass the matching model settings")
            model.load_state_dict(released.state_dict())
            log.info("initialised from %s", cfg.init_from)
        elif not ctx.resuming:
            model.init_linear_paths(images)  # block PCA of the training images (no-op without linear paths)
        if cfg.decoder_only:
            for p in list(model.encoder.parameters()) + list(model.quantizer.parameters()):
                p.requires_grad_(False)
        linear = {id(p) for m in (model.encoder.linear, model.decoder.linear) if m is not None for p in m.parameters()}
        trainable = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trainable if id(p) not in linear], "lr_scale": 1.0},
            # The block transforms carry the whole picture: full-lr Adam steps on them shift every latent at
            # once, the EMA codebooks lag behind and the run destabilises (measured: -1.8 dB at stage 1
            # between steps 1000 and 1500 at lr 4e-4).
            {"params": [p for p in trainable if id(p) in linear], "lr_scale": cfg.linear_lr_scale},
        ]
        self.model = model
        return Built(model, groups, OptimizerSpec("adam", betas=(0.9, 0.99)))

    def train_mode(self, model: nn.Module) -> None:
        model.train()
        if self.config.decoder_only:
            model.encoder.eval()
            model.quantizer.eval()  # no EMA updates, no restarts: indices stay fixed

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Crops (B, 3, P, P) float32 in [0, 1] and active stage counts (B,) int64 in [1, S]."""
        cfg, S = self.config, self.model.cfg.num_stages
        x = self.crops.batch(cfg.batch_size)
        active = torch.randint(1, S + 1, (cfg.batch_size,))
        active = torch.where(torch.rand(cfg.batch_size) < cfg.full_rate_prob, torch.full_like(active, S), active)
        return x, active

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x, active = batch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bf16):
            x_hat, q = model(x, active)
        mse = F.mse_loss(x_hat.float(), x)
        return mse + q.loss, {
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
        ev = evaluate_stages(model, self.val_images)
        log.info("val psnr per stage %s", [round(v, 2) for v in ev["psnr"]])
        return {"val": ev}

    def export(self, model: nn.Module, out_dir: Path) -> None:
        export_image_model(model, out_dir / EXPORT_NAME)

    def state_dict(self) -> dict:
        return {"crops": self.crops.state()}

    def load_state_dict(self, state: dict) -> None:
        self.crops.load_state(state["crops"])


def train_image(cfg: TrainImageConfig) -> ImageVQVAE:
    """Run (or with cfg.resume, continue) the training run described by `cfg`. Returns the model."""
    return TrainingLoop(ImageTask(cfg)).run().model
