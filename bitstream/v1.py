"""Format version 1 (legacy, still read): header, per-stage streams and CRC (FORMAT.md, "Version 1").

An internal module of vqcodec.bitstream, not part of its interface: `read_file` and `truncate` in
`container` read version 1 through `unpack_v1` and `truncate_v1` below. `pack` (writing version 1) is
kept only so the tests can build version-1 files; nothing in vqcodec writes version 1. Use `read_file` /
`write_file`.

Layout (all integers little-endian; L = model id length, s = stage count):

    offset        size  type      field
    0             4     bytes     magic b"\\x89VQC"
    4             1     u8        format version (1)
    5             1     u8        modality (0 = IMAGE, 1 = AUDIO)
    6             1     u8        L, model id length (1..64)
    7             L     ASCII     model id, visible ASCII 0x21..0x7E
    7+L           16    bytes     weights hash (first 16 bytes of sha256 of the weights file)
    23+L          4     u32       width  (1..65535)
    27+L          4     u32       height (1..65535)
    31+L          1     u8        channel layout (0 = RGB)
    32+L          1     u8        s, stage count (1..32)
    33+L          4*s   u32[s]    stream length of each stage, in bytes
    33+L+4s       sum   bytes     stage streams back to back, stage 1 first
    end-4         4     u32       zlib.crc32 of every byte before it

This module owns only the byte layout. It does not know what is inside a stream (that is
`entropy.py` and the priors in codec/) and it does not check that the model is installed (the
caller does that with `check_model`).

Every length field is bounded and checked against the real size of the input before it is used,
so no input can make this module allocate more than a copy of the input or loop more than
O(len(data)) times. Bad data raises `VQFormatError` only; bad arguments raise `TypeError` or
`ValueError`.
"""
from __future__ import annotations

import dataclasses
import struct
import zlib
from dataclasses import dataclass
from typing import Sequence

from ._common import (
    FORMAT_VERSION,
    MAGIC,
    MAX_MODEL_ID_BYTES,
    V1_FORMAT_VERSION,
    WEIGHTS_HASH_BYTES,
    BytesLike,
    ChannelLayout,
    Modality,
    as_bytes,
    check_int,
    check_signature,
    model_id_problem,
    size_problem,
    truncated,
)
from .errors import VQFormatError

__all__ = [
    "MAX_STAGES",
    "MAX_STREAM_BYTES",
    "MIN_FILE_BYTES",
    "VQHeader",
    "pack",
    "unpack",
    "truncate_v1",
    "read_header",
    "check_model",
]

MAX_STAGES = 32
"""Version 1: at most 32 stage streams."""
MAX_STREAM_BYTES = 0xFFFFFFFF
"""A stream length is a u32."""

_PREFIX = struct.Struct("<4sBBB")  # magic, version, modality, model id length
_MIDDLE = struct.Struct("<16sIIBB")  # weights hash, width, height, channel layout, stage count
_CRC = struct.Struct("<I")
_FIXED_BYTES = _PREFIX.size + _MIDDLE.size  # header bytes other than model id and stream lengths
MIN_FILE_BYTES = _FIXED_BYTES + 1 + 4 + _CRC.size
"""Smallest possible valid version-1 file (42 bytes): 1-byte model id, one empty stream."""


@dataclass(frozen=True)
class VQHeader:
    """Everything in a .vq file except the streams themselves.

    Attributes:
        modality: what the file encodes.
        model_id: ASCII model name, 1..64 visible characters, e.g. "image-f8-s8-v1".
        weights_hash: 16 raw bytes, the first 16 bytes of sha256 of the weights file
            (see `hash_weights`).
        width, height: image size in pixels, 1..65535 each.
        channel_layout: channel layout of the decoded image.
        stream_lengths: byte length of each stage's stream, stage 1 first. Filled in by `unpack`;
            `pack` computes it from the streams (leave it empty or give the real lengths).
        version: format version; `pack` writes only version 1.
    """

    modality: Modality
    model_id: str
    weights_hash: bytes
    width: int
    height: int
    channel_layout: ChannelLayout = ChannelLayout.RGB
    stream_lengths: tuple[int, ...] = ()
    version: int = V1_FORMAT_VERSION

    @property
    def stages(self) -> int:
        """Number of stages (quality layers) stored in the file."""
        return len(self.stream_lengths)

    @property
    def header_bytes(self) -> int:
        """Size in bytes of everything before the first stream."""
        return _FIXED_BYTES + len(self.model_id.encode("ascii")) + 4 * len(self.stream_lengths)

    @property
    def file_bytes(self) -> int:
        """Total size in bytes of the file this header describes (header + streams + CRC)."""
        return self.header_bytes + sum(self.stream_lengths) + _CRC.size


