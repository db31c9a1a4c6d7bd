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
    from vqcodec.audio.speaker_convert import SpeakerConverter
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
_NO_SPEAKER_DECODER = ("no speaker decoder is installed in {folder}: speaker conversion needs the optional weights "
                       "component audio_speaker_decoder.safetensors (role speaker-decoder); reinstall vqcodec, or "
                       "train one with `vqcodec train speaker-decoder --data LIBRISPEECH_DIR --out RUN` and point "
                       "$VQCODEC_WEIGHTS_DIR at a folder holding it. Coding does not need it.")


def _speaker_component() -> "InstalledComponent":
    from vqcodec.registry import default_registry

    registry = default_registry()
    component = registry.optional("audio", "speaker-decoder")
    if component is None:
        raise FileNotFoundError(_NO_SPEAKER_DECODER.format(folder=registry.folder))
    return component


@functools.lru_cache(maxsize=2)
def _load_converter(path: str, codec: "AudioCodec") -> "SpeakerConverter":
    from vqcodec.audio.speaker_convert import SpeakerConverter

    return SpeakerConverter(codec, path)


def list_speakers() -> list[tuple[str, str]]:
    """The speakers `convert_speaker` can speak as: [(speaker id, "F" | "M" | "?"), ...] (LibriSpeech
    train-clean-100 reader ids). Raises FileNotFoundError when the optional speaker decoder is not installed."""
    from vqcodec.audio.speaker_model import read_speaker_config

    spk, _ = read_speaker_config(_speaker_component().path)
    return list(zip(spk.speakers, spk.sexes or ("?",) * len(spk.speakers)))


def convert_speaker(data: bytes, speaker: "str | int", *, layers: int | None = None, stages: int | None = None,
                    progress: Progress | None = None) -> tuple[np.ndarray, int]:
    """Decode an audio .vq file in the voice of another training speaker (the VQ-VAE paper's speaker
    conversion): its first `layers` quality layers through the speaker-conditioned decoder.

    Args:
        speaker: a training speaker id, e.g. "1088" or 1088 (`list_speakers()`).
        layers: quality layers decoded (None: the decoder's default, the count that converted best in
            benchmarks/speaker_conversion.py; fewer layers carry less of the source's voice).
        stages: the former name of `layers` (give one of them).
    Returns:
        (samples float32 (T, C), sample_rate in Hz), the file's length and rate.
    Raises:
        FileNotFoundError: the optional speaker decoder is not installed.
        ValueError: unknown speaker (the message lists the valid ids), stages out of range, or a file made
            with an audio model other than the one the speaker decoder was trained on.
        VQFormatError: not a valid audio .vq file.
    """
    if layers is not None and stages is not None:
        raise ValueError("give layers (or its former name, stages), not both")
    vqfile = _parse(data)
    if vqfile.modality_name != "audio":
        raise ValueError(f"file holds {vqfile.modality_name}, not audio; speaker conversion is for speech")
    component = _speaker_component()
    converter = _load_converter(str(component.path), _audio_codec_for(vqfile))
    return converter.convert(vqfile, speaker, layers if stages is None else stages, progress)


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
