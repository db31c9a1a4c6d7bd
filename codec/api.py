"""Public Python API: encode_image, encode_audio, decode, decode_indices, inspect, max_quality, VQFormatError.

One meaning of quality everywhere: `quality` is the codec's quality scale, 1..max_quality(modality), higher
is better and bigger; None means the top. Decoding fewer quality *layers* than a file holds is a separate
option, `layers`: a file cut to its first N layers (or decoded with layers=N) gives the reconstruction
of those layers.

Decoding dispatches on the file: its header names the modality and every model component that made it,
and the registry (`vqcodec.registry`) finds the installed weights, so files of earlier releases keep
decoding while their components are installed. The codecs behind these functions are the registry's
(`vqcodec.registry.default_codec`, `codec_for_file`); what the API asks of them is `vqcodec.contract.Codec`.

Decode limits: `MAX_DECODE_PIXELS` and `MAX_DECODE_AUDIO_SAMPLES` here read and set vqcodec.limits' values,
which every decode checks before it allocates.

Input policy for images (also what the CLI does; the details are vqcodec.image.input's):
  * RGB is coded as is; grayscale (L, 1, 16-bit, I, F) is coded as RGB and decoded as L; palette images
    as RGB (RGBA with a transparency key); CMYK is converted to sRGB (through its ICC profile if any);
    16-bit samples are rounded to 8 bits; the EXIF orientation is applied to the pixels.
  * Alpha (RGBA, LA, PA, ...) is coded losslessly beside the colours (`alpha="keep"`, the default), so
    RGBA in gives RGBA out with alpha bit-exact; `alpha="drop" | "white" | "black"` flattens it and
    `alpha="error"` refuses a transparent image.
  * The ICC profile, EXIF and XMP are carried and come back in the decoded image's `info`
    ("icc_profile", "exif", "xmp"); `strip=True` drops EXIF and XMP.
  * Refused with a one-line ValueError: larger than 2^26 pixels or 65535 a side (checked before the
    pixels are decoded), animated, damaged.
"""
from __future__ import annotations

import functools
import logging
import sys
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal, cast

import numpy as np
from PIL import Image

from vqcodec import limits
from vqcodec.bitstream import SETTINGS_KEY, VQFile, VQFormatError, decode_settings, read_file
from vqcodec.contract import Codec, Progress

if TYPE_CHECKING:
    import torch

    from vqcodec.registry import InstalledComponent
    from vqcodec.audio.codec import AudioCodec
    from vqcodec.audio.converter import Converter, Target
    from vqcodec.image.codec import ImageCodec

_log = logging.getLogger(__name__)


# The registry (and with it torch and the models) is imported when a function first needs a codec, so that
# `inspect` and the commands that need no model (`vqcodec --help`, `vqcodec info`) start fast.
def default_codec(modality: str) -> "Codec":
    """The codec of the shipped `modality` model (vqcodec.registry.default_codec)."""
    from vqcodec.registry import default_codec as registry_default_codec

    return registry_default_codec(modality)


def codec_for_file(vqfile: VQFile, without_decoder: bool = False) -> "Codec":
    """The installed codec that decodes `vqfile` (vqcodec.registry.codec_for_file)."""
    from vqcodec.registry import codec_for_file as registry_codec_for_file

    return registry_codec_for_file(vqfile, without_decoder)

__all__ = [
    "encode_image",
    "encode_audio",
    "encode_audio_file",
    "decode_audio_blocks",
    "convert_speaker",
    "list_speakers",
    "sample_image",
    "sample_audio",
    "decode",
    "complete_layers",
    "decode_indices",
    "inspect",
    "max_quality",
    "max_layers",
    "FileInfo",
    "VQFormatError",
    "TargetMissedWarning",
    "AlphaPolicy",
    "Progress",
    "MAX_DECODE_PIXELS",
    "MAX_DECODE_AUDIO_SAMPLES",
]

AlphaPolicy = Literal["keep", "error", "drop", "white", "black"]


