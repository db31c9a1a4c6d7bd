"""Progressive reading: the complete quality layers of a version-2 .vq file that was cut short.

A file's chunks come in non-decreasing layer order (FORMAT.md, "Chunk order"), so a prefix of the bytes
holds every chunk of layers 0..N once a chunk of a later layer has begun. `complete_layers_prefix` walks
the framing as far as the bytes go, keeps the complete chunks of layers <= N and writes them as a valid
file with a new chunk count and CRC: byte for byte `truncate(whole_file, N)` (FORMAT.md, "Partial
decoding", says what this can and cannot check without the whole file's CRC).
"""
from __future__ import annotations

from typing import NamedTuple

from ._common import V1_FORMAT_VERSION, BytesLike, Invalid, VarintTruncated, as_bytes, check_signature, read_uvarint
from .chunks import MAX_CHUNK_PAYLOAD_BYTES
from .container import (
    _CHUNK_PREFIX,
    _CRC,
    _HEADER_PREFIX,
    MAX_CHUNKS,
    MIN_FILE_BYTES,
    _interpret,
    _make_chunk,
    _reader_errors,
    _serialize,
    read_file,
)
from .errors import VQFormatError

__all__ = ["LayersPrefix", "complete_layers_prefix"]

_GET_ALL = "get the complete file (or more of it) to decode it"


class LayersPrefix(NamedTuple):
    """What `complete_layers_prefix` found. data: a valid .vq file of the first `layers` quality layers
    (`truncate(whole_file, layers)`); cut: whether the input was cut short (False: it was a whole, valid
    file, returned unchanged)."""

    data: bytes
    layers: int
    cut: bool


def _varint(buf: bytes, pos: int, what: str) -> tuple[int, int] | None:
    """The minimal varint at `pos` (FORMAT.md, "Varints") -> (value, next position), or None when the bytes
    end inside it. Raises VQFormatError for a non-minimal or over-long one."""
    try:
        return read_uvarint(buf, pos, len(buf))
    except VarintTruncated:
        return None
    except Invalid as exc:  # a broken varint rule
        raise VQFormatError(f"{what}: {exc}: the file is corrupted") from None


def complete_layers_prefix(data: BytesLike) -> LayersPrefix:
    """The complete quality layers of a (possibly cut) .vq file, as a valid file.

    A whole valid file comes back unchanged (`cut` False); a whole file that is damaged raises as
    `read_file` does. A version-2 file cut short gives the file of its first N layers, N = the layers all
    of whose chunks are present (every layer-0 chunk, and every chunk of layers 1..N: the bytes reach past
    them, into a chunk of a later layer or the CRC), identical to `truncate(whole_file, N)`. Each kept chunk
    is checked as `read_file` checks it (framing, flags, layer order, payload layout, layers 1..N); the
    chunks' bytes cannot be checked against the missing CRC.

    Raises:
        VQFormatError: not a .vq file; a damaged whole file; a cut version-1 file (its layers have no
            framing to find them by); a cut file whose layer 1 is not complete; a kept chunk that breaks
            a rule.
        TypeError: `data` is not bytes-like.
    """
    buf = as_bytes(data)
    version = check_signature(buf, MIN_FILE_BYTES)
    n = len(buf)
    if version == V1_FORMAT_VERSION:
        return LayersPrefix(buf, read_file(buf).layers, False)
    if n < _HEADER_PREFIX.size + 1:
        raise _too_short(n, "its header")
    modality_raw = buf[5]
    counted = _varint(buf, _HEADER_PREFIX.size, "the chunk count")
    if counted is None:
        raise _too_short(n, "its header")
    count, pos = counted
    if count > MAX_CHUNKS:
        raise VQFormatError(f"chunk count {count} exceeds {MAX_CHUNKS}: the file is corrupted")
    spans = []  # (type, flags, layer, payload start, payload length) of the complete chunks
    next_layer = None  # layer of the first chunk that is not complete, where its header shows it
    for i in range(count):
        if n < pos + _CHUNK_PREFIX.size:
            break
        chunk_type, flags, layer = _CHUNK_PREFIX.unpack_from(buf, pos)
        sized = _varint(buf, pos + _CHUNK_PREFIX.size, f"the length of chunk {i + 1} of {count}")
        if sized is not None and sized[0] > MAX_CHUNK_PAYLOAD_BYTES:
            raise VQFormatError(f"chunk {i + 1} of {count} declares a {sized[0]}-byte payload, above the format's "
                                f"{MAX_CHUNK_PAYLOAD_BYTES}: the file is corrupted")
        if sized is None or n < sized[1] + sized[0]:
            next_layer = layer
            break
        spans.append((chunk_type, flags, layer, sized[1], sized[0]))
        pos = sized[1] + sized[0]
    if len(spans) == count and n >= pos + _CRC.size:  # nothing is missing: the strict reader decides
        return LayersPrefix(buf, read_file(buf).layers, False)
    if len(spans) == count:  # only the CRC is (partly) missing: every layer is complete
        layers = max((s[2] for s in spans), default=0)
    elif next_layer is not None:
        layers = next_layer - 1
    else:  # cut at a chunk boundary or inside a chunk's first bytes: the last layer seen may go on
        layers = max((s[2] for s in spans), default=0) - 1
    if layers < 1:
        raise VQFormatError(f"file truncated after {n} bytes, before its first quality layer is complete: nothing "
                            f"can be decoded; {_GET_ALL}")
    chunks = [_make_chunk(i, *s, buf) for i, s in enumerate(spans) if s[2] <= layers]
    parsed = _reader_errors(lambda: _interpret(modality_raw, chunks, allow_unknown_required=True))
    return LayersPrefix(_serialize(version, modality_raw, chunks), parsed.layers, True)


def _too_short(n: int, what: str) -> VQFormatError:
    return VQFormatError(f"file truncated after {n} bytes, inside {what}: nothing can be decoded; {_GET_ALL}")
