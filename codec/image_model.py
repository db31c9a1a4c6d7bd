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

import torch
import torch.nn as nn
import torch.nn.functional as F

from .quantizer import TRAINING_ONLY_BUFFERS, ResidualVQ, RVQOutput
from .weights_io import load_weights

__all__ = ["ImageModelConfig", "ImageVQVAE", "pad_to_multiple", "load_image_model"]


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

    @property
    def factor(self) -> int:
        return 8

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


class Encoder(nn.Module):
    """(B, 3, H, W) in [0, 1] -> (B, D, H/8, W/8). H and W must be multiples of 8."""

    def __init__(self, cfg: ImageModelConfig) -> None:
        super().__init__()
        self.to_quarter = nn.Sequential(nn.PixelUnshuffle(4), nn.Conv2d(48, cfg.width_mid, 3, padding=1))
        self.quarter_block = ResBlock(cfg.width_mid)
        self.down = nn.Conv2d(cfg.width_mid, cfg.width_low, 3, stride=2, padding=1)
        self.blocks = nn.Sequential(*(ResBlock(cfg.width_low) for _ in range(cfg.enc_blocks)))
        self.to_latent = nn.Conv2d(cfg.width_low, cfg.latent_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.quarter_block(self.to_quarter(x * 2.0 - 1.0))
        h = self.blocks(self.down(F.silu(h)))
        return self.to_latent(F.silu(h))


class Decoder(nn.Module):
    """(B, D, h, w) -> (B, 3, 8h, 8w) RGB, unclamped (clamp to [0, 1] for output)."""

    def __init__(self, cfg: ImageModelConfig) -> None:
        super().__init__()
        self.from_latent = nn.Conv2d(cfg.latent_dim, cfg.width_low, 3, padding=1)
        self.blocks = nn.Sequential(*(ResBlock(cfg.width_low) for _ in range(cfg.dec_blocks)))
        self.up1 = nn.Sequential(nn.Conv2d(cfg.width_low, 4 * cfg.width_mid, 1), nn.PixelShuffle(2))
        self.quarter_block = ResBlock(cfg.width_mid)
        self.up2 = nn.Sequential(nn.Conv2d(cfg.width_mid, 4 * cfg.width_high, 1), nn.PixelShuffle(2))
        self.half_conv = nn.Conv2d(cfg.width_high, cfg.width_high, 3, padding=1)
        self.to_rgb = nn.Sequential(nn.Conv2d(cfg.width_high, 12, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.from_latent(z))
        h = self.quarter_block(self.up1(F.silu(h)))
        h = self.up2(F.silu(h))
        h = h + self.half_conv(F.silu(h))
        return self.to_rgb(F.silu(h)) * 0.5 + 0.5


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

    def release_state(self) -> dict[str, torch.Tensor]:
        """The tensors a released weights file holds: everything but the training-only buffers."""
        return {k: v for k, v in self.state_dict().items() if not k.endswith(TRAINING_ONLY_BUFFERS)}

    @classmethod
    def from_release(cls, tensors: dict[str, torch.Tensor], config: dict) -> "ImageVQVAE":
        """Build a model from released tensors + config (as `release_state` wrote them), in eval mode.

        The training-only buffers restart from the codebooks, so the model can also be trained further.
        Raises ValueError when the tensors do not match the config.
        """
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
        self, x: torch.Tensor, active_stages: torch.Tensor | int | None = None
    ) -> tuple[torch.Tensor, RVQOutput]:
        """Training pass. x: (B, 3, H, W) in [0, 1], H, W multiples of 8.

        active_stages: None (all), int, or (B,) int64 stage counts per image (quantizer dropout).
        Returns the reconstruction (B, 3, H, W) and the quantizer output (flat over B*h*w positions).
        """
        z = self.encoder(x)
        b, _, h, w = z.shape
        if isinstance(active_stages, torch.Tensor):
            active_stages = active_stages.repeat_interleave(h * w)
        q = self.quantizer(self._flatten(z), active_stages)
        x_hat = self.decoder(self._unflatten(q.quantized, b, h, w))
        return x_hat, q

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor, num_stages: int | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] with H, W multiples of 8 -> (B, s, H/8, W/8) int64 indices."""
        z = self.encoder(x)
        b, _, h, w = z.shape
        idx = self.quantizer.encode(self._flatten(z), num_stages)
        return idx.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, s, h, w) int64 indices of the first s stages -> (B, 3, 8h, 8w) RGB in [0, 1]."""
        b, _, h, w = indices.shape
        flat = indices.permute(0, 2, 3, 1).reshape(-1, indices.shape[1])
        z = self._unflatten(self.quantizer.decode(flat), b, h, w)
        return self.decoder(z).clamp(0.0, 1.0)


def load_image_model(path) -> tuple[ImageVQVAE, str]:
    """A released image model file (safetensors) -> (model in eval mode, model id)."""
    tensors, model_id, config = load_weights(path)
    try:
        return ImageVQVAE.from_release(tensors, config), model_id
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