# ---------------------------------------------------------------------------------------------
# Field validation shared by pack (caller errors -> ValueError) and unpack (data -> VQFormatError)
# ---------------------------------------------------------------------------------------------


def _check_header_for_pack(header: VQHeader, streams: Sequence[BytesLike]) -> bytes:
    """Validate `header` and `streams` for writing; returns the model id as ASCII bytes."""
    if not isinstance(header, VQHeader):
        raise TypeError(f"header must be a VQHeader, got {type(header).__name__}")
    if header.version != V1_FORMAT_VERSION:
        raise ValueError(
            f"cannot write format version {header.version} with pack(), which writes only version "
            f"{V1_FORMAT_VERSION} (leave VQHeader.version at its default; write_file() writes "
            f"version {FORMAT_VERSION})"
        )
    if not isinstance(header.modality, Modality):
        try:
            Modality(header.modality)
        except ValueError:
            raise ValueError(f"unknown modality {header.modality!r}; use a Modality member") from None
    if not isinstance(header.channel_layout, ChannelLayout):
        try:
            ChannelLayout(header.channel_layout)
        except ValueError:
            raise ValueError(
                f"unknown channel layout {header.channel_layout!r}; use a ChannelLayout member"
            ) from None
    if header.channel_layout != ChannelLayout.RGB:
        raise ValueError(
            f"version-{V1_FORMAT_VERSION} files hold RGB only, not channel layout {header.channel_layout!r}; "
            f"write_file() writes version {FORMAT_VERSION}, which holds the other layouts"
        )
    if not isinstance(header.model_id, str):
        raise TypeError(f"model_id must be str, got {type(header.model_id).__name__}")
    try:
        model_id = header.model_id.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"model id {header.model_id!r} is not ASCII") from None
    problem = model_id_problem(model_id)
    if problem:
        raise ValueError(problem)
    if not isinstance(header.weights_hash, (bytes, bytearray)) or len(header.weights_hash) != WEIGHTS_HASH_BYTES:
        raise ValueError(
            f"weights_hash must be {WEIGHTS_HASH_BYTES} raw bytes (use hash_weights(weights_file_bytes))"
        )
    for name in ("width", "height"):
        check_int(getattr(header, name), name)
    problem = size_problem(int(header.width), int(header.height))
    if problem:
        raise ValueError(problem)
    if not 1 <= len(streams) <= MAX_STAGES:
        raise ValueError(f"need 1..{MAX_STAGES} stage streams, got {len(streams)}")
    for i, s in enumerate(streams):
        if not isinstance(s, (bytes, bytearray, memoryview)):
            raise TypeError(f"stream {i + 1} must be bytes-like, got {type(s).__name__}")
        if memoryview(s).nbytes > MAX_STREAM_BYTES:
            raise ValueError(f"stream {i + 1} is longer than {MAX_STREAM_BYTES} bytes")
    lengths = tuple(memoryview(s).nbytes for s in streams)
    if header.stream_lengths and tuple(header.stream_lengths) != lengths:
        raise ValueError(
            f"header.stream_lengths {tuple(header.stream_lengths)} disagree with the streams' "
            f"lengths {lengths}; leave stream_lengths empty and pack() fills it in"
        )
    return model_id


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def pack(header: VQHeader, streams: Sequence[BytesLike]) -> bytes:
    """Serialize a header and its stage streams into a complete version-1 .vq file (v1 path).

    Args:
        header: file metadata; `header.stream_lengths` may be empty (it is computed from
            `streams`) and `header.version` must be 1.
        streams: one byte string per stage, stage 1 first; 1..32 of them.
    Returns:
        The file's bytes, ending with the CRC32 of everything before it.
    Raises:
        TypeError / ValueError: if a field is out of range (a bug in the caller, not bad data).
    """
    model_id = _check_header_for_pack(header, streams)
    lengths = [memoryview(s).nbytes for s in streams]
    parts = [
        _PREFIX.pack(MAGIC, V1_FORMAT_VERSION, int(header.modality), len(model_id)),
        model_id,
        _MIDDLE.pack(
            bytes(header.weights_hash),
            int(header.width),
            int(header.height),
            int(header.channel_layout),
            len(streams),
        ),
        struct.pack(f"<{len(lengths)}I", *lengths),
    ]
    parts.extend(bytes(s) for s in streams)
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def unpack(data: BytesLike, *, max_stages: int | None = None) -> tuple[VQHeader, list[bytes]]:
    """Parse and fully validate a version-1 .vq file (v1 path; `read_file` reads both versions).

    Args:
        data: the whole file (bytes, bytearray or memoryview).
        max_stages: if given, reject files with more stages than this (e.g. the number of
            residual VQ stages of the installed model).
    Returns:
        (header, streams): `streams[k]` is stage k+1's byte stream; `header.stream_lengths`
        holds their lengths.
    Raises:
        VQFormatError: for any input that is not a valid version-1 .vq file (a version-2 file
            gets a message pointing to `read_file`).
        TypeError: if `data` is not bytes-like.
    """
    return unpack_v1(as_bytes(data), verify_crc=True, max_stages=max_stages)


