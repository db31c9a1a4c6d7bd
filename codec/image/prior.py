"""Float (trainable) priors over the residual-VQ index maps of an image.

An image is coded as S index maps ("stages") of shape (H, W), values in [0, K). The prior factorizes as
    p(x_1) * prod_{s >= 2} p(x_s | x_1 .. x_{s-1})
* stage 1: a gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
  Decoders"): vertical and horizontal stacks (no blind spot), gated tanh*sigmoid units, residual
  connections in the horizontal stack, K-way softmax per position. It is run on tiles (`tile_boxes`):
  each tile is an independent image, so the decoder can decode all tiles in parallel.
* stages 2..S: one shared non-causal network (`ConditionalStagePrior`) whose input at every position is
  sum_{t<s} E_t[x_t] + e_s (learned per-stage embeddings plus a stage embedding); one parallel pass per
  stage gives a K-way softmax at every position.

The layer structure mirrors codec/image/prior_integer.py exactly (same clamps before tanh/sigmoid, same
zero padding, same shift of the vertical stack), so post-training quantization changes only precision.

Shapes: indices (B, S, H, W) int64; logits (B, S, K, H, W) float32 (natural-log units).
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

__all__ = [
    "save_float_prior",
    "load_float_prior",
    "PriorConfig",
    "GatedPixelCNN",
    "ConditionalStagePrior",
    "ImagePrior",
    "tile_boxes",
    "PREACT_CLIP",
]

@dataclass
class PriorConfig:
    """Hyper-parameters of `ImagePrior` (all ints, stored with the weights).

    Defaults were chosen by measured bits against measured time (synthetic maps, 64 x 96;
    benchmarks/prior_speed.py; the figures are in CHANGELOG.md): fewer layers and up-right layers with
    32-row tiles shorten stage 1's sequential decoding for a few per cent more stage-1 bits.

    tile_h, tile_w: stage-1 tile size in latent positions; 0 means the whole map in that direction.
    ar_up_right_layers: how many of the first stage-1 layers have a vertical kernel that also looks up
        and to the right (columns c-k//2..c+k//2); the others look up and up-left only (c-k//2..c).
        -1: all layers (the paper). The context's rightward reach is ar_up_right_layers * (k//2)
        columns, and the decoder's wavefront slope is that reach + 1: fewer sequential decode steps
        for a smaller up-right context.
    """

    num_stages: int = 8
    codebook_size: int = 512
    ar_channels: int = 64
    ar_layers: int = 4
    ar_kernel: int = 3
    cond_channels: int = 64
    cond_blocks: int = 2
    cond_kernel: int = 3
    tile_h: int = 32
    tile_w: int = 0
    ar_up_right_layers: int = 2

    def up_right(self, layer: int) -> bool:
        """Whether stage-1 layer `layer` (0-based) has an up-right looking vertical kernel."""
        return self.ar_up_right_layers < 0 or layer < self.ar_up_right_layers

    def to_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "PriorConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in d.items() if k in names})


def tile_boxes(h: int, w: int, tile_h: int, tile_w: int) -> list[tuple[int, int, int, int]]:
    """Stage-1 tiles of an (h, w) map as (row0, col0, rows, cols), row-major over the tile grid.

    tile_h / tile_w = 0 means no split in that direction. Edge tiles may be smaller.
    """
    th = h if tile_h <= 0 else min(tile_h, h)
    tw = w if tile_w <= 0 else min(tile_w, w)
    return [(r, c, min(th, h - r), min(tw, w - c)) for r in range(0, h, th) for c in range(0, w, tw)]


class GatedLayer(nn.Module):
    """One gated PixelCNN layer: (v, h) (B, C, H, W) each -> (v', h').

    vertical:   vc = conv_{(k//2+1) x k}(v) over rows r-k//2..r, cols c-k//2..c+k//2 (2C channels)
                (up_right=False: cols c-k//2..c only, kernel (k//2+1) x (k//2+1))
                v' = tanh(vc_a) * sigmoid(vc_b)
    horizontal: hc = conv_{1 x k//2+1}(h) over cols c-k//2..c   (first layer: c-k//2..c-1, mask A)
                     + v2h(vc shifted down one row)               (vertical context of rows < r)
                h' = h + res(tanh(hc_a) * sigmoid(hc_b))          (first layer: no residual)
    """

    def __init__(self, channels: int, kernel: int, first: bool, up_right: bool = True) -> None:
        super().__init__()
        if kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"ar_kernel must be odd and >= 3, got {kernel}")
        c, p = channels, kernel // 2
        self.channels, self.pad, self.first, self.up_right = c, p, first, up_right
        self.v_conv = nn.Conv2d(c, 2 * c, (p + 1, kernel if up_right else p + 1))
        self.h_conv = nn.Conv2d(c, 2 * c, (1, p if first else p + 1))
        self.v2h = nn.Conv2d(2 * c, 2 * c, 1, bias=False)
        self.res = nn.Conv2d(c, c, 1)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.pad
        vc = self.v_conv(F.pad(v, (p, p if self.up_right else 0, p, 0))).clamp(-PREACT_CLIP, PREACT_CLIP)
        v_out = gate(vc)
        v_down = F.pad(vc, (0, 0, 1, 0))[:, :, :-1, :]
        hp = F.pad(h, (p, 0, 0, 0))
        if self.first:
            hp = hp[:, :, :, :-1]
        g = gate(self.h_conv(hp) + self.v2h(v_down))
        h_out = self.res(g) if self.first else h + self.res(g)
        return v_out, h_out


class GatedPixelCNN(nn.Module):
    """Unconditional gated PixelCNN over one index map: (B, H, W) int64 -> logits (B, K, H, W).

    The logits at (r, c) depend on indices at (r, <c) and on rows < r only (checked in the tests).
    """

    def __init__(self, cfg: PriorConfig, recorder: ActivationRecorder | None = None) -> None:
        super().__init__()
        c = cfg.ar_channels
        self.embed = nn.Embedding(cfg.codebook_size, c)
        self.layers = nn.ModuleList(GatedLayer(c, cfg.ar_kernel, first=(i == 0), up_right=cfg.up_right(i))
                                    for i in range(cfg.ar_layers))
        self.head = nn.Conv2d(c, cfg.codebook_size, 1)
        self.recorder = recorder or ActivationRecorder()
        nn.init.normal_(self.embed.weight, std=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed(x).permute(0, 3, 1, 2)
        self.recorder.record("ar.h", e)
        v = h = e
        for layer in self.layers:
            v, h = layer(v, h)
            self.recorder.record("ar.h", h)
        return self.head(F.relu(h))


class CondBlock(nn.Module):
    """Non-causal residual block: x + pw2(gate(pw1(depthwise_kxk(x)))) on (B, C, H, W)."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        c = channels
        self.dw = nn.Conv2d(c, c, kernel, padding=kernel // 2, groups=c)
        self.pw1 = nn.Conv2d(c, 2 * c, 1)
        self.pw2 = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor, recorder: ActivationRecorder, name: str) -> torch.Tensor:
        d = self.dw(x)
        recorder.record(name, d)
        return x + self.pw2(gate(self.pw1(d)))


class ConditionalStagePrior(nn.Module):
    """Shared network for stages 2..S: earlier stages (B, s-1, H, W) -> logits of stage s (B, K, H, W).

    Input at each position: sum_{t<s} E_t[x_t] + e_s (C channels), then `cond_blocks` CondBlocks, then a
    ReLU and a 1x1 conv to K logits. Every position is predicted in one parallel pass.
    """

    def __init__(self, cfg: PriorConfig, recorder: ActivationRecorder | None = None) -> None:
        super().__init__()
        c = cfg.cond_channels
        self.num_stages, self.k = cfg.num_stages, cfg.codebook_size
        n = max(cfg.num_stages - 1, 1)
        self.embed = nn.Parameter(torch.randn(n, cfg.codebook_size, c) / math.sqrt(n))
        self.stage_embed = nn.Parameter(torch.zeros(n, c))
        self.blocks = nn.ModuleList(CondBlock(c, cfg.cond_kernel) for _ in range(cfg.cond_blocks))
        self.head = nn.Conv2d(c, cfg.codebook_size, 1)
        self.recorder = recorder or ActivationRecorder()

    def context(self, earlier: torch.Tensor) -> torch.Tensor:
        """Inputs for all stages 2..s_max+1 at once: earlier (B, T, H, W) -> (B, T, C, H, W).

        Entry t (0-based) is the input for stage t+2: cumulative sum of E_0..E_t plus the stage embedding.
        """
        b, t, h, w = earlier.shape
        present = (earlier >= 0).unsqueeze(-1)  # ABSENT (-1, vqcodec.coding.depth) adds nothing
        e = torch.stack([F.embedding(earlier[:, i].clamp(min=0), self.embed[i]) for i in range(t)], dim=1)
        x = (e * present).cumsum(dim=1) + self.stage_embed[:t, None, None, :]  # (B, T, H, W, C)
        return x.permute(0, 1, 4, 2, 3)

    def forward_context(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) stage inputs from `context` -> logits (N, K, H, W)."""
        self.recorder.record("cond.x", x)
        for i, blk in enumerate(self.blocks):
            x = blk(x, self.recorder, f"cond.d{i}")
            self.recorder.record("cond.x", x)
        return self.head(F.relu(x))

    def forward(self, earlier: torch.Tensor) -> torch.Tensor:
        """Logits of stage earlier.shape[1]+1: earlier (B, s-1, H, W) -> (B, K, H, W)."""
        x = self.context(earlier)[:, -1]
        return self.forward_context(x)


class ImagePrior(nn.Module):
    """p(x_1..x_S) for one image: stage 1 gated PixelCNN (per tile), stages 2..S shared conditional net."""

    def __init__(self, cfg: PriorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or PriorConfig()
        self.recorder = ActivationRecorder()
        self.ar = GatedPixelCNN(self.cfg, self.recorder)
        self.cond = ConditionalStagePrior(self.cfg, self.recorder) if self.cfg.num_stages > 1 else None

    def stage1_logits(self, x1: torch.Tensor, tiled: bool = True) -> torch.Tensor:
        """x1 (B, H, W) -> (B, K, H, W). With tiled=True each tile of `tile_boxes` is an independent image."""
        b, h, w = x1.shape
        boxes = tile_boxes(h, w, self.cfg.tile_h, self.cfg.tile_w) if tiled else [(0, 0, h, w)]
        if len(boxes) == 1:
            return self.ar(x1)
        by_shape: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for r, c, th, tw in boxes:
            by_shape.setdefault((th, tw), []).append((r, c))
        out = None
        for (th, tw), origins in by_shape.items():
            crops = torch.cat([x1[:, r:r + th, c:c + tw] for r, c in origins], dim=0)
            logits = self.ar(crops).reshape(len(origins), b, -1, th, tw)
            if out is None:
                out = logits.new_empty((b, logits.shape[2], h, w))
            for i, (r, c) in enumerate(origins):
                out[:, :, r:r + th, c:c + tw] = logits[i]
        return out

    def forward(self, indices: torch.Tensor, tiled: bool = True) -> torch.Tensor:
        """Teacher-forced logits: indices (B, S, H, W) int64 -> (B, S, K, H, W) float (nats).

        S may be smaller than cfg.num_stages (a prefix of the stages).
        """
        b, s, h, w = indices.shape
        if s > self.cfg.num_stages:
            raise ValueError(f"indices have {s} stages, the prior was built for {self.cfg.num_stages}")
        if bool((indices[:, 0] < 0).any()):
            raise ValueError("stage 1 must be present at every position (ABSENT only in stages >= 2)")
        first = self.stage1_logits(indices[:, 0], tiled=tiled)
        if s == 1:
            return first[:, None]
        ctx = self.cond.context(indices[:, : s - 1])  # (B, S-1, C, H, W)
        rest = self.cond.forward_context(ctx.reshape(b * (s - 1), *ctx.shape[2:]))
        rest = rest.reshape(b, s - 1, *rest.shape[1:])
        return torch.cat([first[:, None], rest], dim=1)

    def loss(self, indices: torch.Tensor, tiled: bool = True) -> torch.Tensor:
        """Mean code length in bits per index for each stage: indices (B, S, H, W) -> (S,) float.

        ABSENT (-1) positions (past a block's depth) are not coded and do not count; a stage with no
        present position gives 0."""
        logits = self.forward(indices, tiled=tiled)
        target = indices[:, : logits.shape[1]]
        nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none", ignore_index=-1)
        present = (target >= 0).to(nll.dtype)
        return nll.sum(dim=(0, 2, 3)) / present.sum(dim=(0, 2, 3)).clamp_min(1.0) / math.log(2.0)

    def calibrate(self, maps: list[torch.Tensor], max_positions: int = 1 << 16) -> dict[str, float]:
        """Max |activation| of every quantized stream over calibration maps [(S, H, W) int64].

        Runs the same (tiled) forward pass as coding. Returns {stream name: max abs value}.
        """
        self.recorder.stats = {}
        try:
            with torch.no_grad():
                for m in maps:
                    self.forward(m[None, : self.cfg.num_stages])
            return dict(self.recorder.stats)
        finally:
            self.recorder.stats = None

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ------------------------------------------------------------------------------------------ float file
def save_float_prior(model: ImagePrior, path: Path) -> None:
    """Float weights + config (safetensors metadata) of an ImagePrior."""
    save_safetensors(path, model.state_dict(), {"prior_config": json.dumps(model.cfg.to_dict())})


def load_float_prior(path: Path) -> ImagePrior:
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "prior_config" not in meta:
        raise ValueError(f"{path} has no prior_config metadata; not a float prior saved by save_float_prior")
    model = ImagePrior(PriorConfig.from_dict(json.loads(meta["prior_config"])))
    model.load_state_dict(load_file(str(path)))
    model.eval()
    return model
