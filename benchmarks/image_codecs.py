"""The codecs `rate_distortion.py` measures, behind one small interface.

A codec here has a CLI key ("jpeg"), a display name ("JPEG"), a description (library and version, settings),
the quality settings of its full and of its quick sweep, and `encode(PIL RGB image, quality) -> bytes`
and `decode(bytes) -> PIL image`. The bytes are the complete file (headers included): bpp is computed
from their length.

Baselines go through Pillow with fixed settings:
  * JPEG: libjpeg-turbo, Pillow's defaults (4:2:0 chroma subsampling, baseline, standard tables);
  * WebP: libwebp lossy, method=6 (slowest, best);
  * AVIF: libavif with the aom encoder, speed=4 (Pillow's default, 6, gives 0.1-0.2 dB less PSNR and
    1-3 % more bytes at the same quality setting on Kodak), 4:2:0, full range;
  * JPEG XL: only when a Pillow plugin registering the "JXL" format is installed (pillow-jxl-plugin),
    quality on libjxl's JPEG-like scale, effort 7 (the plugin's default), one encoder thread (the same
    bytes as more threads; single-thread times as for the others);
  * HEIC (HEVC intra, the family of BPG): only when pillow-heif is installed; its
    `register_heif_opener()` is called, files are written with x265 through libheif at libheif's
    defaults (4:2:0, 8 bits; x265 preset "slow", tune "ssim"), quality 0..100 on libheif's scale.
The sweeps span roughly 0.07..2.8 bpp on Kodak (JPEG cannot go below ~0.17 bpp there). JPEG (qualities
5..90) and WebP (0..95) reach past 36 dB, so that the high-quality BD-rate window 30..36 dB is covered
without extrapolation: on Kodak JPEG q85 gives 36.5 dB at 1.9 bpp and q90 38.0 dB at 2.3 bpp; WebP q80
36.2 dB at 1.2 bpp and q95 41.7 dB at 2.8 bpp.

vqcodec is measured through its public API only: `vqcodec.encode_image`, `vqcodec.decode` and
`vqcodec.max_quality("image")`; its qualities are 1..max_quality (a fine scale: 1, 10, 20, ..., 100).
"""
from __future__ import annotations

import importlib
import os
import importlib.metadata
import io
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import PIL
from PIL import Image, features

__all__ = [
    "Codec",
    "PillowCodec",
    "VqCodec",
    "BASELINE_KEYS",
    "PLUGIN_PACKAGES",
    "baseline_codecs",
    "load_vqcodec",
]

BASELINE_KEYS = ("jpeg", "webp", "avif", "jpegxl", "heic")
# What to install for a baseline that comes from a Pillow plugin.
PLUGIN_PACKAGES = {"jpegxl": "pillow-jxl-plugin", "heic": "pillow-heif"}


class Codec(Protocol):
    """What the benchmark needs from a codec."""

    key: str
    name: str
    qualities: tuple[int, ...]
    quick_qualities: tuple[int, ...]

    @property
    def description(self) -> str: ...

    def encode(self, img: Image.Image, quality: int) -> bytes:
        """img: RGB PIL image. Returns the complete encoded file."""
        ...

    def decode(self, data: bytes) -> Image.Image:
        """Returns the fully decoded image (pixels loaded)."""
        ...


@dataclass(frozen=True)
class PillowCodec:
    """A lossy format written and read by Pillow with fixed `options` passed to `Image.save`."""

    key: str
    name: str
    fmt: str
    library: str
    qualities: tuple[int, ...]
    quick_qualities: tuple[int, ...]
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name} via Pillow {PIL.__version__} ({self.library}{', ' + opts if opts else ''})"

    def encode(self, img: Image.Image, quality: int) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=self.fmt, quality=int(quality), **self.options)
        return buf.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img


def _jpegxl_registered() -> bool:
    """True if a Pillow plugin for JPEG XL is importable and registers the "JXL" format."""
    Image.init()
    if "JXL" not in Image.SAVE:
        try:
            importlib.import_module("pillow_jxl")
        except ImportError:
            return False
    return "JXL" in Image.SAVE and "JXL" in Image.OPEN


def _package_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _heif_library() -> str | None:
    """Registers pillow-heif's HEIF opener and returns its libheif / x265 versions, or None without pillow-heif
    or without an HEVC encoder in its libheif."""
    try:
        pillow_heif = importlib.import_module("pillow_heif")
    except ImportError:
        return None
    info = pillow_heif.libheif_info()
    if "x265" not in info.get("encoders", {}):
        return None
    pillow_heif.register_heif_opener()
    x265 = info["encoders"]["x265"].replace("x265 HEVC encoder ", "")
    return f"libheif {info.get('libheif', '?')} with x265 {x265}, pillow-heif {pillow_heif.__version__}"


