"""Decoder-only training of the speech model: a new decoder on the frozen encoder and codebooks.

The base speech model (`--base`, a released `audio_vqvae.safetensors`) encodes every training utterance once
to its S stages of indices (cached in OUT/train_cache.pt with the pitch labels), so a step costs only the
decoder: draw crops of `crop_frames` frames, drop the stages past a random count (quantizer dropout: 1..S
uniformly, all S with probability `full_rate_prob`), look the remaining codes up in the base codebooks
(frozen), decode, and score against the crop's samples with `audio_losses.AudioLoss`. Files coded with the
base model decode with the new decoder: it reads the same indices.

Decoders (`decoder`):
  "istft": `ISTFTDecoder` with the base model's config updated by `model` (e.g. a longer `istft_n_fft`);
  "hn":    `HNDecoder` (harmonic-plus-noise): trained with the pitch track of the target as the oscillator
           bank's f0 and voicing (teacher forcing), and its f0 / voicing predictions supervised by that track
           (`f0_weight` x mean |log2 f0_pred - log2 f0| over voiced control points, in octaves;
           `voicing_weight` x binary cross-entropy). Pitch labels: WORLD's DIO + StoneMask every 5 ms
           (`ctrl_hop` = 80 samples), unvoiced points filled by log-linear interpolation.
Parameters whose names and shapes match the base decoder's start from it (`init_from_base`).

Files written to `out`: checkpoint.pt, log.jsonl (loss terms; validation {"val": {"stages", "stoi",
"pesq_wb", "mel_distance", "f0_octaves"}}), train_cache.pt, audio_decoder.safetensors (the decoder's
weights, config and the base model's id and weights hash, at every checkpoint).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqcodec.audio.data import list_audio, load_audio, split_holdout
from vqcodec.audio.harmonic import HarmonicConfig
from vqcodec.audio.hn_decoder import HNDecoder, HNDecoderConfig
from vqcodec.audio.model import SAMPLE_RATE, AudioModelConfig, ISTFTDecoder, load_audio_model
from vqcodec.audio.pitch import PITCH_HOP, pitch_labels
from vqcodec.files import atomic_write
from vqcodec.quantization.residual_vq import ResidualVQ
from vqcodec.training.audio_losses import AudioLoss, AudioLossConfig
from vqcodec.training.loop import Built, LoopConfig, OptimizerSpec, RunContext, Task, TrainingLoop
from vqcodec.training.pitch_cache import labels_as_asked
from vqcodec.weights.io import load_weights, save_weights, weights_hash

__all__ = ["TrainDecoderConfig", "AudioDecoderTask", "DecoderOnIndices", "train_audio_decoder", "EXPORT_NAME"]

log = logging.getLogger(__name__)
EXPORT_NAME = "audio_decoder.safetensors"
CACHE = "train_cache.pt"


@dataclass(kw_only=True)
class TrainDecoderConfig(LoopConfig):
    """Loop settings (see LoopConfig) plus the decoder stage's."""

    data: str  # folder of training speech (never an evaluation set)
    out: str
    base: str  # the frozen speech model (.safetensors)
    decoder: str = "hn"  # "hn" | "istft"
    model_id: str = ""  # id written into the export; "" -> "audio-decoder-<decoder>-v1"
    steps: int = 20000
    lr: float = 3e-4
    warmup_steps: int = 100
    schedule: str = "constant"
    batch_size: int = 8
    crop_frames: int = 100  # frames per crop (x hop / 16000 s)
    holdout: int = 10
    val_seconds: float = 8.0
    val_stages: tuple[int, ...] = (3, 6, 16)
    full_rate_prob: float = 0.5
    init_from_base: bool = True
    env_init: float = -7.0  # "hn": initial log envelope of the harmonics (natural log of amplitude)
    f0_bins: int = 192  # "hn": f0 classes (log-spaced; 0: regression of log f0)
    f0_sigma: float = 1.0  # "hn" with f0 bins: width (bins) of the Gaussian around the target bin
    init_from: str | None = None  # a decoder-stage file whose same-shaped tensors start this run (after the base's)
    pitch: str | None = None  # pitch-label method (`pitch_labels`): None = "harvest" for a new run, the cache's on
    # resume; a method other than the cache's relabels it
    residual: bool = False  # "hn": a gated learned-phase branch (starts from the base decoder's head)
    residual_loss: dict = field(default_factory=dict)  # AudioLossConfig fields over RESIDUAL_LOSS, for that branch
    residual_detach: bool = False  # "hn" with residual: the branch's loss does not reach the shared blocks
    noise_offset: float = 0.0  # "hn" started from the base decoder: added to the noise head's log magnitudes
    f0_weight: float = 1.0
    voicing_weight: float = 0.1
    bf16: bool = True
    grad_clip: float = 10.0
    model: dict = field(default_factory=dict)  # AudioModelConfig decoder fields to change
    harmonic: dict = field(default_factory=dict)  # HarmonicConfig fields ("hn")
    loss: dict = field(default_factory=dict)  # AudioLossConfig fields


