"""An image's ICC profile, EXIF and XMP: from a Pillow image into METADATA chunks, and back out.

The .vq container carries them in optional METADATA chunks with the registered keys `icc`, `exif` (the
TIFF-structured block, without the `Exif\\0\\0` prefix JPEG's APP1 puts before it) and `xmp` (the XMP
packet, UTF-8); FORMAT.md, "METADATA". They are restored when decoding: as Pillow's `img.info`
("icc_profile", "exif" with the `Exif\\0\\0` prefix as Pillow's JPEG and PNG readers give it, "xmp") and in
the files the CLI writes (PNG, JPEG and WebP: all three; TIFF: the ICC profile).

Policy: the ICC profile is kept (it says what the colour numbers mean; dropping it would change how the
decoded image looks), EXIF and XMP are kept unless stripped (`--strip`, `strip=True`), as cwebp's
`-metadata` does. The EXIF orientation is applied to the pixels before coding and reset in the EXIF
(Pillow's `ImageOps.exif_transpose`), so the carried EXIF never rotates the decoded image a second time.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Mapping

from vqcodec.bitstream import Chunk, metadata_chunk

__all__ = ["ImageMetadata", "EXIF_PREFIX", "ICC_KEY", "EXIF_KEY", "XMP_KEY"]

log = logging.getLogger(__name__)

EXIF_PREFIX = b"Exif\x00\x00"
"""What JPEG's APP1 segment (and Pillow's `info["exif"]`) puts before the TIFF-structured EXIF block."""
ICC_KEY, EXIF_KEY, XMP_KEY = "icc", "exif", "xmp"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
_JPEG_MARKER_LIMIT = 65533


@dataclass(frozen=True)
class ImageMetadata:
    """What an image carries besides its pixels.

    Attributes:
        icc: the ICC profile, or None.
        exif: the EXIF block as a TIFF structure (starting with `II*\\0` or `MM\\0*`), or None.
        xmp: the XMP packet (UTF-8 bytes), or None.
    """

    icc: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None

    # ------------------------------------------------------------------------------------ in
    @classmethod
    def from_pil_info(cls, info: Mapping[str, Any]) -> "ImageMetadata":
        """From a Pillow image's `info` (any format Pillow reads: JPEG, PNG, WebP, TIFF, ...).

        An EXIF block that is not TIFF-structured (after an optional `Exif\\0\\0` prefix) is dropped with a
        warning: it could not be written back into any file.
        """
        icc = _as_bytes(info.get("icc_profile"))
        exif = _as_bytes(info.get("exif"))
        if exif is not None:
            if exif.startswith(EXIF_PREFIX):
                exif = exif[len(EXIF_PREFIX):]
            if not exif.startswith(_TIFF_MAGICS):
                log.warning("dropping an EXIF block that is not TIFF-structured (%d bytes)", len(exif))
                exif = None
        xmp = info.get("xmp", info.get("XML:com.adobe.xmp"))
        xmp = xmp.encode("utf-8") if isinstance(xmp, str) else _as_bytes(xmp)
        return cls(icc or None, exif or None, xmp or None)

    @classmethod
    def from_chunks(cls, metadata: Mapping[str, bytes]) -> "ImageMetadata":
        """From a parsed file's METADATA chunks (`VQFile.metadata`); other keys are ignored."""
        return cls(metadata.get(ICC_KEY) or None, metadata.get(EXIF_KEY) or None, metadata.get(XMP_KEY) or None)

    # ------------------------------------------------------------------------------------ out
    def chunks(self) -> list[Chunk]:
        """The METADATA chunks that carry this metadata in a .vq file (icc, exif, xmp; absent ones omitted)."""
        items = ((ICC_KEY, self.icc), (EXIF_KEY, self.exif), (XMP_KEY, self.xmp))
        return [metadata_chunk(key, value) for key, value in items if value]

    def stripped(self) -> "ImageMetadata":
        """Without EXIF and XMP (what `--strip` keeps: the ICC profile, which is part of the colours)."""
        return replace(self, exif=None, xmp=None)

    def pil_info(self) -> dict[str, bytes]:
        """Entries for a decoded image's `img.info`, named and shaped as Pillow's own readers give them."""
        info: dict[str, bytes] = {}
        if self.icc:
            info["icc_profile"] = self.icc
        if self.exif:
            info["exif"] = EXIF_PREFIX + self.exif
        if self.xmp:
            info["xmp"] = self.xmp
        return info

    def save_options(self, fmt: str, mode: str) -> dict[str, Any]:
        """Keyword arguments for `Image.save(format=fmt)` of an image of `mode` that write this metadata.

        PNG (iCCP, eXIf, iTXt XML:com.adobe.xmp), JPEG (APP2 ICC, APP1 Exif, APP1 XMP) and WebP (ICCP,
        EXIF, XMP chunks) get all three; TIFF the ICC profile; other formats none. A grayscale ICC profile
        is written only with a grayscale mode (L, LA).
        """
        opts: dict[str, Any] = {}
        icc = self.icc
        if icc and icc[16:20] == b"GRAY" and mode not in ("L", "LA"):
            icc = None
        if fmt in ("PNG", "JPEG", "WEBP", "TIFF") and icc:
            opts["icc_profile"] = icc
        if fmt == "PNG":
            if self.exif:
                opts["exif"] = EXIF_PREFIX + self.exif
            if self.xmp:
                from PIL.PngImagePlugin import PngInfo

                text = PngInfo()
                text.add_itxt("XML:com.adobe.xmp", self.xmp.decode("utf-8", "replace"))
                opts["pnginfo"] = text
        elif fmt == "JPEG":
            if self.exif:
                if len(EXIF_PREFIX + self.exif) > _JPEG_MARKER_LIMIT:
                    log.warning("EXIF block of %d bytes does not fit a JPEG APP1 segment; not written", len(self.exif))
                else:
                    opts["exif"] = EXIF_PREFIX + self.exif
            if self.xmp:
                if len(self.xmp) > _JPEG_MARKER_LIMIT - 29:
                    log.warning("XMP packet of %d bytes does not fit a JPEG APP1 segment; not written", len(self.xmp))
                else:
                    opts["xmp"] = self.xmp
        elif fmt == "WEBP":
            if self.exif:
                opts["exif"] = self.exif  # the WebP container's EXIF chunk holds the TIFF block itself
            if self.xmp:
                opts["xmp"] = self.xmp
        return opts

    def __bool__(self) -> bool:
        return bool(self.icc or self.exif or self.xmp)


def _as_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if hasattr(value, "tobytes"):  # PIL.Image.Exif
        return bytes(value.tobytes())
    return None