# ----------------------------------------------------------------------------------------------- limits
class _ApiModule(types.ModuleType):
    """This module's type: its MAX_DECODE_* attributes read and set the limits every decode checks
    (vqcodec.limits), so `vqcodec.api.MAX_DECODE_PIXELS = n` takes effect at the next decode."""

    @property
    def MAX_DECODE_PIXELS(self) -> int | None:  # noqa: N802 (a module constant to its users)
        """The most pixels a file may declare for decoding to start (None: only the format's 2^26); see
        vqcodec.limits.MAX_DECODE_PIXELS."""
        return limits.MAX_DECODE_PIXELS

    @MAX_DECODE_PIXELS.setter
    def MAX_DECODE_PIXELS(self, value: int | None) -> None:  # noqa: N802
        limits.MAX_DECODE_PIXELS = value

    @property
    def MAX_DECODE_AUDIO_SAMPLES(self) -> int | None:  # noqa: N802
        """The most samples x channels an audio file may declare for decoding to start (None: no limit);
        see vqcodec.limits.MAX_DECODE_AUDIO_SAMPLES."""
        return limits.MAX_DECODE_AUDIO_SAMPLES

    @MAX_DECODE_AUDIO_SAMPLES.setter
    def MAX_DECODE_AUDIO_SAMPLES(self, value: int | None) -> None:  # noqa: N802
        limits.MAX_DECODE_AUDIO_SAMPLES = value


sys.modules[__name__].__class__ = _ApiModule


# ----------------------------------------------------------------------------------------------- scales
def max_quality(modality: str = "image") -> int:
    """Top of the quality scale of the shipped `modality` model ("image": 100; "audio": its stage count)."""
    return default_codec(modality).max_quality


def max_layers(modality: str = "image") -> int:
    """Most quality layers a file of the shipped `modality` model holds (its residual-VQ stages): the range
    of `decode(..., layers=N)` and of `sample_*(layers=N)`."""
    return default_codec(modality).max_layers


# ----------------------------------------------------------------------------------------------- images
def encode_image(
    img: "Image.Image | np.ndarray",
    quality: int | None = None,
    *,
    alpha: AlphaPolicy = "keep",
    strip: bool = False,
    effort: int | None = None,
    max_bytes: int | None = None,
    progress: Progress | None = None,
    verify: bool = False,
) -> bytes:
    """Encode an image to .vq bytes.

    Args:
        img: a PIL image of any mode, or a uint8 array (H, W, 3) RGB, (H, W, 4) RGBA, (H, W) gray,
            (H, W, 2) gray + alpha. See the module docstring for the policy.
        quality: 1..max_quality("image") (100); None means the top (best quality, most bytes). Each value
            is a rate-distortion trade-off (vqcodec.image.rate_control), each block getting its own depth.
        effort: encoder effort 1 (fastest) .. 3 (slowest, fewest bytes); None = 2. Decoding time does not
            depend on it.
        max_bytes: instead of `quality`: the highest quality whose colour streams and header fit in this
            many bytes (as `cwebp -size`); the alpha plane and metadata come on top. A file larger than
            max_bytes (even quality 1 is larger, or the alpha plane and metadata do not fit) is still
            returned, with a `TargetMissedWarning` saying the smallest reachable size.
        alpha: "keep" (code the alpha plane losslessly), "drop", "white" / "black" (composite over that
            colour), "error" (refuse a transparent image).
        strip: drop EXIF and XMP metadata (the ICC profile is kept).
        verify: decode the bytes again and check they give the encoder's indices and alpha (RuntimeError if not).
    Raises:
        ValueError: an image vqcodec does not code (vqcodec.image.input.ImageInputError: one line saying why).
    """
    from vqcodec.image.input import prepare_image

    prepared = prepare_image(img, alpha=alpha, strip=strip)
    data = default_codec("image").encode(prepared, quality, progress=progress, verify=verify, effort=effort,
                                         max_bytes=max_bytes)
    if max_bytes is not None and len(data) > max_bytes:
        warnings.warn(TargetMissedWarning.for_file(data, max_bytes), stacklevel=2)
    return data


class TargetMissedWarning(UserWarning):
    """`encode_image(max_bytes=...)` (the CLI's --size and --bpp, the Pillow plugin's max_bytes) could not
    meet the target: the file written is larger. Attributes: `target` and `actual` (bytes), `smallest`: the
    smallest size this image codes to at this effort (the quality-1 file) when the target was below it,
    else None (the colour data fit, the alpha plane and metadata, which come on top, did not)."""

    def __init__(self, message: str, target: int, actual: int, smallest: int | None) -> None:
        super().__init__(message)
        self.target, self.actual, self.smallest = target, actual, smallest

    @classmethod
    def for_file(cls, data: bytes, target: int) -> "TargetMissedWarning":
        """The warning for the encoded file `data` that is larger than `target` bytes."""
        fi = inspect(data)
        if fi.quality == 1:
            return cls(f"cannot reach {target} bytes: the smallest this image codes to is {len(data)} bytes "
                       f"({fi.bits_per_pixel:.3f} bpp, quality 1); wrote that", target, len(data), len(data))
        side = len(data) - target
        return cls(f"the coded colours fit {target} bytes (quality {fi.quality}), but the alpha plane and metadata "
                   f"add {side} bytes more; --strip (strip=True) drops EXIF and XMP, --alpha drop the alpha plane",
                   target, len(data), None)