RESIDUAL_LOSS = {"sc": 0.0, "logmag": 0.0, "mel": 0.0, "complex": 25.0, "wave": 1.0}
"""The phase-aware terms a residual branch trains on, with the harmonic and noise branches' output held fixed
(their gradient would shrink the oscillators, whose phase is their own, towards silence). The blocks the
branches share do learn from these terms too (they feed the residual head)."""


class DecoderOnIndices(nn.Module):
    """Frozen base codebooks + a trainable decoder: (B, s, N) int64 indices (-1: stage absent) -> samples."""

    def __init__(self, quantizer: ResidualVQ, decoder: nn.Module) -> None:
        super().__init__()
        self.quantizer, self.decoder = quantizer, decoder
        for p in self.quantizer.parameters():
            p.requires_grad_(False)

    def latents(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, s, N) int64 -> (B, N, D) float32 sums of the present stages' codes."""
        with torch.no_grad():
            return self.quantizer.decode(indices.transpose(1, 2))

    def forward(self, indices: torch.Tensor, f0: torch.Tensor | None = None, voicing: torch.Tensor | None = None,
                start: "int | torch.Tensor" = 0):
        """-> (samples (B, N * hop) float32, HNControls or None). f0, voicing (B, M): teacher forcing of an
        `HNDecoder`; start: absolute first sample per row (keys its noise)."""
        z = self.latents(indices)
        if isinstance(self.decoder, HNDecoder):
            stages = (indices >= 0).sum(1) if self.decoder.hn_cfg.residual else None
            return self.decoder.render(z, f0, voicing, start, stages)
        return self.decoder(z), None


def _magnitude_rows(decoder: HNDecoder, base: ISTFTDecoder) -> None:
    """Start a filtered-noise head (sub x bins log magnitudes per frame) from the magnitude rows of the base
    decoder's head (sub x [magnitudes, phases] x bins)."""
    sub, bins = decoder.sub, decoder.bins
    with torch.no_grad():
        w = base.head.weight.view(sub, 2, bins, -1)[:, 0].reshape(sub * bins, -1)
        decoder.head.weight.copy_(w)
        decoder.head.bias.copy_(base.head.bias.view(sub, 2, bins)[:, 0].reshape(-1))


def _build_decoder(cfg: TrainDecoderConfig, base_cfg: AudioModelConfig) -> tuple[nn.Module, dict]:
    fields = {**base_cfg.to_dict(), **cfg.model}
    model_cfg = AudioModelConfig.from_dict(fields)
    if cfg.decoder == "istft":
        return ISTFTDecoder(model_cfg), {"decoder": "istft", "model": model_cfg.to_dict()}
    if cfg.decoder == "hn":
        hn = HNDecoderConfig(model_cfg, HarmonicConfig(**cfg.harmonic), env_init=cfg.env_init, f0_bins=cfg.f0_bins,
                             residual=cfg.residual, residual_detach=cfg.residual and cfg.residual_detach)
        return HNDecoder(hn), {"decoder": "hn", **hn.to_dict()}
    raise ValueError(f"decoder must be 'hn' or 'istft', got {cfg.decoder!r}")


