"""Size limits of what vqcodec encodes and decodes, and the one check a decoder runs before it allocates.

Encoding: an image has 1..MAX_SIDE pixels a side and at most MAX_PIXELS pixels in all.

Decoding: a file's declared size is checked against the format's bound (MAX_PIXELS) and against the
run-time limits MAX_DECODE_PIXELS and MAX_DECODE_AUDIO_SAMPLES before anything is allocated
(`check_decode_size`). Programs set these through the public API (`vqcodec.api.MAX_DECODE_PIXELS = ...`
sets them here), and each decode reads them again.
"""
from __future__ import annotations

from vqcodec.bitstream import AudioGeometry, Geometry, ImageGeometry, VQFormatError

__all__ = ["MAX_PIXELS", "MAX_SIDE", "MAX_DECODE_PIXELS", "MAX_DECODE_AUDIO_SAMPLES", "check_decode_size"]

MAX_PIXELS = 1 << 26
"""The most pixels (width x height) vqcodec encodes or decodes: 67 MP, e.g. 8192 x 8192. Bounds the memory
a file can make the decoder allocate."""
MAX_SIDE = 65535
"""The longest image side, in pixels, that the container holds."""

MAX_DECODE_PIXELS: int | None = MAX_PIXELS
"""The most pixels (width x height) a file may declare for decoding to start (as Pillow's
`Image.MAX_IMAGE_PIXELS`); a larger one raises VQFormatError before anything is allocated. Read at each
decode, so a program may lower it for untrusted input (a service decoding uploads) or raise it; None
leaves only the format's own bound. Default 2^26 (67 MP, 8192 x 8192): the largest image the encoder
takes (MAX_PIXELS), so every file vqcodec writes decodes by default; lower it where a decode's memory
matters."""

MAX_DECODE_AUDIO_SAMPLES: int | None = 1 << 30
"""The most samples (per channel x channels) an audio file may declare for decoding to start, counted
both at the file's rate and at the model's rate (so a tiny declared rate cannot inflate the work); a
larger one raises VQFormatError before anything is allocated. Read at each decode; None: no limit.
Default 2^30: 3.1 hours of 48 kHz stereo, 6.2 hours of 48 kHz mono, 18.6 hours of 16 kHz mono."""


def check_decode_size(geometry: Geometry, model_rate: int | None = None) -> None:
    """Raise VQFormatError if a file's declared size is over what may be decoded.

    Args:
        geometry: the file's ImageGeometry (width x height pixels) or AudioGeometry (num_samples per channel
            at sample_rate Hz, channels).
        model_rate: audio only: the model's sample rate in Hz; the samples per channel the declared audio
            stands for at that rate (the decoder's work) are counted against the limit too.
    """
    if isinstance(geometry, ImageGeometry):
        pixels = geometry.width * geometry.height
        if pixels > MAX_PIXELS:
            raise VQFormatError(f"image size {geometry.width}x{geometry.height} exceeds {MAX_PIXELS} pixels")
        if MAX_DECODE_PIXELS is not None and pixels > MAX_DECODE_PIXELS:
            raise VQFormatError(
                f"image size {geometry.width}x{geometry.height} exceeds the decode limit of {MAX_DECODE_PIXELS} "
                "pixels (vqcodec.api.MAX_DECODE_PIXELS; raise it to decode larger images from a trusted source)")
    elif isinstance(geometry, AudioGeometry):
        g, limit = geometry, MAX_DECODE_AUDIO_SAMPLES
        rate = model_rate or g.sample_rate
        at_model_rate = -(-g.num_samples * rate // g.sample_rate)  # ceil, as the audio codec resamples
        if limit is not None and max(g.num_samples, at_model_rate) * g.channels > limit:
            raise VQFormatError(
                f"audio of {g.num_samples} samples x {g.channels} channels at {g.sample_rate} Hz ({at_model_rate} "
                f"samples per channel at {rate} Hz) exceeds the decode limit of {limit} samples "
                "(vqcodec.api.MAX_DECODE_AUDIO_SAMPLES; raise it to decode longer audio from a trusted source)")
    else:
        raise TypeError(f"expected an ImageGeometry or AudioGeometry, got {type(geometry).__name__}")