def sample_image(width: int, height: int, *, seed: int = 0, layers: int | None = None) -> Image.Image:
    """Draw index maps from the shipped image prior and decode them (the VQ-VAE paper's generation
    experiment). width, height: multiples of 8 pixels; layers: quality layers to sample (None = all)."""
    codec = default_codec("image")
    return Image.fromarray(codec.sample(width, height, seed, layers), mode="RGB")


# ----------------------------------------------------------------------------------------------- audio
def sample_audio(seconds: float, *, seed: int = 0, layers: int | None = None) -> tuple[np.ndarray, int]:
    """Draw index sequences from the shipped audio prior and decode them (the paper's generation
    experiment for audio) -> (float32 (T,) samples, 16000)."""
    from vqcodec.audio.model import SAMPLE_RATE

    return default_codec("audio").sample(seconds, seed, layers), SAMPLE_RATE


def encode_audio(samples: np.ndarray, sample_rate: int, quality: int | None = None, *,
                 progress: Progress | None = None, verify: bool = False) -> bytes:
    """Encode audio to .vq bytes.

    Args:
        samples: float32 (T,) mono or (T, C) with C channels, values nominally in [-1, 1].
        sample_rate: of `samples`, in Hz; decoding restores it.
        quality: 1..max_quality("audio"); None means the top.
        verify: decode the bytes again and check they give the encoder's indices (RuntimeError if not).
    """
    return default_codec("audio").encode(samples, quality, sample_rate=int(sample_rate), progress=progress,
                                         verify=verify)


def encode_audio_file(path: "str | Path", quality: int | None = None, *, progress: Progress | None = None,
                      verify: bool = False) -> bytes:
    """Encode an audio file (any format soundfile reads) to .vq bytes, streaming it in blocks, so memory
    does not grow with the file's length."""
    from vqcodec.audio.codec import AudioStream

    return default_codec("audio").encode(AudioStream.from_file(path), quality, progress=progress, verify=verify)


# ----------------------------------------------------------------------------------------------- decoding
def _parse(data: "bytes | bytearray | memoryview") -> VQFile:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected .vq bytes, got {type(data).__name__}")
    return read_file(bytes(data))


def decode(data: bytes, *, layers: int | None = None, progress: Progress | None = None, partial: bool = False,
           decoder: "str | Path | None" = None) -> "Image.Image | tuple[np.ndarray, int]":
    """Decode .vq bytes.

    Args:
        layers: decode only the first `layers` quality layers (None = all in the file).
        decoder: what renders the file's indices, instead of the decoder the file names (or, naming none, its
            model's own decoder): an installed decoder's model id of the file's modality (e.g.
            "audio-decoder-hn-v1"), "model" (the vqvae's own decoder: how speech files of 0.4.x and image files
            of 0.6.0 render) or a decoder-stage weights file (`vqcodec train audio-decoder` / `image-decoder`)
            trained on the file's model (ValueError otherwise). None: what the file names. FileNotFoundError for
            anything else. The indices are the same whichever renders them.
        partial: accept a file that was cut short (a slow download, a cut transfer) and decode its complete
            quality layers (`complete_layers`); the number used is logged, and an image's `info` holds it as
            "vq_layers". A file cut before its first layer is complete still raises VQFormatError.
    Returns:
        an image file: a PIL image of the file's layout ("RGB", "RGBA", "L" or "LA"), its `info` holding the
        carried "icc_profile", "exif" and "xmp"; an audio file: (samples float32 (T, C), sample_rate in Hz).
    Raises:
        VQFormatError: for anything that is not a valid .vq file of an installed model.
    """
    if partial:
        data, layers, _ = complete_layers(data, layers)
    vqfile = _parse(data)
    if decoder is not None:
        codec: Codec = _codec_rendering_with(vqfile, decoder)
    else:
        codec = codec_for_file(vqfile)
    if vqfile.modality_name == "image":
        from vqcodec.image.layout import read_side_info, to_image

        side = read_side_info(vqfile)  # the alpha plane first: damage there is found before the slow part
        image = to_image(cast(np.ndarray, codec.decode(vqfile, layers, progress)), side)
        if partial:
            image.info["vq_layers"] = min(vqfile.layers, layers or vqfile.layers)
        return image
    return cast("tuple[np.ndarray, int]", codec.decode(vqfile, layers, progress))