def baseline_codecs() -> dict[str, PillowCodec]:
    """The Pillow baselines this installation supports, by key (jpeg always; webp and avif if built into
    Pillow; jpegxl and heic if their plugins are installed)."""
    codecs = {
        "jpeg": PillowCodec(
            key="jpeg",
            name="JPEG",
            fmt="JPEG",
            library=f"libjpeg-turbo {features.version('libjpeg_turbo')}, 4:2:0",
            qualities=(5, 10, 15, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90),
            quick_qualities=(10, 50),
        )
    }
    if features.check("webp"):
        codecs["webp"] = PillowCodec(
            key="webp",
            name="WebP",
            fmt="WEBP",
            library=f"libwebp {features.version('webp')}",
            qualities=(0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95),
            quick_qualities=(10, 50),
            options={"method": 6},
        )
    if features.check("avif"):
        codecs["avif"] = PillowCodec(
            key="avif",
            name="AVIF",
            fmt="AVIF",
            library=f"libavif {features.version('avif')}, 4:2:0",
            qualities=(0, 10, 20, 30, 40, 50, 60, 70, 75),
            quick_qualities=(10, 40),
            options={"speed": 4},
        )
    if _jpegxl_registered():
        codecs["jpegxl"] = PillowCodec(
            key="jpegxl",
            name="JPEG XL",
            fmt="JXL",
            library=f"libjxl via pillow-jxl-plugin {_package_version('pillow-jxl-plugin')}",
            qualities=(0, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85),
            quick_qualities=(20, 60),
            options={"effort": 7, "num_threads": 1},
        )
    heif = _heif_library()
    if heif is not None:
        codecs["heic"] = PillowCodec(
            key="heic",
            name="HEIC",
            fmt="HEIF",
            library=f"{heif}, 4:2:0, 8 bits, libheif's x265 defaults",
            qualities=(0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50),
            quick_qualities=(10, 30),
        )
    return codecs


@dataclass(frozen=True)
class VqCodec:
    """vqcodec through its public API (`api` is the imported `vqcodec` module)."""

    api: Any
    qualities: tuple[int, ...]
    quick_qualities: tuple[int, ...]
    key: str = "vqcodec"
    name: str = "vqcodec"

    @property
    def description(self) -> str:
        return f"vqcodec {getattr(self.api, '__version__', '?')} (public API: encode_image / decode; {image_components()})"

    def encode(self, img: Image.Image, quality: int) -> bytes:
        return bytes(self.api.encode_image(img, int(quality)))

    def decode(self, data: bytes) -> Image.Image:
        img = self.api.decode(data)
        img.load()
        return img


def image_components() -> str:
    """The image components new files are made with (ids), and the weights folder when VQCODEC_WEIGHTS_DIR names
    one: what a measured curve belongs to."""
    try:
        from vqcodec.registry import WEIGHTS_ENV, default_registry

        found = default_registry().defaults("image")
    except Exception as exc:  # noqa: BLE001 - a description never stops a measurement
        return f"components unknown: {type(exc).__name__}"
    folder = os.environ.get(WEIGHTS_ENV)
    return (", ".join(f"{role} {c.model_id}" for role, c in sorted(found.items()))
            + (f"; {WEIGHTS_ENV}={folder}" if folder else ""))


def load_vqcodec() -> tuple[VqCodec | None, str]:
    """Import vqcodec and check its public API. Returns (codec, "") or (None, one-line reason)."""
    try:
        api = importlib.import_module("vqcodec")
    except ImportError as exc:
        return None, f"vqcodec is not importable ({exc}); install it with `pip install -e .` from the repo root"
    missing = [n for n in ("encode_image", "decode", "max_quality") if not hasattr(api, n)]
    if missing:
        return None, f"vqcodec's public API is missing {', '.join(missing)} (codec/api.py not written yet?)"
    try:
        top = int(api.max_quality("image"))
    except Exception as exc:  # noqa: BLE001 - any failure here means the codec cannot be measured
        return None, f"vqcodec.max_quality('image') failed: {type(exc).__name__}: {exc}"
    if top < 1:
        return None, f"vqcodec.max_quality('image') returned {top}; expected >= 1"
    # a coarse scale (one level per stage, <= 0.2.0) is measured at every level; a fine one (1..100) on a
    # ladder of 21 points (every 5), so that the 26-31.5 dB window, which the 0.5.0 scale spans from about
    # quality 10 to 35, holds several of them
    qualities = tuple(range(1, top + 1)) if top <= 16 else tuple(sorted({1, *range(5, top + 1, 5), top}))
    return VqCodec(api=api, qualities=qualities, quick_qualities=tuple(sorted({1, top}))), ""
