"""The image codec: pixels -> indices -> range-coded stage streams -> .vq bytes, and back.

    encode: RGB uint8 (H, W, 3) -> pad to a multiple of 8 (edge replication) -> ImageVQVAE encoder
            -> ResidualVQ indices (s, H/8, W/8) -> for each stage, integer prior frequencies
            -> constriction range coder -> one stream per stage -> container (header + CRC)
    decode: container -> for each stage, the integer prior rebuilds the same frequencies from what is
            already decoded and range-decodes the indices -> codebook lookup -> decoder net -> crop

What is exact: the indices (integer prior, deterministic frequencies, lossless range coding). The
pixels come from a float decoder network and so may differ across machines by float rounding.
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vqcodec.bitstream import (
    ChannelLayout,
    IndexDecoder,
    IndexEncoder,
    Modality,
    VQFormatError,
    VQHeader,
    check_model,
    hash_weights,
    pack,
    unpack,
)

from vqcodec.image.model import ENCODER_BEAM, load_image_model, pad_to_multiple
from vqcodec.image.prior_integer import load_integer_prior
from vqcodec.weights.io import WEIGHTS_DIR

__all__ = ["ImageCodec", "MAX_PIXELS", "DEFAULT_MODEL_PATH", "DEFAULT_PRIOR_PATH"]

log = logging.getLogger(__name__)

MODEL_FILE, PRIOR_FILE = "image_vqvae.safetensors", "image_prior.safetensors"
DEFAULT_MODEL_PATH = WEIGHTS_DIR / MODEL_FILE
DEFAULT_PRIOR_PATH = WEIGHTS_DIR / PRIOR_FILE
WEIGHTS_ENV = "VQCODEC_WEIGHTS_DIR"  # a folder with both files overrides the shipped weights
MAX_PIXELS = 1 << 26  # 67 megapixels: bounds the memory a file can make the decoder allocate

Progress = Callable[[int, int], None]


class ImageCodec:
    """A loaded image model + integer prior, with encode/decode of .vq bytes.

    Args:
        model_path: safetensors weights of the ImageVQVAE.
        prior_path: safetensors weights of the integer image prior.
    """

    def __init__(self, model_path: str | Path = DEFAULT_MODEL_PATH, prior_path: str | Path = DEFAULT_PRIOR_PATH) -> None:
        model_path, prior_path = Path(model_path), Path(prior_path)
        for p in (model_path, prior_path):
            if not p.is_file():
                raise FileNotFoundError(
                    f"model weights not found: {p}. Reinstall vqcodec, or train them with `vqcodec train image` "
                    f"and `vqcodec train prior`."
                )
        self.model, self.model_id = load_image_model(model_path)
        self.prior = load_integer_prior(prior_path)
        if self.prior.num_stages != self.model.cfg.num_stages or self.prior.codebook_size != self.model.cfg.num_codes:
            raise ValueError(f"prior {prior_path} does not match the image model {model_path} (stages/codes differ)")
        self.weights_hash = hash_weights(model_path.read_bytes() + prior_path.read_bytes())

    @classmethod
    def default(cls) -> "ImageCodec":
        """The shipped model (or the folder named by $VQCODEC_WEIGHTS_DIR), loaded once per process."""
        folder = os.environ.get(WEIGHTS_ENV)
        return _load_cached(str(Path(folder) / MODEL_FILE) if folder else str(DEFAULT_MODEL_PATH),
                            str(Path(folder) / PRIOR_FILE) if folder else str(DEFAULT_PRIOR_PATH))

    @property
    def max_quality(self) -> int:
        return self.model.cfg.num_stages

    # ------------------------------------------------------------------------------------------
    def _check_quality(self, quality: int | None) -> int:
        if quality is None:
            return self.max_quality
        if not 1 <= int(quality) <= self.max_quality:
            raise ValueError(f"quality must be 1..{self.max_quality}, got {quality}")
        return int(quality)

    @staticmethod
    def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
        h, w = rgb.shape[:2]
        if h < 1 or w < 1 or h > 65535 or w > 65535 or h * w > MAX_PIXELS:
            raise ValueError(f"image size {w}x{h} is outside what vqcodec supports (sides 1..65535, <= {MAX_PIXELS} pixels)")
        return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float().div_(255.0)

    @torch.no_grad()
    def encode_indices(self, rgb: np.ndarray, quality: int | None = None) -> torch.Tensor:
        """(H, W, 3) uint8 -> (s, ceil(H/8), ceil(W/8)) int64 indices of the first s = quality stages."""
        s = self._check_quality(quality)
        x = pad_to_multiple(self._to_tensor(rgb), self.model.factor)
        return self.model.encode_indices(x, s, beam=ENCODER_BEAM)[0]

    @torch.no_grad()
    def render(self, indices: torch.Tensor, height: int, width: int) -> np.ndarray:
        """(s, h, w) int64 indices -> (height, width, 3) uint8 pixels (decoder net, cropped)."""
        x_hat = self.model.decode_indices(indices[None])[0, :, :height, :width]
        return (x_hat.permute(1, 2, 0) * 255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()

    def encode(self, rgb: np.ndarray, quality: int | None = None, progress: Progress | None = None) -> bytes:
        """(H, W, 3) uint8 RGB -> .vq bytes holding the first `quality` stages (default: all)."""
        return self.pack(self.encode_indices(rgb, quality), rgb.shape[0], rgb.shape[1], progress)

    def pack(self, indices: torch.Tensor, height: int, width: int, progress: Progress | None = None) -> bytes:
        """(s, ceil(height/8), ceil(width/8)) int64 indices of a height x width image -> .vq bytes."""
        s, h, w = indices.shape
        streams = []
        for stage in range(1, s + 1):
            freqs = self.prior.frequencies(indices, stage)
            symbols = indices[stage - 1].reshape(-1).numpy()
            enc = IndexEncoder()
            for group in self.prior.coding_groups(stage, h, w):
                enc.encode(symbols[group], freqs[group])
            streams.append(enc.finish())
            if progress:
                progress(stage, s)
        header = VQHeader(
            modality=Modality.IMAGE,
            model_id=self.model_id,
            weights_hash=self.weights_hash,
            width=width,
            height=height,
            channel_layout=ChannelLayout.RGB,
        )
        return pack(header, streams)

    def decode_indices(self, data: bytes, quality: int | None = None, progress: Progress | None = None) -> tuple[VQHeader, torch.Tensor]:
        """.vq bytes -> (header, (s, h, w) int64 indices); s = min(quality, stages in the file)."""
        header, streams = unpack(data)
        if header.modality != Modality.IMAGE:
            raise VQFormatError(f"file holds {header.modality.name.lower()}, not an image")
        check_model(header, self.model_id, self.weights_hash)
        if header.stages > self.max_quality:
            raise VQFormatError(f"file has {header.stages} stages; this model has {self.max_quality}")
        if header.width * header.height > MAX_PIXELS:
            raise VQFormatError(f"image size {header.width}x{header.height} exceeds {MAX_PIXELS} pixels")
        s = header.stages if quality is None else min(int(quality), header.stages)
        if s < 1:
            raise ValueError(f"quality must be >= 1, got {quality}")
        f = self.model.factor
        h, w = -(-header.height // f), -(-header.width // f)
        decoded = torch.zeros(0, h, w, dtype=torch.long)
        for stage in range(1, s + 1):
            dec = IndexDecoder(streams[stage - 1])
            plane = self.prior.decode_stage(stage, decoded, h, w, dec.decode)
            dec.check_finished()
            decoded = torch.cat([decoded, plane[None].long()], 0)
            if progress:
                progress(stage, s)
        return header, decoded

    def decode(self, data: bytes, quality: int | None = None, progress: Progress | None = None) -> np.ndarray:
        """.vq bytes -> (H, W, 3) uint8 RGB at quality min(quality, stages in the file)."""
        header, indices = self.decode_indices(data, quality, progress)
        return self.render(indices, header.height, header.width)


@functools.lru_cache(maxsize=2)
def _load_cached(model_path: str, prior_path: str) -> ImageCodec:
    return ImageCodec(model_path, prior_path)