# --- partial decoding (issue 24, item 9): the complete layers of a cut file, through the bitstream reader
def complete_layers(data: "bytes | bytearray | memoryview", layers: int | None = None) -> tuple[bytes, int, bool]:
    """A possibly cut .vq file -> (the valid file of its complete quality layers, the layers to decode: `layers`
    capped at those, whether the input was cut short). A whole valid file comes back unchanged; a file cut
    before its first layer is complete, or a damaged one, raises VQFormatError
    (vqcodec.bitstream.complete_layers_prefix; bitstream/FORMAT.md, "Partial decoding"). Logs how many layers
    a cut file gives (a warning: the result is of lower quality)."""
    from vqcodec.bitstream import complete_layers_prefix

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected .vq bytes, got {type(data).__name__}")
    prefix = complete_layers_prefix(data)
    used = prefix.layers if layers is None else min(int(layers), prefix.layers)
    if prefix.cut:
        _log.warning("the file is cut short after %d bytes: decoding %d complete quality layer%s", len(data), used,
                     "" if used == 1 else "s")
    return prefix.data, used, prefix.cut


def decode_audio_blocks(data: bytes, *, layers: int | None = None, progress: Progress | None = None,
                        decoder: "str | Path | None" = None) -> tuple[int, int, int, Iterator[np.ndarray]]:
    """Decode an audio .vq file block by block: -> (sample_rate in Hz, channels, num_samples, blocks), where
    blocks yields float32 (n, channels) arrays adding up to num_samples per channel, equal bit for bit to
    what `decode` returns.

    The file is parsed and checked here; each coded block's index streams are decoded when the audio that
    needs them is rendered and released after it, and the waveform is rendered as it is consumed, so memory
    does not grow with the file's length (it holds the file's bytes, a few blocks of indices and one chunk
    of audio). A stream damaged in a way the up-front checks cannot see raises VQFormatError from the
    iteration, after the earlier blocks were yielded: write to a temporary file and rename it (as the CLI
    does) if a partial result must never be seen. `decoder`: as for `decode`."""
    vqfile = _parse(data)
    if vqfile.modality_name != "audio":
        raise ValueError(f"file holds {vqfile.modality_name}, not audio; use vqcodec.decode")
    if decoder is not None:
        codec = cast("AudioCodec", _codec_rendering_with(vqfile, decoder))
    else:
        codec = _audio_codec_for(vqfile)
    return codec.decode_blocks(vqfile, layers, progress)


def _audio_codec_for(vqfile: VQFile, without_decoder: bool = False) -> "AudioCodec":
    """The audio codec of a parsed audio file (codec_for_file, typed for the audio-only calls)."""
    return cast("AudioCodec", codec_for_file(vqfile, without_decoder))


def _codec_rendering_with(vqfile: VQFile, decoder: "str | Path") -> "AudioCodec | ImageCodec":
    """The codec of a parsed file, rendering with `decoder` whatever decoder the file names: an installed
    decoder's model id, "model" (the vqvae's own decoder) or a decoder weights file
    (vqcodec.registry.ModelRegistry.decoder_path)."""
    from vqcodec.registry import default_registry

    path = default_registry().decoder_path(decoder, vqfile.modality_name)
    codec = cast("AudioCodec | ImageCodec", codec_for_file(vqfile, without_decoder=True))
    return codec.with_decoder(path)


# ----------------------------------------------------------------------------------------------- speakers
Speaker = str | int | Path | tuple[np.ndarray, int]
"""What `convert_speaker` converts to: a speaker id of the conversion model's table (str or int; `list_speakers`),
or a reference recording of any voice: a path to an audio file (a str naming an existing file counts as one) or
(samples float (T,) or (T, C), sample rate in Hz)."""

_NO_CONVERSION_MODEL = (
    "no speaker conversion model is installed in {folder}: speaker conversion (`vqcodec convert`, "
    "vqcodec.convert_speaker) needs the optional weights component of role conversion, which vqcodec ships "
    "(audio_conversion_v3.safetensors): reinstall vqcodec, or unset $VQCODEC_WEIGHTS_DIR, or copy that file into "
    "this folder as audio_conversion.safetensors (a folder without a manifest), or train one with `vqcodec train "
    "conversion --data SPEECH_DIR --out RUN` and put RUN/conversion_model.safetensors there under that name. "
    "Coding does not need it.")


