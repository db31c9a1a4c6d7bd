"""Training of the audio prior on the shared loop: the float AudioPrior on a frozen audio model's indices.

The paper's recipe: the prior is trained after the autoencoder, on the indices the (frozen) encoder
gives for the training audio. `index_sequences` turns a folder of audio into (S, N) int64 sequences
(cached in the run folder as index_sequences.pt); `AudioPriorTask` trains on random crops of one
segment's length (each crop an independent sequence, as coding treats segments), validates bits per
index per stage on held-out utterances, and exports the float prior at every checkpoint;
`export_integer` quantizes it into the integer prior the codec ships.

    vqcodec train audio-prior --data SPEECH_DIR --model runs/audio/audio_model.safetensors --out runs/audio_prior
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from vqcodec.audio.data import list_audio, load_audio, split_holdout
from vqcodec.audio.model import AudioVQVAE, load_audio_model
from vqcodec.audio.prior import AudioPrior, AudioPriorConfig, load_audio_prior, save_audio_prior
from vqcodec.audio.prior_integer import IntegerAudioPrior, export_integer_audio_prior
from vqcodec.files import atomic_write
from vqcodec.training.distributed import barrier
from vqcodec.training.loop import Built, LoopConfig, OptimizerSpec, RunContext, RunResult, Task, TrainingLoop

__all__ = ["AudioPriorTrainConfig", "AudioPriorTask", "index_sequences", "train_audio_prior", "run_audio_prior",
           "export_integer",
           "FLOAT_PRIOR_NAME", "INTEGER_PRIOR_NAME"]

log = logging.getLogger(__name__)

FLOAT_PRIOR_NAME = "audio_prior_float.safetensors"
INTEGER_PRIOR_NAME = "audio_prior.safetensors"
SEQUENCES_NAME = "index_sequences.pt"


@dataclass(kw_only=True)
class AudioPriorTrainConfig(LoopConfig):
    """Loop settings plus: data (audio folder), model (audio VQ-VAE weights whose indices are modelled),
    batch_size (crops per step), holdout (utterances kept for validation), prior (AudioPriorConfig as a
    dict; default AudioPriorConfig with the model's stage count), init_from (float prior weights to start from),
    grad_clip."""

    data: str = ""
    model: str = ""
    batch_size: int = 16
    holdout: int = 8
    prior: dict = field(default_factory=dict)
    init_from: str | None = None
    grad_clip: float | None = 1.0
    lr: float = 1e-3
    warmup_steps: int = 100


@torch.no_grad()
def index_sequences(model: AudioVQVAE, clips: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """16 kHz clips [(T,) float32] -> [(S, ceil(T / hop)) int64] indices of every stage (zero-padded to whole frames)."""
    hop = model.hop
    out = []
    for clip in clips:
        n = -(-clip.shape[0] // hop) * hop
        x = torch.nn.functional.pad(clip, (0, n - clip.shape[0]))[None]
        out.append(model.encode_indices(x)[0])
    return out


class _BitsPerStage(nn.Module):
    """Wraps the prior so that DDP sees one forward: crops (B, S, L) -> bits per index per stage (S,)."""

    def __init__(self, prior: AudioPrior) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prior.loss(x)


class AudioPriorTask(Task):
    """The float AudioPrior as a `Task`: mean bits per index on random one-segment crops."""

    name = "audio-prior"
    run_defining = ("batch_size", "holdout", "prior", "model", "data")
    progress_keys = ("bits_mean",)
    config: AudioPriorTrainConfig

    def build(self, ctx: RunContext) -> Built:
        tc = self.config
        seqs, names = self._sequences(ctx)
        files = [Path(n) for n in names]
        train_files, val_files = split_holdout(files, min(tc.holdout, max(0, len(files) - 1)))
        by_name = dict(zip(names, seqs))
        self.train_seqs = [by_name[str(f)] for f in train_files]
        self.val_seqs = [by_name[str(f)] for f in val_files]
        stages = int(seqs[0].shape[0])
        cfg = AudioPriorConfig.from_dict(tc.prior) if tc.prior else AudioPriorConfig(num_stages=stages)
        if cfg.num_stages > stages:
            raise ValueError(f"the audio model codes {stages} stages; the prior config asks for {cfg.num_stages}")
        self.config = replace(tc, prior=cfg.to_dict())  # the checkpoint records the prior it holds
        self.crop = cfg.segment_frames
        self.train_seqs = [s[: cfg.num_stages] for s in self.train_seqs]
        self.val_seqs = [s[: cfg.num_stages] for s in self.val_seqs]
        self.gen = torch.Generator().manual_seed(tc.seed + 3 + 1000 * ctx.rank)
        prior = AudioPrior(cfg)
        if not ctx.resuming and tc.init_from:
            prior.load_state_dict(load_audio_prior(tc.init_from).state_dict())
            log.info("initialised from %s", tc.init_from)
        return Built(prior, None, OptimizerSpec("adam", grad_clip=tc.grad_clip), train_module=_BitsPerStage(prior))

    def _sequences(self, ctx: RunContext) -> tuple[list[torch.Tensor], list[str]]:
        """Index sequences of every file in the data folder, computed once (rank 0) and cached in the run folder."""
        path = Path(ctx.out_dir) / SEQUENCES_NAME
        if not path.is_file() and ctx.rank == 0:
            model, _ = load_audio_model(self.config.model)
            files = list_audio(self.config.data)
            seqs = index_sequences(model, [load_audio(f) for f in files])
            payload = {"files": [str(f) for f in files], "sequences": [s.to(torch.int16) for s in seqs]}
            atomic_write(path, lambda tmp: torch.save(payload, tmp))
            log.info("indexed %d files (%d frames)", len(files), sum(s.shape[1] for s in seqs))
        if ctx.world_size > 1:
            barrier()
        payload = torch.load(path, weights_only=True)
        return [s.long() for s in payload["sequences"]], list(payload["files"])

    def batch(self, step: int) -> torch.Tensor:
        """(B, S, L) int64 random crops of one segment's length (L frames) from the training sequences."""
        out = []
        for _ in range(self.config.batch_size):
            i = int(torch.randint(len(self.train_seqs), (1,), generator=self.gen))
            seq = self.train_seqs[i]
            n = seq.shape[1]
            if n <= self.crop:
                crop = torch.nn.functional.pad(seq, (0, self.crop - n), value=0)
            else:
                s0 = int(torch.randint(n - self.crop + 1, (1,), generator=self.gen))
                crop = seq[:, s0:s0 + self.crop]
            out.append(crop)
        return torch.stack(out)

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        bits = model(batch)
        return bits.mean(), {"bits_mean": bits.mean().item(), "bits": bits.detach().tolist()}

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict:
        if not self.val_seqs:
            return {}
        prior = model  # the loop hands the built model (the AudioPrior), not the DDP wrapper
        was_training = prior.training
        prior.eval()
        total, frames = 0.0, 0
        for seq in self.val_seqs:
            total = total + prior.loss(seq[None]) * seq.shape[1]
            frames += seq.shape[1]
        prior.train(was_training)
        bits = total / frames
        return {"val_bits_mean": float(bits.mean()), "val_bits": [round(float(b), 4) for b in bits]}

    def export(self, model: nn.Module, out_dir: Path) -> None:
        save_audio_prior(model, Path(out_dir) / FLOAT_PRIOR_NAME)

    def state_dict(self) -> dict:
        return {"data": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["data"])


def run_audio_prior(tc: AudioPriorTrainConfig) -> RunResult:
    """Train (or with tc.resume, continue) the float audio prior; see the module docstring."""
    return TrainingLoop(AudioPriorTask(tc)).run()


def train_audio_prior(tc: AudioPriorTrainConfig) -> RunResult:
    """What `vqcodec train audio-prior` runs: the training run (`run_audio_prior`), then, once it has reached
    tc.steps, the export of the integer prior the codec codes with (tc.out/audio_prior.safetensors)."""
    result = run_audio_prior(tc)
    if result.finished:
        export_integer(tc.out)
    return result


def export_integer(run_dir: str | Path, out_path: str | Path | None = None, calibration_files: int = 16
                   ) -> IntegerAudioPrior:
    """Quantize a run's float prior into the shipped integer prior (calibrated on its training sequences)."""
    run_dir = Path(run_dir)
    model = load_audio_prior(run_dir / FLOAT_PRIOR_NAME)
    payload = torch.load(run_dir / SEQUENCES_NAME, weights_only=True)
    seqs = [s.long()[: model.cfg.num_stages] for s in payload["sequences"][:calibration_files]]
    return export_integer_audio_prior(model, seqs, out_path or run_dir / INTEGER_PRIOR_NAME)
