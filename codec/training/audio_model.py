"""Training of the speech VQ-VAE: random crops, quantizer dropout, the reconstruction losses of
`audio_losses`, validation on held-out utterances (STOI, PESQ-WB, mel distance, code usage per stage).

The loop (schedule, checkpoints with exact resume, log, stop conditions, DDP under torchrun) is
`vqcodec.training.loop.TrainingLoop`; this module supplies `AudioTask`.

Entry points: `train_audio(TrainAudioConfig(...))`, and the command `vqcodec train audio --data DIR --out DIR
...` (under torchrun: `torchrun ... -m vqcodec.cli.main train audio ...`; `--help` lists the flags).

Files written to `out`:
  checkpoint.pt            resumable state (see vqcodec.training.checkpoint); not a release artefact
  log.jsonl                per log interval: step, time_s, lr, loss, the loss terms, vq_loss, usage per
                           stage, samples_per_s (crops/s; x crop_seconds = seconds of audio per second);
                           validation: {"val": evaluate_audio()}
  audio_model.safetensors  the exported weights (written at every checkpoint)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from vqcodec.audio.data import RandomAudioCrops, list_audio, load_folder, split_holdout
from vqcodec.audio.model import SAMPLE_RATE, AudioModelConfig, AudioVQVAE, load_audio_model
from vqcodec.training.audio_losses import AudioLoss, AudioLossConfig
from vqcodec.training.loop import Built, LoopConfig, OptimizerSpec, RunContext, Task, TrainingLoop
from vqcodec.weights.io import save_weights

__all__ = ["TrainAudioConfig", "AudioTask", "train_audio", "evaluate_audio", "export_audio_model",
           "audio_command", "AUDIO_MODEL_ID", "EXPORT_NAME"]

log = logging.getLogger(__name__)
AUDIO_MODEL_ID = "audio-h320-s16-k512-v1"
EXPORT_NAME = "audio_model.safetensors"


@dataclass(kw_only=True)
class TrainAudioConfig(LoopConfig):
    """Loop settings (see LoopConfig) plus the audio model's."""

    data: str  # folder of training audio (any rate; resampled to 16 kHz mono)
    out: str
    steps: int = 20000
    lr: float = 5e-4
    batch_size: int = 8
    crop_seconds: float = 2.0
    holdout: int = 10  # utterances of --data held out for validation (chosen by name, see split_holdout)
    val_seconds: float = 8.0  # validate on at most this much of each held-out utterance
    val_stages: tuple[int, ...] = (3, 6, 16)  # stage counts validated (clipped to the model's S)
    val_data: str | None = None  # optional extra validation folder (first val_clips files)
    val_clips: int = 5
    bf16: bool = True
    full_rate_prob: float = 0.5  # quantizer dropout: all S stages with this probability, else uniform 1..S
    gain_db: tuple[float, float] = (-6.0, 6.0)  # random gain of the training crops
    ema_decay: float = 0.99
    restart_after: int = 50
    grad_clip: float = 10.0
    init_from: str | None = None  # start (not resume) from released weights
    model: dict = field(default_factory=dict)  # AudioModelConfig fields (defaults for missing ones)
    loss: dict = field(default_factory=dict)  # AudioLossConfig fields


@torch.no_grad()
def evaluate_audio(model: AudioVQVAE, clips: list[torch.Tensor], stages: tuple[int, ...]) -> dict:
    """Code each (T,) float32 16 kHz clip at each stage count in `stages` and score it.

    Returns {"stages": [...], "stoi": [...], "pesq_wb": [...], "mel_distance": [...] (means over clips,
    one per stage count), "kbps": [raw kbit/s per stage count], "usage": [fraction of the K codes used
    per stage over all clips, all S stages], "perplexity": [S]}.
    """
    from vqcodec.metrics.audio import score  # training/benchmark-only dependency (pesq, pystoi)

    model.eval()
    cfg = model.cfg
    stages = tuple(sorted({min(max(s, 1), cfg.num_stages) for s in stages}))
    sums = {k: [0.0] * len(stages) for k in ("stoi", "pesq_wb", "mel_distance")}
    counts = torch.zeros(cfg.num_stages, cfg.num_codes)
    for clip in clips:
        n = clip.numel()
        x = torch.nn.functional.pad(clip, (0, (-n) % cfg.hop))[None]
        idx = model.encode_indices(x)
        for s in range(cfg.num_stages):
            counts[s] += torch.bincount(idx[0, s], minlength=cfg.num_codes).float()
        for i, s in enumerate(stages):
            y = model.decode_indices(idx[:, :s])[0, :n]
            for k, v in score(clip, y, SAMPLE_RATE).items():
                if k in sums:
                    sums[k][i] += v
    p = counts / counts.sum(1, keepdim=True).clamp_min(1)
    perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum(1))
    return {
        "stages": list(stages),
        "kbps": [round(cfg.kbps(s), 3) for s in stages],
        **{k: [v / max(len(clips), 1) for v in vals] for k, vals in sums.items()},
        "usage": (counts > 0).float().mean(1).tolist(),
        "perplexity": perplexity.tolist(),
    }


