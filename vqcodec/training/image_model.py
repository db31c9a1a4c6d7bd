"""Training of the image VQ-VAE: random crops, quantizer dropout, periodic Kodak validation,
time-based checkpoints with exact resume, and DistributedDataParallel under torchrun.

Entry point: `train_image(TrainImageConfig(...))`, used by `vqcodec train image`.
Under `torchrun --nproc_per_node N` the same entry point runs N replicas (gloo on CPU, nccl on GPU);
rank 0 validates, logs and checkpoints.

Files written to `out_dir`:
  checkpoint.pt           resumable state (model, optimizer, step, RNG states); not a release artefact
  log.jsonl               one JSON object per logged step / validation
  image_model.safetensors the exported weights (written at the end and at every checkpoint)
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from vqcodec.files import atomic_write

from vqcodec.image.data import RandomCrops, load_folder
from vqcodec.image.model import ImageModelConfig, ImageVQVAE, load_image_model, pad_to_multiple
from vqcodec.weights.io import save_weights

__all__ = ["TrainImageConfig", "train_image", "evaluate_stages", "export_image_model", "IMAGE_MODEL_ID"]

log = logging.getLogger(__name__)
IMAGE_MODEL_ID = "image-f8-s8-k512-v3"


@dataclass
class TrainImageConfig:
    data: str
    out: str
    steps: int = 10000
    batch_size: int = 8
    crop: int = 128
    lr: float = 2e-4
    warmup: int = 200
    min_lr_ratio: float = 0.05
    resume: bool = False
    val_data: str | None = None
    val_images: int = 6
    val_every: int = 500
    log_every: int = 25
    checkpoint_minutes: float = 4.0
    seed: int = 0
    threads: int | None = None
    bf16: bool = True
    stop_at_step: int | None = None  # stop early (with a checkpoint) at this step; resume later
    max_minutes: float | None = None  # stop early (with a checkpoint) after this much wall time
    full_rate_prob: float = 0.5  # quantizer dropout: all S stages with this probability, else uniform 1..S
    init_from: str | None = None  # start (not resume) from released weights, e.g. the shipped model
    decoder_only: bool = False  # freeze encoder + codebooks, train the decoder (indices stay fixed)
    linear_lr_scale: float = 0.1  # learning rate of the linear block paths, relative to lr
    ema_decay: float = 0.99  # EMA codebook decay per step
    restart_after: int = 50  # re-seed a code unused for this many steps (0: never)
    tournament: int = 1  # candidate crops per batch entry; the most detailed is kept (see RandomCrops)
    model: dict = field(default_factory=dict)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _lr_at(step: int, cfg: TrainImageConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


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


# Settings that shape the run's random stream and codebook updates: a resumed run keeps the checkpoint's.
RUN_DEFINING_KEYS = ("seed", "batch_size", "crop", "tournament", "ema_decay", "restart_after")


def _settings_from_checkpoint(cfg: TrainImageConfig, saved: dict) -> TrainImageConfig:
    """cfg with the checkpoint's RUN_DEFINING_KEYS (checkpoints older than a key ran with its default)."""
    defaults = {f.name: f.default for f in fields(TrainImageConfig)}
    changes = {}
    for key in RUN_DEFINING_KEYS:
        value = saved.get(key, defaults[key])
        if value != getattr(cfg, key):
            log.warning("--resume keeps the checkpoint's %s=%s (given %s); start a new run with --init-from "
                        "to change it", key, value, getattr(cfg, key))
            changes[key] = value
    return replace(cfg, **changes)


def _crop_states(crops: RandomCrops, distributed: bool) -> list[torch.Tensor]:
    """Every rank's crop-sampler state, in rank order (a collective call under DDP)."""
    if not distributed:
        return [crops.state()]
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, crops.state())
    return states


def _save_checkpoint(path: Path, model, opt, step: int, elapsed_s: float, crop_states: list[torch.Tensor],
                     cfg: TrainImageConfig) -> None:
    atomic_write(path, lambda tmp: torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "elapsed_s": elapsed_s,
            "crops_rng": crop_states,  # one state per rank
            "torch_rng": torch.get_rng_state(),
            "config": asdict(cfg),
        },
        tmp,
    ))


