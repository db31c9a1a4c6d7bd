"""Channel layouts of .vq images: the side information beside the coded RGB, in and out.

The image codec (vqcodec.image.codec) codes 8-bit RGB. What a file gives back is its IMAGE_GEOMETRY's
channel layout (RGB, RGBA, GRAY, GRAY_ALPHA), with the alpha plane of an ALPHA_PLANE chunk
(vqcodec.image.alpha) and the ICC profile, EXIF and XMP of METADATA chunks (vqcodec.image.metadata):

  * `side_chunks(prepared)`: the chunks the codec writes beside the stage streams of a PreparedImage
    (vqcodec.image.input): its alpha plane, then its metadata.
  * `read_side_info(vqfile)` then `to_image(rgb, side)`: the decoded RGB -> a PIL image of the file's
    layout ("RGB", "RGBA", "L", "LA"), its `info` holding "icc_profile", "exif" and "xmp". A gray image is
    L = (R + G + B + 1) // 3 of the decoded RGB.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from vqcodec.bitstream import ChannelLayout, Chunk, ChunkType, ImageGeometry, VQFile, VQFormatError
from vqcodec.limits import check_decode_size

from .alpha import alpha_chunk, decode_alpha
from .input import PreparedImage
from .metadata import ImageMetadata

__all__ = ["SideInfo", "side_chunks", "read_side_info", "to_image"]


@dataclass(frozen=True)
class SideInfo:
    """What an image file holds besides its coded RGB.

    Attributes:
        layout: the channel layout the decoded image takes.
        alpha: the (H, W) uint8 alpha plane, or None.
        metadata: ICC profile, EXIF, XMP.
    """

    layout: ChannelLayout
    alpha: np.ndarray | None
    metadata: ImageMetadata


def side_chunks(prepared: PreparedImage) -> list[Chunk]:
    """The layer-0 chunks of `prepared` beside its coded RGB: the ALPHA_PLANE chunk (if it has an alpha
    plane), then the METADATA chunks (ICC profile, EXIF, XMP)."""
    side = [alpha_chunk(prepared.alpha)] if prepared.alpha is not None else []
    return side + prepared.metadata.chunks()


def read_side_info(vqfile: VQFile) -> SideInfo:
    """The layout, alpha plane (decoded) and metadata of a parsed image file.

    Raises:
        VQFormatError: the alpha plane is damaged, or the image exceeds the decode pixel limits
            (vqcodec.limits, checked before the alpha plane is allocated).
    """
    g = vqfile.geometry
    if not isinstance(g, ImageGeometry):
        raise VQFormatError(f"file holds {vqfile.modality_name}, not an image")
    alpha = None
    if g.channel_layout.has_alpha:
        check_decode_size(g)
        payload = next(c.payload for c in vqfile.chunks if c.type == ChunkType.ALPHA_PLANE)
        alpha = decode_alpha(payload, g.width, g.height)
    return SideInfo(g.channel_layout, alpha, ImageMetadata.from_chunks(vqfile.metadata))


def to_image(rgb: np.ndarray, side: SideInfo) -> Image.Image:
    """Decoded (H, W, 3) uint8 RGB + the file's side information -> a PIL image in the file's layout."""
    if side.layout.is_gray:
        base = ((rgb.astype(np.uint16).sum(axis=2) + 1) // 3).astype(np.uint8)[..., None]
    else:
        base = rgb
    planes = base if side.alpha is None else np.concatenate([base, side.alpha[..., None]], axis=2)
    img = Image.fromarray(np.ascontiguousarray(planes.squeeze(-1) if planes.shape[2] == 1 else planes),
                          side.layout.pil_mode)
    img.info.update(side.metadata.pil_info())
    return img
