"""Definitions shared by both .vq format versions: signature, enums, field rules, error helpers.

Private to `vqcodec.bitstream`; the public names are re-exported by `container` and the package.
"""
from __future__ import annotations

import enum
import hashlib
import numbers
from typing import Union

from .errors import VQFormatError

MAGIC = b"\x89VQC"
"""File signature (bytes 0..3 of every version). The high-bit first byte catches 7-bit transfers
and text-mode mangling."""
FORMAT_VERSION = 2
"""The newest format version this code reads; `write_file` writes it."""
V1_FORMAT_VERSION = 1
"""The legacy version: still read (`read_file`, `unpack`); written only by the v1 `pack`."""
WEIGHTS_HASH_BYTES = 16
"""A weights hash is the first 16 bytes of the SHA-256 of a weights file (`hash_weights`); version-1
files store all 16."""
V2_WEIGHTS_HASH_BYTES = 8
"""Version-2 MODEL chunks store the first 8 bytes of the weights hash (a 64-bit prefix of the SHA-256:
enough to tell installed weights files apart; it identifies weights, it does not authenticate them)."""
MAX_VARINT_BYTES = 5
"""A LEB128 varint of the framing (chunk count, chunk length) is 1..5 bytes (values < 2**35; bounded
further by the field)."""
MAX_MODEL_ID_BYTES = 64
MAX_IMAGE_SIDE = 65535

BytesLike = Union[bytes, bytearray, memoryview]


class Modality(enum.IntEnum):
    """What the file encodes (u8 at offset 5 in every version)."""

    IMAGE = 0
    AUDIO = 1


class ChannelLayout(enum.IntEnum):
    """Channel layout of a decoded image (IMAGE_GEOMETRY's last byte). Bit 0: an alpha plane follows in an
    ALPHA_PLANE chunk; bit 1: the image is grayscale (coded as RGB, returned as one channel). Values
    4..255 are reserved. Version-1 files are always RGB."""

    RGB = 0
    RGBA = 1
    GRAY = 2
    GRAY_ALPHA = 3

    @property
    def has_alpha(self) -> bool:
        """Whether the image has an alpha plane (an ALPHA_PLANE chunk)."""
        return bool(self & 1)

    @property
    def is_gray(self) -> bool:
        """Whether the decoded image is grayscale."""
        return bool(self & 2)

    @property
    def pil_mode(self) -> str:
        """The Pillow mode of the decoded image: "RGB", "RGBA", "L" or "LA"."""
        return ("RGB", "RGBA", "L", "LA")[self]


class Invalid(Exception):
    """A rule of the format is broken. Internal: readers turn it into `VQFormatError` (bad data),
    writers into `ValueError` (bad arguments). The message says what is wrong, without advice."""


def hash_weights(blob: BytesLike) -> bytes:
    """The 16-byte weights hash of a weights file: sha256(blob)[:16]. Version-1 files store all 16,
    version-2 MODEL chunks the first 8 (V2_WEIGHTS_HASH_BYTES); `hash_matches` compares them.

    Args:
        blob: the exact bytes of one weights file (e.g. a .safetensors file).
    Returns:
        16 raw bytes.
    """
    return hashlib.sha256(blob).digest()[:WEIGHTS_HASH_BYTES]


def hash_matches(installed: BytesLike, named: BytesLike) -> bool:
    """Whether the weights hash a file names is that of installed weights.

    Args:
        installed: the installed weights file's `hash_weights` (16 bytes).
        named: the hash a .vq file records: 16 bytes (version 1) or their first 8 (version 2).
    Returns:
        True if `named` is 8 or 16 bytes long and `installed` starts with it.
    """
    installed, named = bytes(installed), bytes(named)
    return (
        len(named) in (V2_WEIGHTS_HASH_BYTES, WEIGHTS_HASH_BYTES)
        and len(installed) >= len(named)
        and installed[: len(named)] == named
    )


class VarintTruncated(Invalid):
    """A varint runs past the end of the bytes it must lie in."""


