"""Audio files for the CLI: what counts as audio input, reading it, and writing decoded audio (WAV, FLAC, OGG)
block by block, atomically or streamed to stdout."""
from __future__ import annotations

import io
import struct
import sys
from pathlib import Path
from typing import Iterable

import numpy as np

from .io import IMAGE_FORMATS, BadInput, write_output, write_output_with

__all__ = ["AUDIO_FORMATS", "read_audio", "check_audio_header", "is_audio_name", "looks_like_audio", "audio_format",
           "write_audio"]

AUDIO_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
"""Output extension -> (soundfile format, subtype) of the audio files the CLI writes."""
_AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".mp3", ".opus", ".w64", ".caf"}


def read_audio(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """Audio file bytes -> (float32 (T, C) samples, sample rate in Hz)."""
    import soundfile as sf

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise BadInput(f"{name}: not a readable audio file ({e})") from None
    return samples, int(rate)


def check_audio_header(path: str) -> None:
    """Raise BadInput unless soundfile can open `path`."""
    import soundfile as sf

    try:
        sf.info(path)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise BadInput(f"{path}: not a readable audio file ({e})") from None


def is_audio_name(name: str) -> bool:
    return name != "-" and Path(name).suffix.lower() in _AUDIO_SUFFIXES


def looks_like_audio(data: bytes, name: str) -> bool:
    if is_audio_name(name):
        return True
    if name != "-" and Path(name).suffix.lower() in IMAGE_FORMATS:
        return False
    return data[:4] in (b"RIFF", b"fLaC", b"OggS", b"FORM") or data[:3] == b"ID3"


def audio_format(out_path: str) -> tuple[str, str]:
    """(soundfile format, subtype) for an output name; '-' is WAV."""
    suffix = Path(out_path).suffix.lower() if out_path != "-" else ".wav"
    if suffix not in AUDIO_FORMATS:
        raise BadInput(f"{out_path}: unknown audio type {suffix!r}; use one of {', '.join(sorted(AUDIO_FORMATS))}")
    return AUDIO_FORMATS[suffix]


def _wav_header(rate: int, channels: int, num_samples: int) -> bytes:
    """The 44-byte header of a 16-bit PCM WAV file of num_samples samples per channel at `rate` Hz."""
    data_bytes = num_samples * channels * 2
    if data_bytes + 36 > 0xFFFFFFFF:
        raise BadInput(f"{num_samples} samples x {channels} channels of 16-bit audio do not fit in a WAV file "
                       "(4 GiB at most); decode to a .flac file instead")
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", data_bytes))


def write_audio(out_path: str, blocks: Iterable[np.ndarray], rate: int, channels: int, force: bool,
                num_samples: int | None = None) -> None:
    """Write float32 (n, C) blocks as an audio file, block by block (atomically: a temporary file renamed
    when complete). '-' writes a WAV to stdout: streamed when num_samples (per channel, the blocks' total)
    is given, so memory does not grow with the length (an error part-way leaves a truncated WAV on stdout
    and exit status 1), else buffered whole."""
    import soundfile as sf

    fmt, subtype = audio_format(out_path)
    if out_path == "-" and num_samples is not None:
        out = sys.stdout.buffer
        out.write(_wav_header(rate, channels, num_samples))
        for b in blocks:  # libsndfile's float -> PCM_16 conversion, as for a file
            raw = io.BytesIO()
            sf.write(raw, np.clip(b, -1.0, 1.0), rate, format="RAW", subtype="PCM_16", endian="LITTLE")
            out.write(raw.getvalue())
        out.flush()
        return

    def fill(target) -> None:
        with sf.SoundFile(target, "w", samplerate=rate, channels=channels, format=fmt, subtype=subtype) as f:
            for b in blocks:
                f.write(np.clip(b, -1.0, 1.0))

    if out_path == "-":
        buf = io.BytesIO()
        fill(buf)
        write_output(out_path, buf.getvalue(), force)
    else:
        write_output_with(out_path, fill, force)


