"""Channel layouts of .vq images: the side information beside the coded RGB, in and out.

The image codec (vqcodec.image.codec) codes 8-bit RGB. What a file gives back is its IMAGE_GEOMETRY's
channel layout (RGB, RGBA, GRAY, GRAY_ALPHA), with the alpha plane of an ALPHA_PLANE chunk
(vqcodec.image.alpha) and the ICC profile, EXIF and XMP of METADATA chunks (vqcodec.image.metadata):

  * `add_side_info(data, prepared)`: the codec's RGB file -> the same file with the layout, the alpha
    plane and the metadata of `prepared` (vqcodec.image.input). The stage streams and every other chunk
    are kept byte for byte.
  * `read_side_info(vqfile)` then `to_image(rgb, side)`: the decoded RGB -> a PIL image of the file's
    layout ("RGB", "RGBA", "L", "LA"), its `info` holding "icc_profile", "exif" and "xmp". A gray image is
    L = (R + G + B + 1) // 3 of the decoded RGB.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from vqcodec.bitstream import ChannelLayout, ChunkType, ImageGeometry, VQFile, VQFormatError, read_file, write_file

from .alpha import alpha_chunk, decode_alpha
from .input import MAX_PIXELS, PreparedImage
from .metadata import EXIF_KEY, ICC_KEY, XMP_KEY, ImageMetadata

__all__ = ["SideInfo", "add_side_info", "read_side_info", "to_image"]

_FROM_ARGUMENTS = {ChunkType.MODEL, ChunkType.IMAGE_GEOMETRY, ChunkType.AUDIO_GEOMETRY, ChunkType.STAGE_STREAM,
                   ChunkType.ENCODER, ChunkType.ALPHA_PLANE}
_IMAGE_KEYS = {ICC_KEY, EXIF_KEY, XMP_KEY}


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


def _is_image_metadata(chunk) -> bool:
    if chunk.type != ChunkType.METADATA:
        return False
    key_len = chunk.payload[0]
    return chunk.payload[1:1 + key_len].decode("ascii") in _IMAGE_KEYS


def add_side_info(data: bytes, prepared: PreparedImage, *, verify: bool = False) -> bytes:
    """The codec's .vq bytes of `prepared.rgb` -> the file with `prepared`'s layout, alpha plane and metadata.

    verify: decode the alpha plane of the result again and raise RuntimeError unless it is exact.
    """
    if prepared.layout == ChannelLayout.RGB and not prepared.metadata:
        return data
    vqfile = read_file(data)
    g = vqfile.geometry
    if not isinstance(g, ImageGeometry) or (g.height, g.width) != prepared.rgb.shape[:2]:
        raise ValueError("the .vq bytes are not the image file of these pixels")
    side = [alpha_chunk(prepared.alpha)] if prepared.alpha is not None else []
    side += prepared.metadata.chunks()
    kept = [c for c in vqfile.chunks if c.type not in _FROM_ARGUMENTS and not _is_image_metadata(c)]
    out = write_file(vqfile.modality, vqfile.components, ImageGeometry(g.width, g.height, prepared.layout),
                     [vqfile.streams(k) for k in range(1, vqfile.layers + 1)], kept + side,
                     encoder=vqfile.encoder_name)
    if verify and prepared.alpha is not None:
        if not np.array_equal(read_side_info(read_file(out)).alpha, prepared.alpha):
            raise RuntimeError("verification failed: the decoded alpha plane differs from the encoded one; "
                               "please report this as a vqcodec bug")
    return out


def _check_size(g: ImageGeometry) -> None:
    """The decode pixel limits (as the image codec checks them), before the alpha plane is allocated."""
    from vqcodec import api

    if g.width * g.height > MAX_PIXELS:
        raise VQFormatError(f"image size {g.width}x{g.height} exceeds {MAX_PIXELS} pixels")
    limit = api.MAX_DECODE_PIXELS
    if limit is not None and g.width * g.height > limit:
        raise VQFormatError(f"image size {g.width}x{g.height} exceeds the decode limit of {limit} pixels "
                            "(vqcodec.api.MAX_DECODE_PIXELS; raise it to decode larger images from a trusted source)")


def read_side_info(vqfile: VQFile) -> SideInfo:
    """The layout, alpha plane (decoded) and metadata of a parsed image file.

    Raises:
        VQFormatError: the alpha plane is damaged, or the image exceeds the decode pixel limit.
    """
    g = vqfile.geometry
    if not isinstance(g, ImageGeometry):
        raise VQFormatError(f"file holds {vqfile.modality_name}, not an image")
    alpha = None
    if g.channel_layout.has_alpha:
        _check_size(g)
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
