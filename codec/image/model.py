"""The image VQ-VAE: a conv encoder to f=8 latents, a ResidualVQ, and a conv decoder back to pixels.

Designed for a 2-core CPU budget: the encoder leaves full resolution at once (space-to-depth by 4),
and almost all compute runs at 1/8 resolution, where one latent vector of D=64 floats describes an
8x8 pixel block. The residual VQ turns each latent into S indices of 9 bits (K=512): a raw rate of
9*s/64 bpp for the first s stages (0.14 bpp per stage).

Pixels are float RGB in [0, 1], tensors (B, 3, H, W). Latents are (B, D, H/8, W/8).
Index maps are int64 (B, S, H/8, W/8).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqcodec.quantization.residual_vq import TRAINING_ONLY_BUFFERS, ResidualVQ, RVQOutput
from vqcodec.weights.io import load_release

__all__ = ["ImageModelConfig", "ImageVQVAE", "block_pca", "pad_to_multiple", "load_image_model", "ENCODER_BEAM"]

ENCODER_BEAM = 4
"""Beam width of the residual-VQ search the codec encodes with (and the prior's index maps are made
with); see `ResidualVQ.beam_search`."""


@dataclass(frozen=True)
class ImageModelConfig:
    """Hyper-parameters of the image VQ-VAE (stored beside the weights)."""

    latent_dim: int = 64
    num_stages: int = 8
    num_codes: int = 512
    width_low: int = 192  # channels at 1/8 resolution
    width_mid: int = 96  # channels at 1/4 resolution
    width_high: int = 48  # channels at 1/2 resolution (decoder only)
    enc_blocks: int = 2
    dec_blocks: int = 3
    ema: bool = True
    linear_path: bool = True  # a linear 8x8 block transform beside each net (see BlockAnalysis)
    depth_input: bool = False  # the decoder is told each block's number of stages (see Decoder)
    refine_levels: int = 0  # with depth_input, also told a scalar refinement level 1..refine_levels (see Decoder)
    refine_first_shift: int = 1  # refinement level j rounds the latent to a step of 2^-(refine_first_shift + j - 1)

    @property
    def factor(self) -> int:
        return 8

    def refinement_step(self, level: int) -> float:
        """Latent units of refinement level `level` (1-based): 2^-(refine_first_shift + level - 1)."""
        return 2.0 ** -(self.refine_first_shift + level - 1)

    def to_dict(self) -> dict:
        return asdict(self)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (B, C, H, W) on the bottom/right by edge replication to multiples of `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


class ResBlock(nn.Module):
    """x + conv3x3(act(conv3x3(act(x)))), channels preserved; the last conv starts near zero."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.bias)
        self.conv2.weight.data.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


@torch.no_grad()
def block_pca(images: list[torch.Tensor], dim: int, max_blocks_per_image: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal components of the 8x8x3 pixel blocks of `images` (uint8 (3, H, W) tensors).

    Returns (mean (192,), basis (192, dim)) in float64, pixels in [0, 1]; block vectors are ordered as
    `F.pixel_unshuffle(x, 8)` orders channels. The basis is orthonormal, so squared error on the
    coefficients equals squared error on the pixels.
    """
    total = torch.zeros(192, dtype=torch.float64)
    scatter = torch.zeros(192, 192, dtype=torch.float64)
    count = 0
    for im in images:
        h, w = im.shape[1] // 8 * 8, im.shape[2] // 8 * 8
        blocks = F.pixel_unshuffle(im[None, :, :h, :w].double() / 255.0, 8)[0].reshape(192, -1).T
        blocks = blocks[:: max(1, blocks.shape[0] // max_blocks_per_image)]
        total += blocks.sum(0)
        scatter += blocks.T @ blocks
        count += blocks.shape[0]
    mean = total / count
    eigvals, eigvecs = torch.linalg.eigh(scatter / count - torch.outer(mean, mean))
    return mean, eigvecs[:, eigvals.argsort(descending=True)[:dim]]


class BlockAnalysis(nn.Module):
    """Linear transform of each 8x8x3 pixel block to D coefficients: (B, 3, H, W) -> (B, D, H/8, W/8).

    Runs beside the encoder's conv net, which adds a nonlinear correction. Initialised to the block PCA
    (`block_pca`), the model starts at what a linear transform does (39 dB on Kodak at D=64 before
    quantization) and training spends its budget on what a linear transform cannot do. Measured:
    without these paths the same nets, trained 1.8 CPU-hours, capped at 26.5 dB even unquantized.
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3 * 64, latent_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.pixel_unshuffle(x, 8))

    @torch.no_grad()
    def set_pca(self, mean: torch.Tensor, basis: torch.Tensor) -> None:
        self.proj.weight.copy_(basis.T.reshape(*self.proj.weight.shape).float())
        self.proj.bias.copy_((-(mean @ basis)).float())


