"""A Pillow plugin for .vq images: `Image.open("photo.vq")` and `img.save("photo.vq", quality=...)`.

Registered by `import vqcodec` (or `vqcodec.register_pillow()`; registering twice is harmless). Registering
loads no model: opening reads only the header (size; mode "RGB", "RGBA", "L" or "LA" by the file's channel
layout; `info["icc_profile"]`, `info["exif"]` and `info["xmp"]` where the file carries them, as Pillow's JPEG,
PNG and WebP readers name them), `load()` decodes the pixels, and saving encodes with the shipped image
model, both through the public API (vqcodec.api).

Save options (same meaning as the CLI): `quality` 1..max_quality("image") (default: the top), or instead
`max_bytes`: the highest quality within that many bytes (the CLI's --size; a target that cannot be met still
writes the file, at its smallest, and warns `vqcodec.api.TargetMissedWarning` saying the smallest reachable
size, as the CLI warns and exits 3), `effort` 1..3, `alpha`
"keep" (default: coded losslessly) | "drop" | "white" | "black" | "error", `strip` to drop EXIF and XMP,
`verify` to decode and check. The image's own `info` ICC profile, EXIF and XMP are carried; `icc_profile=`,
`exif=` and `xmp=` save options replace them (Pillow's convention).

Errors: a file with the .vq magic that is damaged, of a model that is not installed, or that holds audio
raises `PIL.UnidentifiedImageError` (an OSError) carrying vqcodec's message from `Image.open`; damage that
shows only while decoding raises OSError from `load()`; a bad save option raises ValueError.
"""
from __future__ import annotations

from typing import IO, Any

from PIL import Image, ImageFile, UnidentifiedImageError

from vqcodec.bitstream import MAGIC

__all__ = ["VQImageFile", "register_pillow", "FORMAT", "EXTENSIONS"]

FORMAT = "VQ"
EXTENSIONS = (".vq",)


def _accept(prefix: bytes) -> bool:
    """A .vq file starts with the container's magic (whatever it holds; _open refuses audio)."""
    return prefix[: len(MAGIC)] == MAGIC


class VQImageFile(ImageFile.ImageFile):
    """A .vq image: size and mode from the header on open, pixels decoded on load()."""

    format = FORMAT
    format_description = "vqcodec learned image codec"

    _vq_data: bytes | None = None

    def _open(self) -> None:
        from vqcodec import api

        assert self.fp is not None
        data = self.fp.read()
        name = self.filename or "data"
        try:
            info = api.inspect(data)
        except api.VQFormatError as e:
            raise UnidentifiedImageError(f"{name}: {e}") from None
        if info.modality != "image":
            raise UnidentifiedImageError(
                f"{name}: a vqcodec {info.modality} file, not an image; decode it with vqcodec.decode")
        from vqcodec.image.metadata import ImageMetadata

        self._vq_data = data
        self._size = (info.width, info.height)
        self._mode = info.mode
        self.info["layers"] = info.layers
        self.info["vq_models"] = info.components
        self.info.update(ImageMetadata.from_chunks(dict(info.metadata)).pil_info())
        self.tile = []

    def load(self) -> Any:
        """Decode the pixels (once); damage found while decoding raises OSError with vqcodec's message."""
        if self._vq_data is not None:
            from vqcodec import api

            data, self._vq_data = self._vq_data, None
            try:
                decoded = api.decode(data)
            except api.VQFormatError as e:
                raise OSError(f"{self.filename or 'data'}: {e}") from None
            self.load_prepare()
            self.frombytes(decoded.tobytes())
            if self._exclusive_fp and self.fp is not None:
                self.fp.close()
            self.fp = None
        return super().load()


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """Pillow's save hook: encode `im` with the shipped image model and write the .vq bytes."""
    from vqcodec import api

    opts = im.encoderinfo
    quality = opts.get("quality")
    top = api.max_quality("image")
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= top):
        raise ValueError(f"vqcodec quality must be an integer 1..{top} (higher is better), got {quality!r}")
    max_bytes = opts.get("max_bytes")
    if max_bytes is not None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"vqcodec max_bytes must be a positive integer (a file size in bytes), got {max_bytes!r}")
        if quality is not None:
            raise ValueError("give vqcodec either quality or max_bytes (a target size), not both")
    alpha = opts.get("alpha", "keep")
    if alpha not in ("keep", "error", "drop", "white", "black"):
        raise ValueError(f"vqcodec alpha must be 'keep', 'drop', 'white', 'black' or 'error', got {alpha!r}")
    overrides = {key: opts[key] for key in ("icc_profile", "exif", "xmp") if key in opts}
    if overrides:  # Pillow's convention: save options replace the image's own metadata
        im = im.copy()
        im.info.update(overrides)
    fp.write(api.encode_image(im, quality, alpha=alpha, strip=bool(opts.get("strip", False)),
                              effort=opts.get("effort"), max_bytes=max_bytes,
                              verify=bool(opts.get("verify", False))))


def register_pillow() -> None:
    """Register the .vq format with Pillow (open, save, the .vq extension, MIME type); cheap, no model loading."""
    Image.register_open(FORMAT, VQImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extensions(FORMAT, list(EXTENSIONS))
    Image.register_mime(FORMAT, "image/x-vqcodec")