def unpack_v1(
    buf: bytes, *, verify_crc: bool, max_stages: int | None = None
) -> tuple[VQHeader, list[bytes]]:
    """`unpack` of bytes, with the CRC comparison optional (the length must still be exact)."""
    header, header_size = _parse_header(buf, whole_file=True, verify_crc=verify_crc, max_stages=max_stages)
    streams = []
    pos = header_size
    for n in header.stream_lengths:
        streams.append(buf[pos : pos + n])
        pos += n
    return header, streams


def read_header(data: BytesLike, *, verify_crc: bool = True) -> VQHeader:
    """Parse and validate only the header of a version-1 file (v1 path; see `read_file`).

    Args:
        data: the whole file; with `verify_crc=False` a prefix holding at least the header is
            enough, and the streams and CRC are not looked at (useful to describe a damaged
            or partly downloaded file).
        verify_crc: check the file length and CRC as `unpack` does.
    Raises:
        VQFormatError: if the header (or, with verify_crc, the file) is invalid.
    """
    buf = as_bytes(data)
    header, _ = _parse_header(buf, whole_file=verify_crc, verify_crc=verify_crc, max_stages=None)
    return header


def truncate_v1(data: BytesLike, stages: int) -> bytes:
    """Keep the first `stages` quality layers of a version-1 .vq file (`container.truncate` calls this).

    The result is a valid .vq file whose header says `stages` stages, holding the first
    `stages` streams unchanged, with a new CRC. Decoding it gives the same indices for those
    stages as decoding the full file, so the image is the lower-quality reconstruction of the
    residual VQ cut after `stages` stages.

    Args:
        data: a valid .vq file.
        stages: 1..(stage count of the file).
    Raises:
        VQFormatError: if `data` is not a valid .vq file.
        ValueError: if `stages` is outside 1..(stage count of the file).
    """
    header, streams = unpack(data)
    stages = check_int(stages, "stages")
    if not 1 <= stages <= header.stages:
        raise ValueError(
            f"cannot keep {stages} stages: the file has {header.stages} "
            f"(choose 1..{header.stages})"
        )
    return pack(dataclasses.replace(header, stream_lengths=()), streams[:stages])