def encode_uvarint(value: int) -> bytes:
    """`value` (>= 0) as an unsigned LEB128 varint, minimal: 7 bits per byte, least significant
    group first, bit 7 set on every byte but the last (0 -> 00, 127 -> 7f, 128 -> 80 01)."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_uvarint(buf: bytes, pos: int, end: int, max_bytes: int = MAX_VARINT_BYTES) -> tuple[int, int]:
    """Read the minimal unsigned LEB128 varint at `buf[pos:end]`; return (value, position after it).

    Reads at most `max_bytes` bytes and never past `end`. The caller checks the value's bound.
    Raises:
        VarintTruncated: the varint reaches `end` before its last byte.
        Invalid: it is longer than `max_bytes` bytes, or not minimal (a last byte 0x00 after a
            continuation byte: one value has exactly one encoding).
    """
    if pos < end and buf[pos] < 0x80:  # the common case: one byte
        return buf[pos], pos + 1
    value = 0
    for i in range(max_bytes):
        if pos + i >= end:
            raise VarintTruncated(f"varint runs past the end ({end - pos} bytes left)")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0:
                raise Invalid(f"varint of {i + 1} bytes is not minimal (a trailing 0x00 byte)")
            return value, pos + i + 1
    raise Invalid(f"varint is longer than {max_bytes} bytes")


def as_bytes(data: BytesLike) -> bytes:
    """`data` as bytes (the raw bytes of any memoryview, whatever its format or shape)."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected bytes, bytearray or memoryview, got {type(data).__name__}")


def truncated(what: str, expected: int, found: int, *, at_least: bool = False) -> VQFormatError:
    """The error for input that ends too early (`expected`/`found` in bytes)."""
    return VQFormatError(
        f"file truncated: expected {'at least ' if at_least else ''}{expected} bytes of {what}, "
        f"found {found} "
        f"(the file is incomplete or its header is corrupted; get a complete copy)"
    )


def check_signature(buf: bytes, min_file_bytes: int) -> int:
    """Check the magic and version byte (bytes 0..4, the same in every version); return the version.

    Args:
        buf: the input.
        min_file_bytes: the size to name in the "truncated" message when `buf` ends before byte 5.
    Raises:
        VQFormatError: not a .vq file, truncated before byte 5, version 0, or a version newer
            than `FORMAT_VERSION`.
    """
    n = len(buf)
    if n == 0:
        raise VQFormatError("not a .vq file (empty input)")
    if buf[: len(MAGIC)] != MAGIC[: min(n, len(MAGIC))]:
        raise VQFormatError(
            f"not a .vq file (bad magic {buf[:4]!r}, expected {MAGIC!r}); "
            f"check that you passed the right file"
        )
    if n < len(MAGIC) + 1:
        raise truncated("file", min_file_bytes, n, at_least=True)
    version = buf[4]
    if version == 0:
        raise VQFormatError("format version 0 is invalid: the file is corrupted")
    if version > FORMAT_VERSION:
        raise VQFormatError(
            f"format version {version} is newer than this vqcodec supports ({FORMAT_VERSION}); "
            f"upgrade vqcodec"
        )
    return version


def name_problem(raw: bytes, what: str, max_bytes: int, *, lowest: int = 0x21) -> str | None:
    """Why `raw` is not a valid ASCII name of 1..max_bytes bytes in lowest..0x7E, or None.

    `lowest` is 0x21 (visible ASCII, no space) for ids and keys, 0x20 for free text.
    """
    if not 1 <= len(raw) <= max_bytes:
        return f"{what} length {len(raw)} is outside 1..{max_bytes}"
    if any(not lowest <= b <= 0x7E for b in raw):
        kind = "visible ASCII (0x21..0x7E)" if lowest == 0x21 else "printable ASCII (0x20..0x7E)"
        return f"{what} {raw!r} contains bytes other than {kind}"
    return None


def model_id_problem(model_id_bytes: bytes) -> str | None:
    """Why `model_id_bytes` is not a valid model id (1..64 visible ASCII bytes), or None."""
    return name_problem(model_id_bytes, "model id", MAX_MODEL_ID_BYTES)


def size_problem(width: int, height: int) -> str | None:
    """Why width x height is not a valid image size (1..65535 per side), or None."""
    if not (1 <= width <= MAX_IMAGE_SIDE and 1 <= height <= MAX_IMAGE_SIDE):
        return f"image size {width}x{height} is outside 1..{MAX_IMAGE_SIDE} per side"
    return None


def check_int(value: object, name: str) -> int:
    """`value` as int; TypeError unless it is an integer (bool is not)."""
    if type(value) is int:  # the common case, without the slower ABC check
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    return int(value)
