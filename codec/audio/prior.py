"""Float (trainable) prior over the residual-VQ index sequences of an audio clip.

A clip is coded as S index sequences ("stages") of T frames, values in [0, K). The prior factorizes as
    p(x_1) * prod_{s >= 2} p(x_s | x_1 .. x_{s-1})
* stage 1: a WaveNet (van den Oord et al. 2016): the embedding of the previous frame's index, then layers
  of causal dilated convolutions (kernel 2) with gated tanh x sigmoid units, residual and skip
  connections, and a K-way softmax per frame. It runs on segments (`segment_frames`): each segment is an
  independent sequence, so the decoder can decode all segments of a file in lockstep as one batch and a
  long file never needs its whole past.
* stages 2..S: one shared non-causal network whose input at every frame is sum_{t<s} E_t[x_t] + e_s
  (learned per-stage embeddings plus a stage embedding), gated residual blocks of kernel-3 convolutions,
  and a K-way softmax; one parallel pass per stage, also per segment.

The layer structure is what the integer prior (`vqcodec.audio.prior_integer`) computes: the same clamps
before tanh and sigmoid, the same zero history before a segment starts, so post-training quantization
changes only precision.

Shapes: indices (B, S, T) int64; logits (B, S, K, T) float32 (natural-log units).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqcodec.integer.float_side import PREACT_CLIP, ActivationRecorder, gate
from vqcodec.weights.io import save_safetensors

__all__ = ["AudioPriorConfig", "WaveNet", "AudioConditionalPrior", "AudioPrior", "segment_bounds",
           "save_audio_prior", "load_audio_prior", "PREACT_CLIP"]

@dataclass
class AudioPriorConfig:
    """Hyper-parameters of `AudioPrior` (all ints, stored with the weights).

    segment_frames: every network's context resets every this many frames (independent segments).
    ar_dilations: dilation of each stage-1 layer, repeated `ar_cycles` times; the receptive field is
        1 + ar_cycles * sum(dilations) frames of history.
    """

    num_stages: int = 8
    codebook_size: int = 512
    ar_channels: int = 64
    ar_skip_channels: int = 64
    ar_dilation_levels: int = 5  # dilations 1, 2, 4, ..., 2^(levels-1)
    ar_cycles: int = 2
    cond_channels: int = 64
    cond_blocks: int = 2
    cond_kernel: int = 3
    segment_frames: int = 125

    @property
    def dilations(self) -> list[int]:
        return [2 ** i for i in range(self.ar_dilation_levels)] * self.ar_cycles

    @property
    def receptive_field(self) -> int:
        """Frames of stage-1 history (including the previous frame) a prediction can see."""
        return 1 + sum(self.dilations)

    def to_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "AudioPriorConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in d.items() if k in names})


def segment_bounds(num_frames: int, segment_frames: int) -> list[tuple[int, int]]:
    """[(start, length), ...] of the independent stage-1 segments of a T-frame sequence (last may be shorter)."""
    return [(s, min(segment_frames, num_frames - s)) for s in range(0, num_frames, segment_frames)]


class WaveNetLayer(nn.Module):
    """h (B, C, T) -> (h + res(g), skip(g)) with g = gate(W_past h[t - d] + W_now h[t] + b) (2C -> C)."""

    def __init__(self, channels: int, skip_channels: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size=2, dilation=dilation)
        self.res = nn.Conv1d(channels, channels, 1)
        self.skip = nn.Conv1d(channels, skip_channels, 1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = gate(self.conv(F.pad(h, (self.dilation, 0))))  # zero history before the segment
        return h + self.res(g), self.skip(g)


class WaveNet(nn.Module):
    """Stage-1 prior on independent sequences: x (B, T) int64 -> logits (B, K, T); frame t sees x[< t]."""

    def __init__(self, cfg: AudioPriorConfig, recorder: ActivationRecorder | None = None) -> None:
        super().__init__()
        c, k = cfg.ar_channels, cfg.codebook_size
        self.embed = nn.Embedding(k, c)
        self.start = nn.Parameter(torch.zeros(c))  # the input of frame 0, which has no previous index
        self.layers = nn.ModuleList(WaveNetLayer(c, cfg.ar_skip_channels, d) for d in cfg.dilations)
        self.out1 = nn.Conv1d(cfg.ar_skip_channels, c, 1)
        self.out2 = nn.Conv1d(c, k, 1)
        self.recorder = recorder or ActivationRecorder()

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) int64 -> (B, C, T): frame t holds E[x[t - 1]] (frame 0: the start vector)."""
        e = self.embed(x[:, :-1]).transpose(1, 2)
        start = self.start[None, :, None].expand(x.shape[0], -1, 1)
        return torch.cat([start, e], dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inputs(x)
        self.recorder.record("ar.h", h)
        skip = 0
        for layer in self.layers:
            h, s = layer(h)
            self.recorder.record("ar.h", h)
            skip = skip + s
            self.recorder.record("ar.skip", skip)
        y = F.relu(self.out1(F.relu(skip)))
        self.recorder.record("ar.out", y)
        return self.out2(y)


class CondBlock1d(nn.Module):
    """Non-causal residual block: x + pw(gate(conv_k(x))) on (B, C, T), zero padding at the ends."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        c = channels
        self.conv = nn.Conv1d(c, 2 * c, kernel, padding=kernel // 2)
        self.pw = nn.Conv1d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw(gate(self.conv(x)))


class AudioConditionalPrior(nn.Module):
    """Shared network for stages 2..S: earlier stages (B, s-1, T) -> logits of stage s (B, K, T)."""

    def __init__(self, cfg: AudioPriorConfig, recorder: ActivationRecorder | None = None) -> None:
        super().__init__()
        c = cfg.cond_channels
        n = max(cfg.num_stages - 1, 1)
        self.embed = nn.Parameter(torch.randn(n, cfg.codebook_size, c) / math.sqrt(n))
        self.stage_embed = nn.Parameter(torch.zeros(n, c))
        self.blocks = nn.ModuleList(CondBlock1d(c, cfg.cond_kernel) for _ in range(cfg.cond_blocks))
        self.head = nn.Conv1d(c, cfg.codebook_size, 1)
        self.recorder = recorder or ActivationRecorder()

    def context(self, earlier: torch.Tensor) -> torch.Tensor:
        """Inputs of stages 2..n+1 at once: earlier (B, n, T) -> (B, n, C, T) (cumulative embedding sums)."""
        n = earlier.shape[1]
        e = torch.stack([F.embedding(earlier[:, i], self.embed[i]) for i in range(n)], dim=1)  # (B, n, T, C)
        return (e.cumsum(dim=1) + self.stage_embed[:n, None, :]).transpose(2, 3)

    def forward_context(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T) stage inputs from `context` -> logits (N, K, T)."""
        self.recorder.record("cond.x", x)
        for blk in self.blocks:
            x = blk(x)
            self.recorder.record("cond.x", x)
        return self.head(F.relu(x))


class AudioPrior(nn.Module):
    """p(x_1..x_S) of one clip's index sequences: stage-1 WaveNet per segment, stages 2..S shared net."""

    def __init__(self, cfg: AudioPriorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or AudioPriorConfig()
        self.recorder = ActivationRecorder()
        self.ar = WaveNet(self.cfg, self.recorder)
        self.cond = AudioConditionalPrior(self.cfg, self.recorder) if self.cfg.num_stages > 1 else None

    def _segment_logits(self, x: torch.Tensor) -> torch.Tensor:
        """One segment's logits, teacher-forced: x (B, s, n) -> (B, s, K, n)."""
        b, s, n = x.shape
        first = self.ar(x[:, 0])
        if s == 1:
            return first[:, None]
        ctx = self.cond.context(x[:, : s - 1])  # (B, s-1, C, n)
        rest = self.cond.forward_context(ctx.reshape(b * (s - 1), *ctx.shape[2:]))
        return torch.cat([first[:, None], rest.reshape(b, s - 1, *rest.shape[1:])], dim=1)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits: indices (B, S, T) int64 -> (B, S, K, T) (nats). S may be a prefix.

        Each segment of `segment_bounds(T, segment_frames)` is an independent sequence.
        """
        b, s, t = indices.shape
        if s > self.cfg.num_stages:
            raise ValueError(f"indices have {s} stages, the prior was built for {self.cfg.num_stages}")
        seg = self.cfg.segment_frames
        full = (t // seg) * seg
        parts = []
        if full:
            n = full // seg
            chunks = indices[:, :, :full].reshape(b, s, n, seg).transpose(1, 2).reshape(b * n, s, seg)
            logits = self._segment_logits(chunks)  # (b * n, s, K, seg)
            parts.append(logits.reshape(b, n, s, -1, seg).permute(0, 2, 3, 1, 4).reshape(b, s, -1, full))
        if t > full:
            parts.append(self._segment_logits(indices[:, :, full:]))
        return torch.cat(parts, dim=3)

    def loss(self, indices: torch.Tensor) -> torch.Tensor:
        """Mean code length in bits per index for each stage: indices (B, S, T) -> (S,) float."""
        logits = self.forward(indices)
        nll = F.cross_entropy(logits.transpose(1, 2), indices[:, : logits.shape[1]], reduction="none")
        return nll.mean(dim=(0, 2)) / math.log(2.0)

    def calibrate(self, sequences: list[torch.Tensor]) -> dict[str, float]:
        """Max |activation| of every quantized stream over calibration sequences [(S, T) int64]."""
        self.recorder.stats = {}
        try:
            with torch.no_grad():
                for seq in sequences:
                    self.forward(seq[None, : self.cfg.num_stages])
            return dict(self.recorder.stats)
        finally:
            self.recorder.stats = None


def save_audio_prior(model: AudioPrior, path: str | Path) -> None:
    """Float weights + config (safetensors metadata) of an AudioPrior."""
    save_safetensors(path, model.state_dict(), {"audio_prior_config": json.dumps(model.cfg.to_dict())})


def load_audio_prior(path: str | Path) -> AudioPrior:
    """Load a float AudioPrior written by `save_audio_prior` (eval mode)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "audio_prior_config" not in meta:
        raise ValueError(f"{path} is not a float audio prior (no audio_prior_config metadata); "
                         "write one with save_audio_prior")
    model = AudioPrior(AudioPriorConfig.from_dict(json.loads(meta["audio_prior_config"])))
    model.load_state_dict(load_file(str(path)))
    return model.eval()