def export_audio_model(model: AudioVQVAE, path: str | Path) -> None:
    """Write the release weights (stored as float16, loaded as float32; config in the metadata)."""
    save_weights(path, model.release_state(), AUDIO_MODEL_ID, model.cfg.to_dict(), half=True)


class AudioTask(Task):
    """The audio VQ-VAE as a `Task`: `AudioLoss` + VQ commitment on random crops, with quantizer dropout
    (a random number of active stages per crop, so every prefix of stages is a valid lower quality)."""

    name = "audio"
    run_defining = ("batch_size", "crop_seconds", "holdout", "gain_db", "ema_decay", "restart_after", "model",
                    "loss", "full_rate_prob")
    progress_keys = ("mel", "vq_loss")
    config: TrainAudioConfig

    def build(self, ctx: RunContext) -> Built:
        cfg = self.config
        model = AudioVQVAE(AudioModelConfig.from_dict(cfg.model))
        for vq in model.quantizer.stages:
            vq.decay, vq.restart_after = cfg.ema_decay, cfg.restart_after
        train_files, held = split_holdout(list_audio(cfg.data), cfg.holdout)
        crop = int(round(cfg.crop_seconds * SAMPLE_RATE)) // model.hop * model.hop
        if crop < model.hop:
            raise ValueError(f"crop_seconds={cfg.crop_seconds} is shorter than one frame ({model.hop} samples)")
        self.crops = RandomAudioCrops(load_folder(cfg.data, train_files), crop, seed=cfg.seed * 1000 + ctx.rank,
                                      gain_db=tuple(cfg.gain_db))
        self.val_clips: list[torch.Tensor] = []
        self.extra_clips: list[torch.Tensor] = []
        if ctx.rank == 0:
            limit = int(cfg.val_seconds * SAMPLE_RATE)
            self.val_clips = [c[:limit] for c in load_folder(cfg.data, held)] if held else []
            if cfg.val_data:
                extra = list_audio(cfg.val_data)[: cfg.val_clips]
                self.extra_clips = [c[:limit] for c in load_folder(cfg.val_data, extra)]
        if not ctx.resuming and cfg.init_from:
            model.load_state_dict(_initial_state(cfg.init_from, model))
            log.info("initialised from %s", cfg.init_from)
        self.model = model
        self.loss_fn = AudioLoss(AudioLossConfig(**cfg.loss))
        return Built(model, None, OptimizerSpec("adamw", betas=(0.9, 0.99), weight_decay=0.0,
                                                grad_clip=cfg.grad_clip))

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Crops (B, L) float32 and active stage counts (B,) int64 in [1, S]."""
        cfg, s = self.config, self.model.cfg.num_stages
        x = self.crops.batch(cfg.batch_size)
        active = torch.randint(1, s + 1, (cfg.batch_size,))
        active = torch.where(torch.rand(cfg.batch_size) < cfg.full_rate_prob, torch.full_like(active, s), active)
        return x, active

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x, active = batch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bf16):
            y, q = model(x, active)
        rec, terms = self.loss_fn(x, y)
        return rec + q.loss, {**{k: v.item() for k, v in terms.items()}, "vq_loss": q.loss.item(),
                              "usage": q.usage.tolist()}

    def log_fields(self, model: nn.Module) -> dict:
        # code restarts per stage since this invocation started (the loop logs the run's CPU seconds)
        return {"restarts": [vq.restarts for vq in model.quantizer.stages]}

    def samples_per_step(self) -> int:
        return self.config.batch_size

    def validate(self, model: nn.Module) -> dict:
        out = {}
        if self.val_clips:
            out["val"] = evaluate_audio(model, self.val_clips, tuple(self.config.val_stages))
            log.info("val stoi %s pesq %s", [round(v, 3) for v in out["val"]["stoi"]],
                     [round(v, 2) for v in out["val"]["pesq_wb"]])
        if self.extra_clips:
            out["val_extra"] = evaluate_audio(model, self.extra_clips, tuple(self.config.val_stages))
        return out

    def export(self, model: nn.Module, out_dir: Path) -> None:
        export_audio_model(model, out_dir / EXPORT_NAME)

    def state_dict(self) -> dict:
        return {"crops": self.crops.state()}

    def load_state_dict(self, state: dict) -> None:
        self.crops.load_state(state["crops"])


def _initial_state(path: str, model: AudioVQVAE) -> dict[str, torch.Tensor]:
    """The state a new run starts from: released weights (.safetensors; EMA statistics restart from the
    codebooks) or another run's checkpoint.pt (float32 weights and EMA statistics as they were)."""
    if Path(path).suffix == ".pt":
        state = torch.load(path, map_location="cpu", weights_only=True)["model"]
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"{path} was not written by a run of this audio model config; pass the matching "
                             f"model settings ({e})") from None
        return state
    released, _ = load_audio_model(path)
    if released.cfg != model.cfg:
        raise ValueError(f"{path} has config {released.cfg.to_dict()}, this run builds "
                         f"{model.cfg.to_dict()}; pass the matching model settings")
    return released.state_dict()


def train_audio(cfg: TrainAudioConfig) -> AudioVQVAE:
    """Run (or with cfg.resume, continue) the training run described by `cfg`. Returns the model."""
    return TrainingLoop(AudioTask(cfg)).run().model

