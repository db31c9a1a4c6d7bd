"""Training of the speaker-conditioned decoder (`vqcodec.audio.speaker_model`) on LibriSpeech utterances.

The base speech model (encoder, quantizer) is frozen: every training utterance's first (1 - 0.2) part is
encoded once to its S stages of indices (cached in OUT/train_indices.pt); the last 20 % of every utterance
is never seen here (held out for the speaker benchmark, `benchmarks/speaker_conversion.py`). Each step draws
crops of `crop_frames` frames, drops the stages past a random count (quantizer dropout: 1..S uniformly, all
S with probability `full_rate_prob`), decodes them with the utterance's own speaker and scores the result
against the crop's samples with the project's reconstruction losses (`audio_losses.AudioLoss`).

Trained: the speaker embedding, the FiLM layers, the last `tuned_blocks` decoder blocks, the output norm
and the head; everything else is the base model's.

Files written to `out`: checkpoint.pt, log.jsonl (loss terms, samples_per_s in crops/s; validation:
{"val": {"stages", "mel_own", "mel_swap"}}: mel distance of held-out segments decoded with their own
speaker, and between own-speaker and swapped-speaker decodes, per stage count), train_indices.pt (cache),
audio_speaker_decoder.safetensors (the exported weights, at every checkpoint).
"""
from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from vqcodec.audio.data import list_audio, load_audio
from vqcodec.audio.model import SAMPLE_RATE, load_audio_model
from vqcodec.audio.speaker_model import (SpeakerDecoder, SpeakerDecoderConfig, build_speaker_decoder, heldout_start,
                                         read_speaker_sexes, save_speaker_decoder, speaker_of)
from vqcodec.files import atomic_write
from vqcodec.training.audio_losses import AudioLoss, AudioLossConfig
from vqcodec.training.loop import Built, LoopConfig, OptimizerSpec, RunContext, Task, TrainingLoop
from vqcodec.weights.io import WEIGHTS_DIR, weights_hash

__all__ = ["TrainSpeakerConfig", "SpeakerDecoderTask", "train_speaker_decoder", "SPEAKER_MODEL_ID", "EXPORT_NAME"]

log = logging.getLogger(__name__)
SPEAKER_MODEL_ID = "audio-speaker-decoder-v1"
EXPORT_NAME = "audio_speaker_decoder.safetensors"
INDEX_CACHE = "train_indices.pt"


@dataclass(kw_only=True)
class TrainSpeakerConfig(LoopConfig):
    """Loop settings (see LoopConfig) plus the speaker decoder's."""

    data: str  # LibriSpeech-style folder: SPEAKER-CHAPTER-UTT files, one speaker each (optional SPEAKERS.TXT)
    out: str
    base: str = str(WEIGHTS_DIR / "audio_vqvae.safetensors")  # the frozen speech model
    steps: int = 3000
    lr: float = 3e-4
    warmup_steps: int = 50
    batch_size: int = 8
    crop_frames: int = 50  # frames per crop (x hop / 16000 s)
    speaker_dim: int = 32
    tuned_blocks: int = 3
    full_rate_prob: float = 0.25
    val_utterances: int = 8  # held-out segments scored at each validation (first val_seconds each)
    val_seconds: float = 3.0
    val_stages: tuple[int, ...] = (2, 4, 16)
    bf16: bool = True
    grad_clip: float = 10.0
    loss: dict | None = None  # AudioLossConfig fields