def _conversion_component() -> "InstalledComponent":
    from vqcodec.registry import default_registry

    registry = default_registry()
    component = registry.optional("audio", "conversion")
    if component is None:
        raise FileNotFoundError(_NO_CONVERSION_MODEL.format(folder=registry.folder))
    return component


@functools.lru_cache(maxsize=2)
def _load_converter(path: str, mtime: float) -> "Converter":
    from vqcodec.audio.converter import Converter

    return Converter.load(path)


def _converter() -> "Converter":
    """The installed conversion model's converter (loaded once per process and file)."""
    path = _conversion_component().path
    return _load_converter(str(path), path.stat().st_mtime)


def list_speakers() -> list[tuple[str, float]]:
    """The speaker table of the installed conversion model: [(speaker id, median pitch in Hz), ...], the ids
    `convert_speaker` takes (the median is 2 ** the speaker's mean log2 f0). Raises FileNotFoundError, saying how
    to get one, when no conversion model is installed."""
    return _converter().speakers


def convert_speaker(source: "bytes | bytearray | memoryview | np.ndarray", speaker: Speaker, *,
                    sample_rate: int | None = None, layers: int | None = None,
                    progress: Progress | None = None) -> tuple[np.ndarray, int]:
    """Speak `source` in another voice, with the installed conversion model (`vqcodec.audio.conversion`).

    Each channel is resampled to 16 kHz, pitch-tracked (pyworld), its pitch contour moved into the target's range,
    re-synthesised from the model's low-rate content code in the target's voice, resampled back and cut to the
    source's length. Long inputs are rendered in chunks (`vqcodec.audio.converter`).

    Args:
        source: .vq bytes of audio (decoded first, as `decode`), or float samples (T,) or (T, C) nominally in
            [-1, 1], with `sample_rate`.
        speaker: a speaker id of the model's table (`list_speakers()`, e.g. "ls103"), or a reference recording of
            any voice: a path to an audio file (a str naming an existing file is a path), or (samples (T,) or
            (T, C), sample rate in Hz). A reference gives the target's embedding and pitch range (its first
            minute is used).
        sample_rate: Hz of array samples (required for them; not allowed with .vq bytes, which carry theirs).
        layers: .vq bytes only: decode only the first `layers` quality layers (None: all).
        progress: progress(done, total) as chunks are rendered.
    Returns:
        (samples float32 (T, C) in [-1, 1], sample rate in Hz): the source's rate, channel count and length.
    Raises:
        FileNotFoundError: no conversion model is installed (the message says how to get one), or a reference
            given as a Path that does not exist (a str naming no file is taken as a speaker id).
        ModuleNotFoundError: pyworld, which tracks pitch, is not installed (pip install pyworld-prebuilt).
        ValueError: an unknown speaker id (the message names a few), a reference that is too short or unreadable,
            an image file, bad samples or arguments.
        VQFormatError: bytes that are not a valid audio .vq file of an installed model.
    """
    converter = _converter()
    target = _target(converter, speaker)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if sample_rate is not None:
            raise ValueError("sample_rate is for sample arrays; a .vq file carries its own rate")
        if _parse(source).modality_name != "audio":
            raise ValueError("file holds an image, not audio; speaker conversion is for speech")
        samples, rate = cast("tuple[np.ndarray, int]", decode(bytes(source), layers=layers, progress=None))
    else:
        if layers is not None:
            raise ValueError("layers is for .vq bytes; sample arrays have no quality layers")
        if sample_rate is None:
            raise ValueError("give sample_rate (Hz) with sample arrays")
        samples, rate = source, int(sample_rate)
    return converter.convert(samples, rate, target, progress), rate


def _target(converter: "Converter", speaker: Speaker) -> "Target":
    """The `Target` a `Speaker` names (see `convert_speaker`)."""
    if isinstance(speaker, tuple):
        if len(speaker) != 2:
            raise ValueError("a reference recording as a tuple is (samples, sample rate in Hz)")
        samples, rate = speaker
        return converter.reference_target(np.asarray(samples), int(rate), "reference samples")
    if isinstance(speaker, Path) or (isinstance(speaker, str) and Path(speaker).is_file()):
        return converter.reference_target(*_read_reference(Path(speaker)), str(speaker))
    if isinstance(speaker, (str, int)) and not isinstance(speaker, bool):
        return converter.table_target(speaker)
    raise TypeError(f"speaker must be an id (str or int), a path or (samples, rate), got {type(speaker).__name__}")