def check_model(header: VQHeader, model_id: str, weights_hash: bytes) -> None:
    """Raise VQFormatError unless the v1 file was made with the given model and weights (v1 path).

    Args:
        header: from `unpack` / `read_header`.
        model_id: id of the installed model, e.g. "image-f8-s8-v1".
        weights_hash: `hash_weights` of the installed weights file (16 bytes).
    """
    if header.model_id == model_id and bytes(header.weights_hash) == bytes(weights_hash):
        return
    if header.model_id == model_id:
        detail = (
            f"this install has a model of that name with different weights (hash "
            f"{bytes(weights_hash).hex()})"
        )
    else:
        detail = f"this install has model {model_id} (weights hash {bytes(weights_hash).hex()})"
    raise VQFormatError(
        f"file was made with model {header.model_id} (weights hash {header.weights_hash.hex()}), "
        f"which this install does not have; {detail}. Decode it with the vqcodec release whose "
        f"weights match (`vqcodec info FILE` shows what the file needs)."
    )


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def _parse_header(
    buf: bytes, *, whole_file: bool, verify_crc: bool, max_stages: int | None
) -> tuple[VQHeader, int]:
    """Validate `buf` and return (header, header size in bytes).

    Order of checks: magic, version (a newer version may have another layout), the length
    fields needed to find the CRC, the total size, the CRC, then the meaning of every field.
    Checking the CRC before field meanings means a flipped bit is reported as corruption.
    """
    n = len(buf)
    version = check_signature(buf, MIN_FILE_BYTES)
    if version != V1_FORMAT_VERSION:
        raise VQFormatError(
            f"this is a format-version-{version} .vq file; unpack() and read_header() read only "
            f"version {V1_FORMAT_VERSION}: use vqcodec.bitstream.read_file"
        )
    if n < _PREFIX.size:
        raise truncated("file", MIN_FILE_BYTES, n, at_least=True)
    _, _, modality_raw, id_len = _PREFIX.unpack_from(buf, 0)
    if not 1 <= id_len <= MAX_MODEL_ID_BYTES:
        raise VQFormatError(
            f"model id length {id_len} is outside 1..{MAX_MODEL_ID_BYTES}: the file is corrupted"
        )
    fixed_end = _FIXED_BYTES + id_len
    if n < fixed_end:
        raise truncated("header", fixed_end, n)
    model_id_bytes = buf[_PREFIX.size : _PREFIX.size + id_len]
    weights_hash, width, height, layout_raw, stages = _MIDDLE.unpack_from(buf, _PREFIX.size + id_len)
    if not 1 <= stages <= MAX_STAGES:
        raise VQFormatError(f"stage count {stages} is outside 1..{MAX_STAGES}: the file is corrupted")
    header_size = fixed_end + 4 * stages
    if n < header_size:
        raise truncated("header", header_size, n)
    lengths = struct.unpack_from(f"<{stages}I", buf, fixed_end)
    stream_total = sum(lengths)  # <= 32 * (2**32 - 1): a Python int, no allocation
    total = header_size + stream_total + _CRC.size

    if whole_file and n != total:
        if n < total:
            raise truncated(
                "stream data and CRC", stream_total + _CRC.size, n - header_size
            )
        if zlib.crc32(buf[: total - _CRC.size]) == _CRC.unpack_from(buf, total - _CRC.size)[0]:
            raise VQFormatError(
                f"{n - total} unexpected bytes after the end of the .vq data (a valid file of "
                f"{total} bytes followed by something else); cut the file to {total} bytes"
            )
        raise VQFormatError(
            f"file is {n} bytes but its header declares {total}: the file is corrupted"
        )
    if verify_crc:
        stored = _CRC.unpack_from(buf, total - _CRC.size)[0]
        actual = zlib.crc32(buf[: total - _CRC.size])
        if stored != actual:
            raise VQFormatError(
                f"CRC mismatch (stored {stored:08x}, computed {actual:08x}): the file is corrupted; "
                f"get an intact copy"
            )

    problem = model_id_problem(model_id_bytes)
    if problem:
        raise VQFormatError(f"{problem}: the file is corrupted or was written by a faulty encoder")
    try:
        modality = Modality(modality_raw)
    except ValueError:
        raise VQFormatError(
            f"unknown modality {modality_raw} (version-{V1_FORMAT_VERSION} files use 0=IMAGE, "
            f"1=AUDIO): the file is corrupted or was written by a faulty encoder"
        ) from None
    try:
        if layout_raw != ChannelLayout.RGB:  # version 1 knows only RGB
            raise ValueError(layout_raw)
        layout = ChannelLayout(layout_raw)
    except ValueError:
        raise VQFormatError(
            f"unknown channel layout {layout_raw} (version-{V1_FORMAT_VERSION} files use 0=RGB): "
            f"the file is corrupted or was written by a faulty encoder"
        ) from None
    problem = size_problem(width, height)
    if problem:
        raise VQFormatError(f"{problem}: the file is corrupted or was written by a faulty encoder")
    if max_stages is not None and stages > max_stages:
        raise VQFormatError(
            f"file has {stages} stages but the installed model has only {max_stages}; "
            f"the file was made with a different model"
        )
    header = VQHeader(
        modality=modality,
        model_id=model_id_bytes.decode("ascii"),
        weights_hash=weights_hash,
        width=width,
        height=height,
        channel_layout=layout,
        stream_lengths=tuple(lengths),
        version=version,
    )
    return header, header_size