class AudioDecoderTask(Task):
    """The decoder stage as a `Task` (see the module docstring)."""

    name = "audio-decoder"
    run_defining = ("base", "decoder", "batch_size", "crop_frames", "holdout", "full_rate_prob", "model", "harmonic",
                    "loss", "f0_weight", "voicing_weight", "env_init", "noise_offset", "init_from_base", "f0_bins",
                    "f0_sigma", "init_from", "residual", "residual_loss", "residual_detach")
    progress_keys = ("mel", "f0_oct")
    config: TrainDecoderConfig

    def build(self, ctx: RunContext) -> Built:
        cfg = self.config
        base, base_id = load_audio_model(cfg.base)
        self.hop = base.hop
        decoder, self.decoder_config = _build_decoder(cfg, base.cfg)
        self.decoder_config.update(base_model_id=base_id, base_weights_hash=weights_hash(cfg.base).hex())
        if cfg.init_from_base and not ctx.resuming:
            own = decoder.state_dict()
            taken = {k: v for k, v in base.decoder.state_dict().items() if k in own and own[k].shape == v.shape}
            decoder.load_state_dict(taken, strict=False)
            rows = isinstance(decoder, HNDecoder) and decoder.hn_cfg.noise == "filtered" and "head.weight" not in taken
            if rows:
                _magnitude_rows(decoder, base.decoder)
            if isinstance(decoder, HNDecoder) and decoder.hn_cfg.residual:  # the base head renders waveform detail
                with torch.no_grad():
                    decoder.res_head.weight.copy_(base.decoder.head.weight)
                    decoder.res_head.bias.copy_(base.decoder.head.bias)
            log.info("decoder: %d of %d tensors start from the base decoder%s", len(taken), len(own),
                     " (and the noise head from its magnitude rows)" if rows else "")
        if cfg.init_from and not ctx.resuming:
            own = decoder.state_dict()
            tensors, _, _ = load_weights(cfg.init_from)
            taken = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
            decoder.load_state_dict(taken, strict=False)
            log.info("decoder: %d of %d tensors start from %s", len(taken), len(own), cfg.init_from)
            if cfg.noise_offset and isinstance(decoder, HNDecoder):
                with torch.no_grad():  # the noise branch starts quieter, so the oscillators have room to take over
                    bias = decoder.head.bias.view(decoder.sub, -1, decoder.bins)
                    bias[:, 0] += cfg.noise_offset
        train_files, held = split_holdout(list_audio(cfg.data), cfg.holdout)
        self.cache = _cached(ctx.out_dir / CACHE, base, train_files, ctx.rank, self.hop, cfg.pitch)
        frames = torch.tensor([float(i.shape[1]) for i in self.cache["indices"]])
        self.usable = [i for i, n in enumerate(frames.tolist()) if n >= cfg.crop_frames]
        if not self.usable:
            raise ValueError(f"no training utterance is as long as crop_frames={cfg.crop_frames}")
        self.weights = frames[self.usable] / frames[self.usable].sum()
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + ctx.rank)
        self.val: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        if ctx.rank == 0:
            limit = int(cfg.val_seconds * SAMPLE_RATE) // self.hop * self.hop
            for p in held:
                clip = load_audio(p)
                clip = clip[: min(limit, clip.numel() // self.hop * self.hop)]
                if clip.numel():
                    f0, voiced = pitch_labels(clip, self.cache["pitch"])
                    self.val.append((clip, base.encode_indices(clip[None]), f0, voiced))
        self.model = DecoderOnIndices(base.quantizer, decoder)
        self.loss_fn = AudioLoss(AudioLossConfig(**cfg.loss))
        self.residual_loss_fn = (AudioLoss(AudioLossConfig(**{**RESIDUAL_LOSS, **cfg.residual_loss}))
                                 if cfg.residual else None)
        params = [p for p in decoder.parameters() if p.requires_grad]
        return Built(self.model, [{"params": params}], OptimizerSpec("adamw", betas=(0.8, 0.99), grad_clip=cfg.grad_clip))

    def train_mode(self, model: nn.Module) -> None:
        model.train()
        self.model.quantizer.eval()  # frozen codebooks: no EMA updates, no restarts

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(indices (B, S, n) int64 with -1 past each crop's stage count, audio (B, n * hop) float32,
        f0 (B, n * hop / 80) float32 Hz, voiced (B, n * hop / 80) bool, starts (B,) int64: the noise keys)."""
        cfg, g, c = self.config, self.gen, self.cache
        n, s_all, sub = cfg.crop_frames, c["indices"][0].shape[0], self.hop // PITCH_HOP
        picks = torch.multinomial(self.weights, cfg.batch_size, replacement=True, generator=g)
        idx, audio, f0, voiced, starts = [], [], [], [], []
        for k in picks.tolist():
            i = self.usable[k]
            start = int(torch.randint(0, c["indices"][i].shape[1] - n + 1, (1,), generator=g))
            starts.append(i * (1 << 22) + start * self.hop)  # keys the decoder's noise: another stretch per crop
            idx.append(c["indices"][i][:, start:start + n].long())
            audio.append(c["audio"][i][start * self.hop:(start + n) * self.hop])
            f0.append(c["f0"][i][start * sub:(start + n) * sub])
            voiced.append(c["voiced"][i][start * sub:(start + n) * sub])
        active = torch.randint(1, s_all + 1, (cfg.batch_size,), generator=g)
        full = torch.rand(cfg.batch_size, generator=g) < cfg.full_rate_prob
        active = torch.where(full, torch.full_like(active, s_all), active)
        indices = torch.stack(idx)
        indices[torch.arange(s_all)[None, :] >= active[:, None]] = -1
        return indices, torch.stack(audio), torch.stack(f0), torch.stack(voiced), torch.tensor(starts)

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict]:
        indices, x, f0, voiced, starts = batch
        cfg = self.config
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            y, ctrl = model(indices, f0, voiced.float(), starts)
        rec, terms = self.loss_fn(x, y.float())
        metrics = {k: v.item() for k, v in terms.items()}
        if ctrl is None:
            return rec, metrics
        if ctrl.residual is not None and self.residual_loss_fn is not None:
            y_res = (y.float() - ctrl.residual).detach() + ctrl.residual  # not into the harmonic and noise heads
            res, res_terms = self.residual_loss_fn(x, y_res)
            rec = rec + res
            metrics.update(res_complex=res_terms["complex"].item(), res_wave=res_terms["wave"].item(),
                           res_rms=ctrl.residual.float().pow(2).mean().sqrt().item())
        octaves = (torch.log2(ctrl.f0) - torch.log2(f0)).abs()
        v = voiced.float()
        if ctrl.f0_logits is None:
            f0_loss = (octaves * v).sum() / v.sum().clamp_min(1.0)
        else:  # cross-entropy against a Gaussian over the bins around the target (CREPE's target)
            grid = self.model.decoder.f0_grid
            step = float(grid[1] - grid[0])
            d = (torch.log2(f0)[..., None] - grid) / (step * cfg.f0_sigma)
            target = torch.softmax(-0.5 * d * d, -1)
            ce = -(target * torch.log_softmax(ctrl.f0_logits, -1)).sum(-1)
            f0_loss = (ce * v).sum() / v.sum().clamp_min(1.0)
        vuv_loss = F.binary_cross_entropy_with_logits(ctrl.voicing_logit, v)
        metrics.update(f0_oct=((octaves * v).sum() / v.sum().clamp_min(1.0)).item(), f0_loss=f0_loss.item(),
                       vuv=vuv_loss.item())
        return rec + cfg.f0_weight * f0_loss + cfg.voicing_weight * vuv_loss, metrics

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict:
        if not self.val:
            return {}
        from vqcodec.metrics.audio import score  # training/benchmark-only dependency

        model.eval()
        s_all = self.val[0][1].shape[1]
        stages = sorted({min(s, s_all) for s in self.config.val_stages})
        sums = {k: [0.0] * len(stages) for k in ("stoi", "pesq_wb", "mel_distance", "f0_octaves")}
        for clip, idx, f0, voiced in self.val:
            for j, s in enumerate(stages):
                y, ctrl = self.model(idx[:, :s])
                for k, v in score(clip, y[0].clamp(-1, 1), SAMPLE_RATE).items():
                    if k in sums:
                        sums[k][j] += v / len(self.val)
                if ctrl is not None and bool(voiced.any()):
                    err = (torch.log2(ctrl.f0[0]) - torch.log2(f0)).abs()[voiced].median()
                    sums["f0_octaves"][j] += float(err) / len(self.val)
        log.info("val stoi %s pesq %s mel %s", *[[round(v, 3) for v in sums[k]] for k in ("stoi", "pesq_wb", "mel_distance")])
        return {"val": {"stages": stages, **sums}}

    def export(self, model: nn.Module, out_dir: Path) -> None:
        tensors = {k: v for k, v in self.model.decoder.state_dict().items()}
        model_id = self.config.model_id or f"audio-decoder-{self.config.decoder}-v1"
        save_weights(out_dir / EXPORT_NAME, tensors, model_id, self.decoder_config, half=True)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])


def _cached(path: Path, base, files: list[Path], rank: int, hop: int, pitch: str | None) -> dict:
    """{"files", "pitch", "indices": [(S, N) int16], "audio": [(N * hop,) float32], "f0": [(M,) float32],
    "voiced": [(M,) bool]} of the training files, computed once per run folder (rank 0; pitch None: Harvest).
    An existing cache keeps its labels when `pitch` is None or its own method (a cache without "pitch" was
    labelled by DIO, the only method then); given another method, it keeps its indices and audio and is
    relabelled."""
    names = [p.name for p in files]
    if path.is_file():
        cache = torch.load(path, weights_only=True)
        if cache["files"] == names:
            return labels_as_asked(path, cache, pitch, rank, lambda clip: clip)
        log.warning("%s does not match --data; recomputing it", path)
    if rank != 0:
        raise RuntimeError(f"{path} is missing; start the run with one process first")
    t0 = time.perf_counter()
    pitch = pitch or "harvest"
    cache: dict = {"files": names, "pitch": pitch, "indices": [], "audio": [], "f0": [], "voiced": []}
    for p in files:
        clip = load_audio(p)
        clip = clip[: clip.numel() // hop * hop]
        if not clip.numel():
            continue
        cache["indices"].append(base.encode_indices(clip[None])[0].to(torch.int16))
        cache["audio"].append(clip)
        f0, voiced = pitch_labels(clip, pitch)
        cache["f0"].append(f0)
        cache["voiced"].append(voiced)
    atomic_write(path, lambda tmp: torch.save(cache, tmp))
    log.info("encoded and pitch-labelled (%s) %d training utterances in %.0f s", pitch, len(files),
             time.perf_counter() - t0)
    return cache


def train_audio_decoder(cfg: TrainDecoderConfig) -> nn.Module:
    """Run (or with cfg.resume, continue) the run described by `cfg`. Returns the `DecoderOnIndices` model."""
    return TrainingLoop(AudioDecoderTask(cfg)).run().model