class SpeakerDecoderTask(Task):
    """The speaker decoder as a `Task` (see the module docstring)."""

    name = "speaker-decoder"
    run_defining = ("batch_size", "crop_frames", "speaker_dim", "tuned_blocks", "full_rate_prob", "base", "loss")
    progress_keys = ("mel",)
    config: TrainSpeakerConfig

    def build(self, ctx: RunContext) -> Built:
        cfg = self.config
        base, base_id = load_audio_model(cfg.base)
        files = list_audio(cfg.data)
        speakers = [speaker_of(p) for p in files]
        if len(set(speakers)) != len(speakers):
            raise ValueError(f"{cfg.data} holds several utterances of one speaker; this trainer takes one per "
                             "speaker (the held-out part of each is the benchmark's test set)")
        order = sorted(range(len(files)), key=lambda i: int(speakers[i]))
        files, speakers = [files[i] for i in order], [speakers[i] for i in order]
        sexes = read_speaker_sexes(cfg.data)
        spk = SpeakerDecoderConfig(tuple(speakers), tuple(sexes.get(s, "?") for s in speakers), cfg.speaker_dim,
                                   cfg.tuned_blocks, base_model_id=base_id,
                                   base_weights_hash=weights_hash(cfg.base).hex())
        self.hop = base.hop
        clips = [load_audio(p) for p in files]
        self.train_audio = [c[: heldout_start(c.numel(), self.hop)] for c in clips]
        self.indices = _cached_indices(ctx.out_dir / INDEX_CACHE, base, files, self.train_audio, ctx.rank)
        torch.manual_seed(cfg.seed)  # the embedding's init does not depend on whether the cache existed
        model = build_speaker_decoder(base, spk)
        self.model = model
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + ctx.rank)
        frames = torch.tensor([float(i.shape[1]) for i in self.indices])
        if bool((frames < cfg.crop_frames).any()):
            raise ValueError(f"an utterance's training part is shorter than crop_frames={cfg.crop_frames}")
        self.weights = frames / frames.sum()
        self.val = _val_segments(base, clips, cfg.val_utterances, cfg.val_seconds) if ctx.rank == 0 else []
        self.loss_fn = AudioLoss(AudioLossConfig(**(cfg.loss or {})))
        tuned = model.decoder.tuned_prefixes()
        params = []
        for name, p in model.decoder.named_parameters():
            p.requires_grad_(name.startswith(tuned))
            if p.requires_grad:
                params.append(p)
        return Built(model, [{"params": params}], OptimizerSpec("adamw", betas=(0.9, 0.99), grad_clip=cfg.grad_clip))

    def train_mode(self, model: nn.Module) -> None:
        model.train()
        self.model.quantizer.eval()  # frozen codebooks: no EMA updates, no restarts

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(indices (B, S, n) int64 with -1 past each crop's stage count, speakers (B,) int64, audio (B, n * hop))."""
        cfg, g = self.config, self.gen
        n, s_all = cfg.crop_frames, self.indices[0].shape[0]
        picks = torch.multinomial(self.weights, cfg.batch_size, replacement=True, generator=g)
        idx, audio = [], []
        for i in picks.tolist():
            f0 = int(torch.randint(0, self.indices[i].shape[1] - n + 1, (1,), generator=g))
            idx.append(self.indices[i][:, f0:f0 + n].long())
            audio.append(self.train_audio[i][f0 * self.hop:(f0 + n) * self.hop])
        active = torch.randint(1, s_all + 1, (cfg.batch_size,), generator=g)
        full = torch.rand(cfg.batch_size, generator=g) < cfg.full_rate_prob
        active = torch.where(full, torch.full_like(active, s_all), active)
        indices = torch.stack(idx)
        indices[torch.arange(s_all)[None, :] >= active[:, None]] = -1
        return indices, picks, torch.stack(audio)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, dict]:
        indices, speakers, x = batch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bf16):
            y = model(indices, speakers)
        rec, terms = self.loss_fn(x, y.float())
        return rec, {k: v.item() for k, v in terms.items()}

    def samples_per_step(self) -> int:
        return self.config.batch_size

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict:
        if not self.val:
            return {}
        from vqcodec.metrics.audio import mel_distance  # training/benchmark-only dependency

        model.eval()
        n_spk = len(self.model.config.speakers)
        stages = [min(s, self.indices[0].shape[0]) for s in self.config.val_stages]
        own, swap = [0.0] * len(stages), [0.0] * len(stages)
        for row, clip, idx in self.val:
            other = (row + n_spk // 2) % n_spk
            for j, s in enumerate(stages):
                y = model.decode_indices(idx[:, :s], row)[0]
                y2 = model.decode_indices(idx[:, :s], other)[0]
                own[j] += mel_distance(clip, y, SAMPLE_RATE) / len(self.val)
                swap[j] += mel_distance(y, y2, SAMPLE_RATE) / len(self.val)
        log.info("val mel own %s, own vs swapped %s", [round(v, 3) for v in own], [round(v, 3) for v in swap])
        return {"val": {"stages": stages, "mel_own": own, "mel_swap": swap}}

    def export(self, model: nn.Module, out_dir: Path) -> None:
        save_speaker_decoder(out_dir / EXPORT_NAME, model, SPEAKER_MODEL_ID)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])


@torch.no_grad()
def _encode(base, audio: torch.Tensor) -> torch.Tensor:
    """(T,) float32, T a multiple of hop -> (S, T / hop) int16 indices of the frozen base model."""
    return base.encode_indices(audio[None])[0].to(torch.int16)


def _cached_indices(path: Path, base, files: list[Path], audio: list[torch.Tensor], rank: int) -> list[torch.Tensor]:
    """The training parts' indices, computed once per run folder (rank 0) and loaded afterwards."""
    names = [p.name for p in files]
    if path.is_file():
        cache = torch.load(path, weights_only=True)
        if cache["files"] == names and [i.shape[1] for i in cache["indices"]] == [a.numel() // base.hop for a in audio]:
            return cache["indices"]
        log.warning("%s does not match --data; recomputing it", path)
    if rank != 0:
        raise RuntimeError(f"{path} is missing; start the run with one process first")
    t0 = time.perf_counter()
    indices = [_encode(base, a) for a in audio]
    atomic_write(path, lambda tmp: torch.save({"files": names, "indices": indices}, tmp))
    log.info("encoded %d training parts in %.0f s", len(indices), time.perf_counter() - t0)
    return indices


@torch.no_grad()
def _val_segments(base, clips: list[torch.Tensor], count: int, seconds: float) -> list[tuple]:
    """[(speaker row, held-out samples (T,), their indices (1, S, T / hop) int64), ...] for `count` utterances
    chosen by a hash of their row (the same in every run); each segment is encoded on its own."""
    rows = sorted(range(len(clips)), key=lambda i: zlib.crc32(f"speaker-val/{i}".encode()))[:count]
    out = []
    for r in rows:
        seg = clips[r][heldout_start(clips[r].numel(), base.hop):][: int(seconds * SAMPLE_RATE)]
        seg = seg[: seg.numel() // base.hop * base.hop]
        if seg.numel():
            out.append((r, seg, base.encode_indices(seg[None])))
    return out


def train_speaker_decoder(cfg: TrainSpeakerConfig) -> SpeakerDecoder:
    """Run (or with cfg.resume, continue) the training run described by `cfg`. Returns the model."""
    return TrainingLoop(SpeakerDecoderTask(cfg)).run().model