class BlockSynthesis(nn.Module):
    """The inverse of `BlockAnalysis`: (B, D, h, w) -> (B, 3, 8h, 8w), beside the decoder's conv net."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(latent_dim, 3 * 64, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.proj(z), 8)

    @torch.no_grad()
    def set_pca(self, mean: torch.Tensor, basis: torch.Tensor) -> None:
        self.proj.weight.copy_(basis.reshape(*self.proj.weight.shape).float())
        self.proj.bias.copy_(mean.float())


class Encoder(nn.Module):
    """(B, 3, H, W) in [0, 1] -> (B, D, H/8, W/8). H and W must be multiples of 8."""

    def __init__(self, cfg: ImageModelConfig) -> None:
        super().__init__()
        self.to_quarter = nn.Sequential(nn.PixelUnshuffle(4), nn.Conv2d(48, cfg.width_mid, 3, padding=1))
        self.quarter_block = ResBlock(cfg.width_mid)
        self.down = nn.Conv2d(cfg.width_mid, cfg.width_low, 3, stride=2, padding=1)
        self.blocks = nn.Sequential(*(ResBlock(cfg.width_low) for _ in range(cfg.enc_blocks)))
        self.to_latent = nn.Conv2d(cfg.width_low, cfg.latent_dim, 1)
        self.linear = BlockAnalysis(cfg.latent_dim) if cfg.linear_path else None
        if self.linear is not None:  # the net starts as a small correction to the linear transform
            nn.init.zeros_(self.to_latent.bias)
            self.to_latent.weight.data.mul_(0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.quarter_block(self.to_quarter(x * 2.0 - 1.0))
        h = self.blocks(self.down(F.silu(h)))
        z = self.to_latent(F.silu(h))
        return z if self.linear is None else z + self.linear(x)


class Decoder(nn.Module):
    """(B, D, h, w) -> (B, 3, 8h, 8w) RGB, unclamped (clamp to [0, 1] for output).

    With `depth_input`, forward also takes each block's depth (B, h, w) int64 in 0..S (the number of
    stages its latent was reconstructed from; the codec decodes a depth per block, and a file cut to N
    layers has min(depth, N)): a learned vector per depth is added to the first layer's output, so the
    net can tell a coarse block from a fine one. It starts at zero (the decoder starts depth-blind).
    With `refine_levels` R > 0 the depth may also be S + j, j = 1..R: the block's latent was refined by scalar
    refinement down to level j (`ImageModelConfig.refinement_step(j)` latent units).
    """

    def __init__(self, cfg: ImageModelConfig) -> None:
        super().__init__()
        self.from_latent = nn.Conv2d(cfg.latent_dim, cfg.width_low, 3, padding=1)
        if cfg.refine_levels and not cfg.depth_input:
            raise ValueError("refine_levels needs depth_input (the levels are told through the depth input)")
        self.depth_embedding = (nn.Embedding(cfg.num_stages + 1 + cfg.refine_levels, cfg.width_low)
                                if cfg.depth_input else None)
        if self.depth_embedding is not None:
            nn.init.zeros_(self.depth_embedding.weight)
        self.blocks = nn.Sequential(*(ResBlock(cfg.width_low) for _ in range(cfg.dec_blocks)))
        self.up1 = nn.Sequential(nn.Conv2d(cfg.width_low, 4 * cfg.width_mid, 1), nn.PixelShuffle(2))
        self.quarter_block = ResBlock(cfg.width_mid)
        self.up2 = nn.Sequential(nn.Conv2d(cfg.width_mid, 4 * cfg.width_high, 1), nn.PixelShuffle(2))
        self.half_conv = nn.Conv2d(cfg.width_high, cfg.width_high, 3, padding=1)
        self.to_rgb = nn.Sequential(nn.Conv2d(cfg.width_high, 12, 3, padding=1), nn.PixelShuffle(2))
        self.linear = BlockSynthesis(cfg.latent_dim) if cfg.linear_path else None
        if self.linear is not None:  # the net starts as a small correction to the linear transform
            nn.init.zeros_(self.to_rgb[0].bias)
            self.to_rgb[0].weight.data.mul_(0.01)

    def forward(self, z: torch.Tensor, depth: torch.Tensor | None = None) -> torch.Tensor:
        h = self.from_latent(z)
        if self.depth_embedding is not None:
            if depth is None:
                raise ValueError("this decoder needs each block's depth (B, h, w)")
            h = h + self.depth_embedding(depth).permute(0, 3, 1, 2).to(h.dtype)
        h = self.blocks(h)
        h = self.quarter_block(self.up1(F.silu(h)))
        h = self.up2(F.silu(h))
        h = h + self.half_conv(F.silu(h))
        correction = self.to_rgb(F.silu(h)) * 0.5
        return correction + (0.5 if self.linear is None else self.linear(z))


class ImageVQVAE(nn.Module):
    """Encoder -> ResidualVQ -> Decoder. See the module docstring for shapes and units."""

    def __init__(self, cfg: ImageModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ImageModelConfig()
        self.encoder = Encoder(self.cfg)
        self.quantizer = ResidualVQ(
            self.cfg.num_stages, self.cfg.num_codes, self.cfg.latent_dim, ema=self.cfg.ema
        )
        self.decoder = Decoder(self.cfg)

    @property
    def factor(self) -> int:
        return self.cfg.factor

    @torch.no_grad()
    def init_linear_paths(self, images: list[torch.Tensor]) -> None:
        """Start encoder and decoder from the block PCA of `images` (uint8 (3, H, W)); no-op without
        linear paths."""
        if self.encoder.linear is None:
            return
        mean, basis = block_pca(images, self.cfg.latent_dim)
        self.encoder.linear.set_pca(mean, basis)
        self.decoder.linear.set_pca(mean, basis)

    def release_state(self) -> dict[str, torch.Tensor]:
        """The tensors a released weights file holds: everything but the training-only buffers."""
        return {k: v for k, v in self.state_dict().items() if not k.endswith(TRAINING_ONLY_BUFFERS)}

    @classmethod
    def from_release(cls, tensors: dict[str, torch.Tensor], config: dict) -> "ImageVQVAE":
        """Build a model from released tensors + config (as `release_state` wrote them), in eval mode.

        The training-only buffers restart from the codebooks, so the model can also be trained further.
        Raises ValueError when the tensors do not match the config.
        """
        config = {"linear_path": False, **config}  # files written before linear paths existed have none
        model = cls(ImageModelConfig(**config))
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        missing = [k for k in missing if not k.endswith(TRAINING_ONLY_BUFFERS)]
        if missing or unexpected:
            raise ValueError(f"weights do not match the image model config: missing {missing}, unexpected {unexpected}")
        for vq in model.quantizer.stages:
            vq.reset_training_state()
        return model.eval()

    @staticmethod
    def _flatten(z: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B*h*w, D)."""
        return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])

    @staticmethod
    def _unflatten(v: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
        """(B*h*w, C) -> (B, C, h, w)."""
        return v.reshape(b, h, w, -1).permute(0, 3, 1, 2)

    def forward(
        self, x: torch.Tensor, active_stages: torch.Tensor | int | None = None,
        depth_rule: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, RVQOutput]:
        """Training pass. x: (B, 3, H, W) in [0, 1], H, W multiples of 8.

        active_stages: None (all), int, (B,) int64 stage counts per image or (B*h*w,) per block
        (quantizer dropout). depth_rule: a per-block depth choice from the stage errors, overriding
        active_stages (see `ResidualVQ.forward`).
        Returns the reconstruction (B, 3, H, W) and the quantizer output (flat over B*h*w positions).
        """
        z = self.encoder(x)
        b, _, h, w = z.shape
        if isinstance(active_stages, torch.Tensor) and active_stages.shape[0] == b:
            active_stages = active_stages.repeat_interleave(h * w)
        q = self.quantizer(self._flatten(z), active_stages, depth_rule)
        depth = q.active.reshape(b, h, w) if self.cfg.depth_input else None
        x_hat = self.decoder(self._unflatten(q.quantized, b, h, w), depth)
        return x_hat, q

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor, num_stages: int | None = None, beam: int = 1) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] with H, W multiples of 8 -> (B, s, H/8, W/8) int64 indices.

        beam: 1 = greedy residual quantization; > 1 = beam search over stages 2..s (`ResidualVQ.encode`),
        lower error at exactly s stages.
        """
        z = self.encoder(x)
        b, _, h, w = z.shape
        idx = self.quantizer.encode(self._flatten(z), num_stages, beam)
        return idx.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, s, h, w) int64 indices of the first s stages -> (B, 3, 8h, 8w) RGB in [0, 1].

        An index of -1 is absent (the block stopped before that stage); a block's depth is its number of
        present stages."""
        b, _, h, w = indices.shape
        flat = indices.permute(0, 2, 3, 1).reshape(-1, indices.shape[1])
        z = self._unflatten(self.quantizer.decode(flat), b, h, w)
        depth = (indices >= 0).sum(1) if self.cfg.depth_input else None
        return self.decoder(z, depth).clamp(0.0, 1.0)


    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, depth: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D, h, w) float32 latents (e.g. refined ones) -> (B, 3, 8h, 8w) RGB in [0, 1]. depth (B, h, w) int64
        as `Decoder.forward` takes it (None for a decoder without a depth input; ignored by one)."""
        return self.decoder(latents, depth if self.cfg.depth_input else None).clamp(0.0, 1.0)


def load_image_model(path) -> tuple[ImageVQVAE, str]:
    """A released image model file (safetensors) -> (model in eval mode, model id)."""
    return load_release(path, ImageVQVAE.from_release)
