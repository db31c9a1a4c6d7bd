"""The input policy for images: any image a user has -> what the codec codes, or one clear refusal.

What the image codec codes is 8-bit RGB; what a .vq file gives back is described by its channel
layout (RGB, RGBA, gray, gray + alpha), a lossless alpha plane (vqcodec.image.alpha) and metadata
(vqcodec.image.metadata). `prepare_image` maps every Pillow mode onto that:

  * RGB, RGBX, YCbCr, LAB, HSV: RGB (Pillow's conversion).
  * CMYK (e.g. CMYK JPEG): converted to sRGB through its embedded ICC profile if it has one (littlecms),
    else with Pillow's conversion; the CMYK profile is not carried (it describes the CMYK numbers).
  * L, 1, I;16*, I, F (grayscale): coded as RGB with R = G = B, decoded as L (layout GRAY).
  * RGBA, RGBa, PA, P with a transparency key: RGBA; LA, La: gray + alpha. The alpha plane is coded
    losslessly (alpha="keep", the default), even when fully opaque, so RGBA in gives RGBA out; the colour
    under fully transparent pixels may come back as anything. alpha="drop" | "white" | "black" codes RGB
    (or gray) only; alpha="error" refuses a transparent image (the policy of vqcodec 0.2).
  * P without transparency: RGB (the palette's colours).
  * 16-bit samples become 8-bit by rounding, v8 = (v16 + 128) // 257: always for 16-bit grayscale; for
    16-bit gray + alpha, RGB and RGBA PNG files when vqcodec reads the file itself (`open_image`, the
    CLI, or `encode_image(Image.open(...))` before the image is loaded), else by Pillow, which keeps
    the high byte (at most one level lower). "I" (32-bit) images whose values exceed 255 are read as
    16-bit.
  * EXIF orientation: applied to the pixels (Pillow's `ImageOps.exif_transpose`) and reset in the EXIF.
  * ICC profile, EXIF, XMP: carried (vqcodec.image.metadata); `strip=True` drops EXIF and XMP.
  * Animated images (GIF, APNG, WebP, multi-page TIFF) are refused; an MPO (a camera's JPEG with a second,
    preview frame) is coded from its first, primary frame.
  * Size: 1x1 up to 65535 pixels a side and MAX_PIXELS (2^26) pixels in all, checked from the header
    before any pixel is decoded (a decompression bomb costs nothing), as is Pillow's own
    `Image.MAX_IMAGE_PIXELS`.

Errors are `ImageInputError` (a ValueError) with one line that says what is wrong and what to do.
"""
from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from vqcodec.bitstream import ChannelLayout
from vqcodec.limits import MAX_PIXELS, MAX_SIDE

from .metadata import ImageMetadata

__all__ = ["ImageInputError", "PreparedImage", "AlphaPolicy", "ALPHA_POLICIES", "open_image", "prepare_image",
           "plain_rgb", "check_image_size"]

log = logging.getLogger(__name__)

AlphaPolicy = Literal["keep", "error", "drop", "white", "black"]
ALPHA_POLICIES: tuple[str, ...] = ("keep", "drop", "white", "black", "error")