def _read_reference(path: Path) -> tuple[np.ndarray, int]:
    """A reference recording's (float32 (T, C) samples, rate in Hz); its first MAX_REFERENCE_SECONDS only."""
    import soundfile as sf

    from vqcodec.audio.converter import MAX_REFERENCE_SECONDS

    if not path.is_file():
        raise FileNotFoundError(f"reference recording not found: {path}")
    try:
        with sf.SoundFile(str(path)) as f:
            frames = int(MAX_REFERENCE_SECONDS * f.samplerate) + 1
            return f.read(frames, dtype="float32", always_2d=True), int(f.samplerate)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise ValueError(f"{path}: not a readable audio file ({e}); give a WAV, FLAC or OGG recording of the voice") from None


def decode_indices(data: bytes, *, layers: int | None = None) -> "torch.Tensor":
    """Decode only the quantizer indices of .vq bytes: (layers, *positions) int64, exact on any machine."""
    vqfile = _parse(data)
    return codec_for_file(vqfile).decode_indices(vqfile, layers)


@dataclass(frozen=True)
class FileInfo:
    """What a .vq file holds, from its header (no decoding).

    Attributes:
        modality: "image" or "audio".
        layers: quality layers in the file.
        components: ((role, model id, weights hash hex), ...) of the models that made it.
        file_bytes: size of the file.
        width, height: image size in pixels (0 for audio).
        sample_rate, channels, num_samples: audio geometry (0 for images).
        layer_bytes: bytes of the coded streams of each layer.
        format_version: the container version.
        mode: images: the Pillow mode decoding gives ("RGB", "RGBA", "L", "LA"); "" for audio.
        metadata: the METADATA chunks, ((key, value bytes), ...) in file order: "icc", "exif", "xmp", ...
            ("settings", the encoder settings, is not among them: see quality, effort).
        quality, effort: the encoder settings the file was made at (its "settings" METADATA chunk; images
            encoded by releases after 0.4.1); None where the file does not record them.
        vq_layers: how many of the layers are residual-VQ stages; the layers after them are scalar refinement
            layers (images with a REFINEMENT chunk, 0.5.0's model); equal to `layers` for every other file.
    """

    modality: str
    layers: int
    components: tuple[tuple[str, str, str], ...]
    file_bytes: int
    layer_bytes: tuple[int, ...]
    format_version: int
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    num_samples: int = 0
    mode: str = ""
    metadata: tuple[tuple[str, bytes], ...] = ()
    quality: int | None = None
    effort: int | None = None
    vq_layers: int = 0

    @property
    def bits_per_pixel(self) -> float:
        return 8 * self.file_bytes / (self.width * self.height) if self.width else 0.0

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate if self.sample_rate else 0.0

    @property
    def kbps(self) -> float:
        return 8 * self.file_bytes / self.duration_s / 1000 if self.num_samples else 0.0


def inspect(data: bytes) -> FileInfo:
    """Describe .vq bytes without decoding them. Raises VQFormatError for an invalid file."""
    vqfile = _parse(data)
    g = vqfile.geometry
    settings = decode_settings(vqfile.metadata.get(SETTINGS_KEY, b""))
    geometry: dict[str, int | str] = (
        {"width": g.width, "height": g.height, "mode": g.channel_layout.pil_mode} if vqfile.modality_name == "image"
        else {"sample_rate": g.sample_rate, "channels": g.channels, "num_samples": g.num_samples}
    )
    return FileInfo(
        modality=vqfile.modality_name,
        layers=vqfile.layers,
        components=tuple((c.role, c.model_id, bytes(c.weights_hash).hex()) for c in vqfile.components),
        file_bytes=len(data),
        layer_bytes=tuple(sum(len(s) for s in vqfile.streams(k)) for k in range(1, vqfile.layers + 1)),
        format_version=vqfile.version,
        metadata=tuple((k, v) for k, v in vqfile.metadata.items() if k != SETTINGS_KEY),
        quality=settings.get("quality"),
        effort=settings.get("effort"),
        vq_layers=vqfile.layers if vqfile.refinement_base is None else min(vqfile.layers, vqfile.refinement_base),
        **geometry,
    )