def train_image(cfg: TrainImageConfig) -> ImageVQVAE:
    """Run (or resume) a training run described by `cfg`. Returns the trained model."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = _rank()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"

    state = None
    if cfg.resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume given but no checkpoint at {ckpt_path}")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        cfg = _settings_from_checkpoint(cfg, state.get("config", {}))

    torch.manual_seed(cfg.seed)
    model = ImageVQVAE(ImageModelConfig(**cfg.model))
    for vq in model.quantizer.stages:
        vq.decay, vq.restart_after = cfg.ema_decay, cfg.restart_after
    images = load_folder(cfg.data)
    crops = RandomCrops(images, cfg.crop, seed=cfg.seed * 1000 + rank, tournament=cfg.tournament)
    val_images = load_folder(cfg.val_data)[: cfg.val_images] if (cfg.val_data and rank == 0) else []

    step = 0
    elapsed0 = 0.0  # wall seconds of training before this invocation (for learning curves)
    if state is not None:
        model.load_state_dict(state["model"])
        step = int(state["step"])
        elapsed0 = float(state.get("elapsed_s", 0.0))
    if state is None and cfg.init_from:
        released, _ = load_image_model(cfg.init_from)  # EMA statistics restart from the codebooks
        if released.cfg != model.cfg:
            raise ValueError(f"{cfg.init_from} has config {released.cfg.to_dict()}, this run builds {model.cfg.to_dict()}")
        model.load_state_dict(released.state_dict())
        log.info("initialised from %s", cfg.init_from)
    elif state is None:
        model.init_linear_paths(images)  # block PCA of the training images (no-op without linear paths)
    if cfg.decoder_only:
        for p in list(model.encoder.parameters()) + list(model.quantizer.parameters()):
            p.requires_grad_(False)
    linear_ids = {id(p) for m in (model.encoder.linear, model.decoder.linear) if m is not None for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) not in linear_ids], "lr_scale": 1.0},
        # The block transforms carry the whole picture: full-lr Adam steps on them shift every latent at
        # once, the EMA codebooks lag behind and the run destabilises (measured: -1.8 dB at stage 1
        # between steps 1000 and 1500 at lr 4e-4).
        {"params": [p for p in trainable if id(p) in linear_ids], "lr_scale": cfg.linear_lr_scale},
    ]
    opt = torch.optim.Adam([g for g in groups if g["params"]], lr=cfg.lr, betas=(0.9, 0.99))
    if state is not None:
        try:
            opt.load_state_dict(state["optimizer"])
        except ValueError:
            log.warning("optimizer state does not match this phase (decoder-only?): starting it fresh")
        saved_crops = state["crops_rng"]
        if isinstance(saved_crops, torch.Tensor):  # checkpoints before per-rank states: one state
            saved_crops = [saved_crops]
        world = dist.get_world_size() if distributed else 1
        if len(saved_crops) != world:
            raise ValueError(f"{ckpt_path} was written by {len(saved_crops)} process(es); resume it with "
                             f"the same number (this run has {world})")
        crops.load_state(saved_crops[rank])
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s at step %d", ckpt_path, step)

    train_model = model
    if distributed:
        train_model = torch.nn.parallel.DistributedDataParallel(model)

    log_file = open(out / "log.jsonl", "a") if rank == 0 else None
    last_ckpt = time.time()
    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=step, disable=rank != 0, desc="train image", unit="step")
    S = model.cfg.num_stages
    try:
        end = min(cfg.steps, cfg.stop_at_step or cfg.steps)
        while step < end:
            model.train()
            if cfg.decoder_only:
                model.encoder.eval()
                model.quantizer.eval()  # no EMA updates, no restarts: indices stay fixed
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, cfg) * g["lr_scale"]
            x = crops.batch(cfg.batch_size)
            active = torch.randint(1, S + 1, (cfg.batch_size,))
            active = torch.where(torch.rand(cfg.batch_size) < cfg.full_rate_prob, torch.full_like(active, S), active)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                x_hat, q = train_model(x, active)
            mse = F.mse_loss(x_hat.float(), x)
            loss = mse + q.loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
                rec = {
                    "step": step,
                    "time_s": round(elapsed0 + time.time() - t0, 1),
                    "lr": opt.param_groups[0]["lr"],
                    "mse": mse.item(),
                    "psnr_train_mixed": 10 * math.log10(1 / max(mse.item(), 1e-10)),
                    "vq_loss": q.loss.item(),
                    "usage": [round(u, 3) for u in q.usage.tolist()],
                    "restarts": [vq.restarts for vq in model.quantizer.stages],  # since the run (re)started
                }
                bar.set_postfix(psnr=f"{rec['psnr_train_mixed']:.2f}", vq=f"{rec['vq_loss']:.4f}")
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
            if rank == 0 and val_images and (step % cfg.val_every == 0 or step == cfg.steps):
                ev = evaluate_stages(model, val_images)
                rec = {"step": step, "time_s": round(elapsed0 + time.time() - t0, 1), "val": ev}
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
                log.info("step %d val psnr %s", step, [round(v, 2) for v in ev["psnr"]])
            out_of_time = cfg.max_minutes is not None and time.time() - t0 > cfg.max_minutes * 60
            due = torch.tensor(int(time.time() - last_ckpt > cfg.checkpoint_minutes * 60 or step == end) + 2 * int(out_of_time))
            if distributed:
                dist.broadcast(due, src=0)  # rank 0's clock decides, so all ranks reach the barrier together
            if bool(due):
                crop_states = _crop_states(crops, distributed)  # collective: every rank reaches it
                if rank == 0:
                    _save_checkpoint(ckpt_path, model, opt, step, elapsed0 + time.time() - t0, crop_states, cfg)
                    export_image_model(model, out / "image_model.safetensors")
                last_ckpt = time.time()
                if distributed:
                    dist.barrier()
                if int(due) >= 2:
                    log.info("stopping after %.1f minutes at step %d; resume with --resume", cfg.max_minutes, step)
                    break
    finally:
        bar.close()
        if log_file:
            log_file.close()
    return model