_ALPHA_MODES = {"RGBA": "RGBA", "RGBa": "RGBA", "PA": "RGBA", "LA": "LA", "La": "LA"}
_GRAY_MODES = {"L", "1", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_PNG16 = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L", "LA;16B": "RGBA"}
"""16-bit PNG raw modes -> the raw mode that gives their low bytes (gray + alpha: all four bytes as RGBA)."""


class ImageInputError(ValueError):
    """An input image vqcodec does not code, with a one-line message that says why and what to do."""


@dataclass(frozen=True)
class PreparedImage:
    """An image as the codec codes it.

    Attributes:
        rgb: (H, W, 3) uint8, what the learned codec codes (R = G = B for a grayscale image).
        alpha: (H, W) uint8 alpha plane, or None.
        layout: what decoding gives back (RGB, RGBA, GRAY, GRAY_ALPHA).
        metadata: ICC profile, EXIF and XMP to carry.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    layout: ChannelLayout
    metadata: ImageMetadata


# ------------------------------------------------------------------------------------------------ reading
def _prefix(name: str) -> str:
    return f"{name}: " if name else ""


def check_image_size(width: int, height: int, name: str = "") -> None:
    """Refuse a size vqcodec does not code (ImageInputError), from the header alone."""
    if width < 1 or height < 1:
        raise ImageInputError(f"{_prefix(name)}the image is empty ({width}x{height} pixels)")
    limit = MAX_PIXELS
    if Image.MAX_IMAGE_PIXELS is not None:
        limit = min(limit, int(Image.MAX_IMAGE_PIXELS))
    if width > MAX_SIDE or height > MAX_SIDE or width * height > limit:
        raise ImageInputError(
            f"{_prefix(name)}the image is {width}x{height} pixels ({width * height / 1e6:.1f} MP); vqcodec encodes "
            f"at most {limit / 1e6:.1f} MP and {MAX_SIDE} pixels a side (refused before decoding it: a decompression "
            "bomb or a very large image; scale it down first)")


def open_image(data: bytes, name: str = "image") -> Image.Image:
    """Open image file bytes with Pillow and decode the pixels, refusing what vqcodec does not code.

    The size is checked from the header before the pixels are decoded. A 16-bit RGB(A) PNG is returned
    already reduced to 8 bits with rounding (Pillow would keep the high byte).

    Raises:
        ImageInputError: an empty file, not an image, a corrupt or truncated one, too large, animated.
    """
    if not data:
        raise ImageInputError(f"{_prefix(name)}not a readable image: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():  # the size is checked below, with vqcodec's own (lower) limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageInputError(f"{_prefix(name)}refused before decoding its pixels: {e} (vqcodec encodes at most "
                              f"{MAX_PIXELS / 1e6:.1f} MP; scale it down first)") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{_prefix(name)}not a readable image (not PNG, JPEG, WebP, BMP, TIFF or another format "
                              f"Pillow reads; it starts with {data[:8]!r})") from None
    except Exception as e:  # a header Pillow's parser chokes on
        raise ImageInputError(f"{_prefix(name)}not a readable image: it is corrupt or truncated (its header: "
                              f"{_reason(e)}); re-export it or get an intact copy") from None
    check_image_size(*img.size, name)
    _check_still(img, name)
    rounded = _png16_rounded(img, data)
    if rounded is not None:
        return rounded
    _load(img, name)
    return img


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _load(img: Image.Image, name: str) -> None:
    try:
        img.load()
    except Exception as e:  # OSError ("image file is truncated"), SyntaxError ("broken PNG file"), zlib errors, ...
        raise ImageInputError(f"{_prefix(name)}not a readable image: it is corrupt or truncated ({_reason(e)}); "
                              "re-export it or get an intact copy") from None


def _check_still(img: Image.Image, name: str) -> None:
    frames = getattr(img, "n_frames", 1)
    if frames > 1 and img.format != "MPO":
        raise ImageInputError(f"{_prefix(name)}an image of {frames} frames ({img.format}); vqcodec codes still images: "
                              "save the frame you want as its own file")


def _png16_rounded(img: Image.Image, data: bytes) -> Image.Image | None:
    """A 16-bit RGB(A) PNG decoded twice (high bytes, then low bytes) and rounded to 8 bits; None if the
    image is anything else. Pillow's own decoder does the work both times."""
    if img.format != "PNG" or len(img.tile) != 1 or img.tile[0].args not in _PNG16:
        return None
    raw_mode = img.tile[0].args
    hi_img = img
    lo_img = Image.open(io.BytesIO(data))
    lo_img.tile = [lo_img.tile[0]._replace(args=_PNG16[raw_mode])]
    try:
        lo_img.load()
    except Exception:  # Pillow without that unpacker: keep its own reading (the high byte)
        log.warning("16-bit PNG reduced to 8 bits by Pillow (high byte) instead of rounding")
        return None
    if raw_mode == "LA;16B":  # (L high, L low, A high, A low) read as R, G, B, A
        b = np.asarray(lo_img).astype(np.uint32)
        v, mode = np.stack([b[..., 0] * 256 + b[..., 1], b[..., 2] * 256 + b[..., 3]], axis=-1), "LA"
    else:
        _load(hi_img, "image")
        v, mode = np.asarray(hi_img).astype(np.uint32) * 256 + np.asarray(lo_img), hi_img.mode
    out = Image.fromarray(((v + 128) // 257).astype(np.uint8), mode)
    out.info = dict(hi_img.info)
    out.format = hi_img.format  # type: ignore[misc]
    return out


# ---------------------------------------------------------------------------------------------- preparing
def prepare_image(img: "Image.Image | np.ndarray", *, alpha: AlphaPolicy = "keep", strip: bool = False,
                  name: str = "") -> PreparedImage:
    """What the codec codes for `img`, by the policy in this module's docstring.

    Args:
        img: a PIL image (any mode) or a uint8 array: (H, W, 3) RGB, (H, W, 4) RGBA, (H, W) gray,
            (H, W, 2) gray + alpha; (H, W) uint16 is 16-bit gray.
        alpha: "keep" (code it losslessly), "drop", "white" / "black" (composite over that colour),
            "error" (refuse a transparent image; a fully opaque alpha is dropped).
        strip: drop EXIF and XMP (the ICC profile is kept).
        name: how messages name the image (e.g. its file name; "" names none).
    Raises:
        ImageInputError: the image cannot be coded (size, animation, damage, transparency with alpha="error").
        TypeError: `img` is neither a PIL image nor a numpy array.
    """
    if alpha not in ALPHA_POLICIES:
        raise ValueError(f"alpha must be one of {', '.join(ALPHA_POLICIES)}; got {alpha!r}")
    if isinstance(img, np.ndarray):
        img = _from_array(img)
    if not isinstance(img, Image.Image):
        raise TypeError(f"expected a PIL image or a numpy array, got {type(img).__name__}")
    check_image_size(*img.size, name)
    _check_still(img, name)
    if getattr(img, "fp", None) is not None and img.tile:  # not loaded yet: read it ourselves (16-bit PNG)
        source = _source_bytes(img)
        if source is not None:
            img = open_image(source, name)
    _load(img, name)
    try:
        if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            img = ImageOps.exif_transpose(img)
    except Exception as e:  # a broken EXIF block: code the pixels as stored
        log.warning("%sEXIF orientation not applied (%s)", _prefix(name), _reason(e))
    metadata = ImageMetadata.from_pil_info(img.info)
    rgb, plane, layout = _planes(img, name)
    if img.mode == "CMYK":  # converted to sRGB: a CMYK profile does not describe the result
        metadata = replace(metadata, icc=None)
    if plane is not None and alpha != "keep":
        rgb, plane, layout = _flatten(rgb, plane, layout, alpha, name)
    if layout.is_gray and metadata.icc and metadata.icc[16:20] not in (b"GRAY", b""):
        layout = ChannelLayout(layout & 1)  # an RGB profile on a gray image: decode as RGB, where it applies
    if strip:
        metadata = metadata.stripped()
    return PreparedImage(np.ascontiguousarray(rgb), None if plane is None else np.ascontiguousarray(plane),
                         layout, metadata)


def plain_rgb(rgb: np.ndarray) -> PreparedImage:
    """An (H, W, 3) uint8 RGB array as a PreparedImage that decodes as RGB, with no alpha plane or metadata
    (the array is taken as it is; the codec checks its shape and dtype)."""
    return PreparedImage(rgb, None, ChannelLayout.RGB, ImageMetadata())


def _source_bytes(img: Image.Image) -> bytes | None:
    """The file bytes of an image Pillow has opened but not loaded (16-bit PNGs only), or None."""
    if img.format != "PNG" or len(img.tile) != 1 or img.tile[0].args not in _PNG16:
        return None
    try:
        img.fp.seek(0)
        return img.fp.read()
    except Exception:
        return None


def _from_array(a: np.ndarray) -> Image.Image:
    ok = (a.dtype == np.uint8 and (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 2, 3, 4)))) or (
        a.dtype == np.uint16 and a.ndim == 2)
    if not ok:
        raise ImageInputError(f"expected a uint8 array of shape (H, W), (H, W, 2), (H, W, 3) or (H, W, 4), or a "
                              f"uint16 (H, W) array; got shape {a.shape} dtype {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if 0 in a.shape[:2]:
        raise ImageInputError(f"the image is empty ({a.shape[1]}x{a.shape[0]} pixels)")
    return Image.fromarray(np.ascontiguousarray(a))


def _gray8(img: Image.Image) -> np.ndarray:
    """A grayscale image (L, 1, I;16*, I, F) -> (H, W) uint8, 16-bit values rounded."""
    if img.mode in ("L", "1", "F"):
        return np.asarray(img.convert("L"))
    v = np.asarray(img).astype(np.int64)
    if img.mode.startswith("I;16") or v.max(initial=0) > 255:
        return ((np.clip(v, 0, 65535) + 128) // 257).astype(np.uint8)
    return np.clip(v, 0, 255).astype(np.uint8)


def _planes(img: Image.Image, name: str) -> tuple[np.ndarray, np.ndarray | None, ChannelLayout]:
    """(rgb, alpha or None, layout) of a loaded image of any mode."""
    mode = img.mode
    if mode == "P" and "transparency" in img.info:
        mode = "PA"
    if mode in _ALPHA_MODES:
        if _ALPHA_MODES[mode] == "LA":
            la = np.asarray(img.convert("LA"))
            return np.repeat(la[..., :1], 3, axis=2), la[..., 1], ChannelLayout.GRAY_ALPHA
        rgba = np.asarray(img.convert("RGBA"))
        return rgba[..., :3], rgba[..., 3], ChannelLayout.RGBA
    if mode in _GRAY_MODES:
        return np.repeat(_gray8(img)[..., None], 3, axis=2), None, ChannelLayout.GRAY
    if mode == "CMYK":
        return np.asarray(_cmyk_to_srgb(img, name)), None, ChannelLayout.RGB
    try:
        return np.asarray(img.convert("RGB")), None, ChannelLayout.RGB
    except (ValueError, OSError) as e:
        raise ImageInputError(f"{_prefix(name)}Pillow mode {mode!r} cannot be converted to RGB ({e}); "
                              "convert the image to RGB first") from None


def _cmyk_to_srgb(img: Image.Image, name: str) -> Image.Image:
    """CMYK -> RGB: through the embedded ICC profile to sRGB if there is one, else Pillow's conversion."""
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if out is not None:
                return out
        except Exception as e:  # a broken profile, or Pillow without littlecms
            log.warning("%sCMYK converted without its ICC profile (%s)", _prefix(name), _reason(e))
    return img.convert("RGB")


def _flatten(rgb: np.ndarray, plane: np.ndarray, layout: ChannelLayout, alpha: str, name: str
             ) -> tuple[np.ndarray, None, ChannelLayout]:
    """Apply alpha="drop" | "white" | "black" | "error" to an image with an alpha plane."""
    without = ChannelLayout(layout & 2)
    if alpha == "drop" or (plane == 255).all():
        return rgb, None, without
    if alpha == "error":
        raise ImageInputError(f"{_prefix(name)}the image is transparent and alpha='error' refuses it; keep the "
                              "transparency (--alpha keep, the default) or flatten it (--alpha drop, white or black)")
    bg = 255.0 if alpha == "white" else 0.0
    a = plane[..., None].astype(np.float64) / 255.0
    return np.clip(rgb * a + bg * (1.0 - a), 0, 255).round().astype(np.uint8), None, without
