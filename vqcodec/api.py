"""Public Python API: encode_image, decode, max_quality, VQFormatError.

Input policy for images (also what the CLI does):
  * RGB is coded as is; 16-bit and float modes are converted to 8-bit RGB by Pillow.
  * Grayscale ("L", "I;16", ...) and palette ("P") images are converted to RGB; the decoded image is RGB.
  * An alpha channel that is fully opaque is dropped silently (nothing is lost). A non-opaque alpha
    channel raises ValueError unless `alpha="drop"` (keep the colour channels, discard alpha) or
    `alpha="white"` / `alpha="black"` (composite over that background) is given: vqcodec codes RGB
    only, and losing transparency silently would lose data.
"""
from __future__ import annotations

from typing import Callable, Literal

import numpy as np
from PIL import Image

from vqcodec.bitstream import VQFormatError

__all__ = ["encode_image", "decode", "max_quality", "to_rgb_array", "VQFormatError", "AlphaPolicy"]

AlphaPolicy = Literal["error", "drop", "white", "black"]
Progress = Callable[[int, int], None]


def _codec():
    from vqcodec.image.codec import ImageCodec

    return ImageCodec.default()


def to_rgb_array(img: "Image.Image | np.ndarray", alpha: AlphaPolicy = "error") -> np.ndarray:
    """A PIL image or an (H, W, 3) uint8 array -> (H, W, 3) uint8 RGB array, by the policy above."""
    if isinstance(img, np.ndarray):
        if img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8:
            return img
        if img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 4)):
            img = Image.fromarray(img.squeeze(-1) if img.ndim == 3 and img.shape[2] == 1 else img)
        else:
            raise ValueError(f"expected an (H, W, 3) uint8 array, got shape {img.shape} dtype {img.dtype}")
    if not isinstance(img, Image.Image):
        raise TypeError(f"expected a PIL image or a numpy array, got {type(img).__name__}")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        a = np.asarray(rgba)[..., 3]
        if a.min() < 255:
            if alpha == "error":
                raise ValueError(
                    "image has a transparent alpha channel, which vqcodec does not code; "
                    "choose --alpha drop, white or black (API: alpha=...) to flatten it"
                )
            if alpha in ("white", "black"):
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255) if alpha == "white" else (0, 0, 0, 255))
                return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
        return np.asarray(rgba.convert("RGB"))
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr / 257.0 if arr.max() > 255 else arr, 0, 255).round().astype(np.uint8))
    return np.asarray(img.convert("RGB"))


def max_quality(modality: str = "image") -> int:
    """Highest quality level (= number of residual-VQ stages) of the shipped model for `modality`."""
    if modality != "image":
        raise ValueError(f"unknown modality {modality!r}; this release codes 'image' only")
    return _codec().max_quality


def encode_image(
    img: "Image.Image | np.ndarray",
    quality: int | None = None,
    *,
    alpha: AlphaPolicy = "error",
    progress: Progress | None = None,
) -> bytes:
    """Encode an image to .vq bytes.

    Args:
        img: a PIL image, or an (H, W, 3) uint8 RGB array. See the module docstring for other modes.
        quality: 1..max_quality("image"); None means the highest (best quality, most bytes).
            Each level adds one residual-VQ stage: about 0.14 bpp before entropy coding.
        alpha: what to do with a transparent alpha channel ("error", "drop", "white", "black").
    """
    return _codec().encode(to_rgb_array(img, alpha), quality, progress)


def decode(data: bytes, quality: int | None = None, *, progress: Progress | None = None) -> Image.Image:
    """Decode .vq bytes to a PIL RGB image.

    quality: decode only the first `quality` stages (lower quality; None = all stages in the file).
    Raises VQFormatError for anything that is not a valid .vq file of an installed model.
    """
    return Image.fromarray(_codec().decode(bytes(data), quality, progress), mode="RGB")
