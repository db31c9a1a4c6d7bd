"""The .vq container, format version 2 (chunks) and version 1 (legacy, still read). Spec: FORMAT.md.

Version 2 layout (fixed-width integers little-endian, unsigned; "varint" = unsigned LEB128 in its
minimal encoding, 1..5 bytes):

    offset  size  type   field
    0       4     bytes  magic b"\\x89VQC"
    4       1     u8     format version (2)
    5       1     u8     modality (0 = IMAGE, 1 = AUDIO)
    6       1..4  varint chunk count C (0..2**24)
    7..10   ...          C chunks, each:  type u16 | flags u8 | layer u8 | length varint | payload
    end-4   4     u32    zlib.crc32 of every byte before it

Chunks appear in non-decreasing layer order: layer 0 (models, geometry, metadata) first, then the
chunks of quality layer 1, 2, ... Cutting a file to its first N quality layers is therefore
generic: keep the chunks with layer <= N, rewrite C and the CRC (`truncate`).

This module owns the framing and the whole-file rules (which chunks must be present, layer order);
payload layouts are in `chunks.py`; what is inside a stream is `entropy.py` and the codecs'. It
does not check that the models a file names are installed (the model registry does).

Every length is bounded and checked against the real size of the input before it is used, so no
input makes a reader allocate more than a copy of the input or loop more than O(len(data)) times.
Bad data raises `VQFormatError` only; bad arguments raise `TypeError` or `ValueError`.
"""
from __future__ import annotations

import struct
import types
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from ._common import (
    FORMAT_VERSION,
    MAGIC,
    MAX_IMAGE_SIDE,
    MAX_MODEL_ID_BYTES,
    MAX_VARINT_BYTES,
    V1_FORMAT_VERSION,
    V2_WEIGHTS_HASH_BYTES,
    WEIGHTS_HASH_BYTES,
    BytesLike,
    ChannelLayout,
    Invalid,
    Modality,
    VarintTruncated,
    as_bytes,
    check_int,
    check_signature,
    encode_uvarint,
    hash_matches,
    hash_weights,
    read_uvarint,
    truncated,
)
from .chunks import (
    FIRST_FUTURE_TYPE,
    FIRST_PRIVATE_TYPE,
    MAX_CHUNK_PAYLOAD_BYTES,
    MAX_LAYER,
    AudioGeometry,
    Chunk,
    ChunkType,
    Geometry,
    ImageGeometry,
    ModelComponent,
    StageSyntax,
    AlphaCoding,
    alpha_plane_chunk,
    decode_alpha_plane,
    decode_audio_geometry,
    decode_encoder,
    decode_image_geometry,
    decode_metadata,
    decode_model,
    decode_segment_table,
    decode_stage_syntax,
    decode_refinement_base,
    refinement_chunk,
    encode_audio_geometry,
    encode_image_geometry,
    encode_model,
    encoder_chunk,
    metadata_chunk,
    rule_problem,
    segment_table_chunk,
    stage_syntax_chunk,
    type_name,
)
from .errors import VQFormatError
from .v1 import MAX_STAGES, MAX_STREAM_BYTES, MIN_FILE_BYTES, truncate_v1, unpack_v1

__all__ = [
    # version 2 (and version-1 reading through read_file)
    "VQFile",
    "Chunk",
    "ChunkType",
    "ModelComponent",
    "ImageGeometry",
    "AudioGeometry",
    "Geometry",
    "read_file",
    "inspect",
    "write_file",
    "truncate",
    "metadata_chunk",
    "segment_table_chunk",
    "alpha_plane_chunk",
    "AlphaCoding",
    "stage_syntax_chunk",
    "refinement_chunk",
    "StageSyntax",
    "hash_weights",
    "hash_matches",
    "MAGIC",
    "FORMAT_VERSION",
    "V1_FORMAT_VERSION",
    "MAX_CHUNKS",
    "MAX_LAYER",
    "MIN_HEADER_BYTES",
    "MIN_CHUNK_HEADER_BYTES",
    "MAX_VARINT_BYTES",
    "MIN_V2_FILE_BYTES",
    "V2_WEIGHTS_HASH_BYTES",
    "FIRST_FUTURE_TYPE",
    "FIRST_PRIVATE_TYPE",
    "Modality",
    "ChannelLayout",
    "BytesLike",
    # limits of version 1 (read through read_file and truncate; nothing writes it)
    "MAX_MODEL_ID_BYTES",
    "WEIGHTS_HASH_BYTES",
    "MAX_STAGES",
    "MAX_IMAGE_SIDE",
    "MAX_STREAM_BYTES",
    "MIN_FILE_BYTES",
]

_HEADER_PREFIX = struct.Struct("<4sBB")  # magic, version, modality; then the chunk count varint
_CHUNK_PREFIX = struct.Struct("<HBB")  # type, flags, layer; then the payload length varint
_CRC = struct.Struct("<I")
MIN_HEADER_BYTES = _HEADER_PREFIX.size + 1
"""7: magic, version, modality, chunk count (a varint: 1 byte for up to 127 chunks, at most 4)."""
MIN_CHUNK_HEADER_BYTES = _CHUNK_PREFIX.size + 1
"""5: type, flags, layer, payload length (a varint: 1 byte below 128, 2 below 16384, at most 5)."""
MAX_CHUNKS = 1 << 24
"""Chunk count bound (16,777,216). Also every chunk takes >= 5 bytes, so C <= (file size - 11) / 5."""
MUST_UNDERSTAND = 0x01
"""Flag bit 0; bits 1..7 are reserved and must be 0."""
MIN_V2_FILE_BYTES = (
    MIN_HEADER_BYTES
    + (MIN_CHUNK_HEADER_BYTES + 1 + 1 + 1 + V2_WEIGHTS_HASH_BYTES)  # MODEL: 1-byte role and model id
    + (MIN_CHUNK_HEADER_BYTES + 5)  # IMAGE_GEOMETRY
    + MIN_CHUNK_HEADER_BYTES  # an empty STAGE_STREAM
    + _CRC.size
)
"""42: one MODEL chunk (1-byte role and id), IMAGE_GEOMETRY, one empty STAGE_STREAM, CRC."""

_FAULTY = "the file is corrupted or was written by a faulty encoder"


# ------------------------------------------------------------------------------------------- VQFile


@dataclass(frozen=True)
class VQFile:
    """A parsed .vq file (either version).

    Attributes:
        version: 1 or 2.
        modality: IMAGE or AUDIO.
        components: the model components that made the file, in file order (version 2: each
            with the 8-byte weights hash the file stores; version 1: one, role "model", whose
            16-byte hash covers the vqvae and prior files together).
        geometry: ImageGeometry or AudioGeometry.
        layers: quality layers in the file (1..255; version 1: its stage count).
        chunks: every chunk in file order, unknown optional ones included (version 1: the chunks
            a version-2 file of the same content holds: MODEL, whose payload has the hash's first 8
            bytes, IMAGE_GEOMETRY, one STAGE_STREAM per stage).
        metadata: METADATA chunks, key -> value, in file order.
        segment_frames: the SEGMENT_TABLE (audio segment lengths in model frames); () if absent.
        encoder_name: the ENCODER chunk, e.g. "vqcodec 0.2.0"; "" if absent.
        stage_syntax: how the stage streams are coded (the STAGE_SYNTAX chunk; PLAIN if absent).
        refinement_base: the REFINEMENT chunk's B (layers B+1.. are scalar refinement layers over the
            reconstruction of layers 1..B; image files only), or None without one.
    """

    version: int
    modality: Modality
    components: tuple[ModelComponent, ...]
    geometry: Geometry
    layers: int
    chunks: tuple[Chunk, ...]
    metadata: Mapping[str, bytes] = field(default_factory=lambda: types.MappingProxyType({}), hash=False)
    segment_frames: tuple[int, ...] = ()
    encoder_name: str = ""
    stage_syntax: StageSyntax = StageSyntax.PLAIN
    refinement_base: int | None = None
    _by_layer: tuple[tuple[bytes, ...], ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_layer: list[list[bytes]] = [[] for _ in range(self.layers)]
        for c in self.chunks:
            if c.type == ChunkType.STAGE_STREAM and 1 <= c.layer <= self.layers:
                by_layer[c.layer - 1].append(c.payload)
        object.__setattr__(self, "_by_layer", tuple(tuple(s) for s in by_layer))

    def streams(self, layer: int) -> list[bytes]:
        """The STAGE_STREAM payloads of quality layer `layer` (1..layers), in file order."""
        layer = check_int(layer, "layer")
        if not 1 <= layer <= self.layers:
            raise ValueError(f"layer {layer} is outside 1..{self.layers} (the file's quality layers)")
        return list(self._by_layer[layer - 1])

    @property
    def modality_name(self) -> str:
        """"image" or "audio"."""
        return self.modality.name.lower()


# ------------------------------------------------------------------------------------- public API


def read_file(data: BytesLike, *, verify_crc: bool = True) -> VQFile:
    """Parse and fully validate a .vq file of version 1 or 2.

    Args:
        data: the whole file (bytes, bytearray or memoryview).
        verify_crc: compare the stored CRC (False: describe a damaged file; its size and every
            field are still checked).
    Returns:
        The parsed file. Payload bytes are copies of the input (O(len(data)) memory).
    Raises:
        VQFormatError: the input is not a valid .vq file, or holds a chunk that must be
            understood but that this vqcodec does not know ("upgrade vqcodec").
        TypeError: `data` is not bytes-like.
    """
    buf = as_bytes(data)
    version = check_signature(buf, MIN_FILE_BYTES)
    if version == V1_FORMAT_VERSION:
        return _read_v1(buf, verify_crc)
    modality_raw, chunks = _read_chunks(buf, verify_crc)
    return _reader_errors(lambda: _interpret(modality_raw, chunks, allow_unknown_required=False))


def inspect(data: BytesLike, *, verify_crc: bool = True) -> VQFile:
    """Describe a .vq file without decoding its streams: `read_file` (linear in len(data))."""
    return read_file(data, verify_crc=verify_crc)


def write_file(
    modality: Modality | int,
    components: Sequence[ModelComponent],
    geometry: Geometry,
    layer_streams: Sequence[Sequence[BytesLike]],
    extra_chunks: Iterable[Chunk] = (),
    *,
    encoder: str = "",
) -> bytes:
    """Serialize a version-2 .vq file.

    Chunk order written: MODEL chunks (in `components` order), the geometry, ENCODER (if given),
    the layer-0 `extra_chunks`; then for each layer k = 1, 2, ...: its STAGE_STREAM chunks
    (`layer_streams[k-1]` in order), then the layer-k `extra_chunks` (order kept within a layer).

    Args:
        modality: IMAGE or AUDIO.
        components: 1 or more model components with distinct roles. A component's weights_hash
            may be the 16-byte `hash_weights` of its file (what callers compute) or its first 8
            bytes: the file stores the first 8 (V2_WEIGHTS_HASH_BYTES), so `read_file` gives back
            8-byte hashes; compare them with installed hashes through `hash_matches`.
        geometry: ImageGeometry for IMAGE, AudioGeometry for AUDIO.
        layer_streams: layer_streams[k-1] = the range-coded streams of quality layer k; 1..255
            layers, each with >= 1 stream (images: exactly 1) whose length is a multiple of 4.
        extra_chunks: further chunks (METADATA, SEGMENT_TABLE, or types unknown to this version);
            not MODEL, geometry, STAGE_STREAM or ENCODER chunks (those come from the arguments).
        encoder: "vqcodec <version>" for an ENCODER chunk, e.g. "vqcodec 0.2.0" (the version 1..64
            visible ASCII bytes; the chunk stores only the version); "" writes none.
    Returns:
        The file's bytes; `read_file` gives back the same content.
    Raises:
        TypeError / ValueError: an argument breaks a rule of the format (a caller bug, not bad data).
    """
    modality_raw = check_int(modality, "modality")
    if modality_raw not in Modality._value2member_map_:
        raise ValueError(f"unknown modality {modality_raw!r}; use a Modality member")
    chunks = _chunks_for(Modality(modality_raw), components, geometry, layer_streams, list(extra_chunks), encoder)
    try:
        _interpret(modality_raw, chunks, allow_unknown_required=True)
    except Invalid as exc:
        raise ValueError(f"cannot write this file: {exc}") from None
    return _serialize(FORMAT_VERSION, modality_raw, chunks)


def truncate(data: BytesLike, layers: int) -> bytes:
    """Keep the first `layers` quality layers of a .vq file (no re-encoding).

    Version 2: keeps the chunks with layer <= `layers` (layer-0 chunks and unknown chunks
    included, order unchanged), rewrites the chunk count and the CRC. Version 1: the result stays
    version 1 (header rewritten with the first `layers` stages). Truncating to every layer gives
    the input back; truncations compose. A file holding must-understand chunks that this vqcodec
    does not know can still be truncated (truncation is defined by the framing alone).

    Args:
        data: a valid .vq file.
        layers: 1..(layers in the file).
    Raises:
        VQFormatError: `data` is not a valid .vq file.
        ValueError: `layers` is outside 1..(layers in the file).
        TypeError: `layers` is not an integer or `data` not bytes-like.
    """
    buf = as_bytes(data)
    version = check_signature(buf, MIN_FILE_BYTES)
    if version == V1_FORMAT_VERSION:
        return truncate_v1(buf, layers)
    modality_raw, chunks = _read_chunks(buf, verify_crc=True)
    parsed = _reader_errors(lambda: _interpret(modality_raw, chunks, allow_unknown_required=True))
    layers = check_int(layers, "layers")
    if not 1 <= layers <= parsed.layers:
        raise ValueError(
            f"cannot keep {layers} layers: the file has {parsed.layers} (choose 1..{parsed.layers})"
        )
    return _serialize(version, modality_raw, [c for c in chunks if c.layer <= layers])


# ------------------------------------------------------------------------------------------ writing


def _chunks_for(
    modality: Modality,
    components: Sequence[ModelComponent],
    geometry: Geometry,
    layer_streams: Sequence[Sequence[BytesLike]],
    extras: list[Chunk],
    encoder: str,
) -> list[Chunk]:
    """The chunks `write_file` writes, in file order (argument types checked here, rules later)."""
    for c in components:
        if not isinstance(c, ModelComponent):
            raise TypeError(f"components must be ModelComponent, got {type(c).__name__}")
    if not isinstance(geometry, (ImageGeometry, AudioGeometry)):
        raise TypeError(f"geometry must be ImageGeometry or AudioGeometry, got {type(geometry).__name__}")
    if not 1 <= len(layer_streams) <= MAX_LAYER:
        raise ValueError(f"need 1..{MAX_LAYER} quality layers of streams, got {len(layer_streams)}")
    for c in extras:
        if not isinstance(c, Chunk):
            raise TypeError(f"extra_chunks must be Chunk, got {type(c).__name__}")
        if c.type in _FROM_ARGUMENTS:
            raise ValueError(f"{type_name(c.type)} chunks come from write_file's arguments, not extra_chunks")
    if isinstance(geometry, ImageGeometry):
        geometry_chunk = Chunk(ChunkType.IMAGE_GEOMETRY, 0, True, encode_image_geometry(geometry))
    else:
        geometry_chunk = Chunk(ChunkType.AUDIO_GEOMETRY, 0, True, encode_audio_geometry(geometry))
    out = [Chunk(ChunkType.MODEL, 0, True, encode_model(c)) for c in components]
    out.append(geometry_chunk)
    if encoder:
        out.append(encoder_chunk(encoder))
    out.extend(c for c in extras if c.layer == 0)
    for k, streams in enumerate(layer_streams, 1):
        if isinstance(streams, (bytes, bytearray, memoryview, str)):
            raise TypeError(f"layer_streams[{k - 1}] must be a sequence of streams, not one stream")
        if len(streams) == 0:
            raise ValueError(f"quality layer {k} has no streams; every layer needs at least one")
        for i, s in enumerate(streams):
            if not isinstance(s, (bytes, bytearray, memoryview)):
                raise TypeError(f"stream {i + 1} of layer {k} must be bytes-like, got {type(s).__name__}")
            out.append(Chunk(ChunkType.STAGE_STREAM, k, True, s))
        out.extend(c for c in extras if c.layer == k)
    out.extend(c for c in extras if c.layer > len(layer_streams))  # rejected by _interpret
    return out


_FROM_ARGUMENTS = frozenset(
    {ChunkType.MODEL, ChunkType.IMAGE_GEOMETRY, ChunkType.AUDIO_GEOMETRY, ChunkType.STAGE_STREAM, ChunkType.ENCODER}
)


def _serialize(version: int, modality_raw: int, chunks: Sequence[Chunk]) -> bytes:
    """Header, chunks, CRC. The inverse of `_read_chunks` for valid input (varints minimal)."""
    if len(chunks) > MAX_CHUNKS:
        raise ValueError(f"{len(chunks)} chunks exceed the format's {MAX_CHUNKS}")
    parts = [_HEADER_PREFIX.pack(MAGIC, version, modality_raw), encode_uvarint(len(chunks))]
    for c in chunks:
        flags = MUST_UNDERSTAND if c.must_understand else 0
        parts.append(_CHUNK_PREFIX.pack(int(c.type), flags, c.layer))
        parts.append(encode_uvarint(len(c.payload)))
        parts.append(c.payload)
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


# ------------------------------------------------------------------------------------------ reading


def _read_v1(buf: bytes, verify_crc: bool) -> VQFile:
    """A version-1 file as a VQFile (role "model", ImageGeometry, one stream per stage)."""
    header, streams = unpack_v1(buf, verify_crc=verify_crc)
    if header.modality != Modality.IMAGE:
        raise VQFormatError(
            "version-1 file says it holds audio, which version 1 only reserved (no encoder wrote "
            f"it): {_FAULTY}"
        )
    component = ModelComponent("model", header.model_id, header.weights_hash)
    geometry = ImageGeometry(header.width, header.height, header.channel_layout)
    chunks = [
        Chunk(ChunkType.MODEL, 0, True, encode_model(component)),
        Chunk(ChunkType.IMAGE_GEOMETRY, 0, True, encode_image_geometry(geometry)),
    ]
    chunks += [Chunk(ChunkType.STAGE_STREAM, k, True, s) for k, s in enumerate(streams, 1)]
    return VQFile(V1_FORMAT_VERSION, Modality.IMAGE, (component,), geometry, header.stages, tuple(chunks))


def _read_chunks(buf: bytes, verify_crc: bool) -> tuple[int, list[Chunk]]:
    """Framing of a version-2 file: (modality byte, chunks). Checks, in order: header size, chunk
    count (minimal varint, bound), each chunk header (its length a minimal varint of at most 5 bytes,
    <= 2**32-1) and length against the bytes present, exact total size, CRC, then flags and type
    numbers. Field meanings are left to `_interpret`. Nothing is allocated before every length has
    been checked against len(buf)."""
    n = len(buf)
    end = n - _CRC.size  # every header and payload must end by here
    if n < MIN_HEADER_BYTES + _CRC.size:
        raise truncated("file", MIN_V2_FILE_BYTES, n, at_least=True)
    modality_raw = buf[5]
    count, pos = _framing_varint(buf, _HEADER_PREFIX.size, end, "the chunk count")
    if count > MAX_CHUNKS:
        raise VQFormatError(f"chunk count {count} exceeds {MAX_CHUNKS}: {_FAULTY}")
    least = pos + MIN_CHUNK_HEADER_BYTES * count + _CRC.size
    if n < least:
        raise truncated(f"{count} chunk headers and the CRC", least, n, at_least=True)
    spans = []
    for i in range(count):
        if end < pos + MIN_CHUNK_HEADER_BYTES:
            raise truncated(f"chunk {i + 1} of {count}", pos + MIN_CHUNK_HEADER_BYTES + _CRC.size, n, at_least=True)
        chunk_type, flags, layer = _CHUNK_PREFIX.unpack_from(buf, pos)
        pos += _CHUNK_PREFIX.size
        length = buf[pos]  # present: the check above
        if length < 0x80:  # the common cases (payloads below 128 and 16384 bytes), inlined
            pos += 1
        elif pos + 1 < end and 0 < buf[pos + 1] < 0x80:
            length = (length & 0x7F) | (buf[pos + 1] << 7)
            pos += 2
        else:
            length, pos = _framing_varint(buf, pos, end, "the length of chunk {} of {}", i + 1, count)
            if length > MAX_CHUNK_PAYLOAD_BYTES:
                raise VQFormatError(
                    f"chunk {i + 1} of {count} declares a {length}-byte payload, above the format's "
                    f"{MAX_CHUNK_PAYLOAD_BYTES}: {_FAULTY}"
                )
        if n < pos + length + _CRC.size:
            raise truncated(
                f"file (chunk {i + 1} of {count} declares a {length}-byte payload)",
                pos + length + _CRC.size, n, at_least=True,
            )
        spans.append((chunk_type, flags, layer, pos, length))
        pos += length
    _check_end_and_crc(buf, pos + _CRC.size, verify_crc)
    return modality_raw, [_make_chunk(i, *span, buf) for i, span in enumerate(spans)]


def _framing_varint(buf: bytes, pos: int, end: int, what: str, *what_args: int) -> tuple[int, int]:
    """The varint of the framing (chunk count, chunk length) at `pos`, ending by `end`; `what`
    (formatted with `what_args` only on error) names it in messages."""
    try:
        return read_uvarint(buf, pos, end)
    except VarintTruncated:  # it reached `end`: at least one more byte is needed
        what = what.format(*what_args)
        raise truncated(f"file ({what} runs into the CRC)", len(buf) + 1, len(buf), at_least=True) from None
    except Invalid as exc:
        raise VQFormatError(f"{what.format(*what_args)}: {exc}: {_FAULTY}") from None


def _check_end_and_crc(buf: bytes, total: int, verify_crc: bool) -> None:
    """The file must end right after the CRC at `total - 4`, and the CRC must match."""
    n = len(buf)
    stored = _CRC.unpack_from(buf, total - _CRC.size)[0]
    actual = zlib.crc32(buf[: total - _CRC.size]) if verify_crc or n != total else stored
    if n != total:  # n > total: the walk checked that the chunks and the CRC fit
        if stored == actual:
            raise VQFormatError(
                f"{n - total} unexpected bytes after the end of the .vq data (a valid file of "
                f"{total} bytes followed by something else); cut the file to {total} bytes"
            )
        raise VQFormatError(f"file is {n} bytes but its chunks declare {total}: the file is corrupted")
    if stored != actual:
        raise VQFormatError(
            f"CRC mismatch (stored {stored:08x}, computed {actual:08x}): the file is corrupted; "
            f"get an intact copy"
        )


def _make_chunk(index: int, chunk_type: int, flags: int, layer: int, start: int, length: int, buf: bytes) -> Chunk:
    """The chunk whose header was read at chunk position `index` (type and flags checked here)."""
    if chunk_type == 0:
        raise VQFormatError(f"chunk {index + 1} has type 0, which is invalid: {_FAULTY}")
    if flags & ~MUST_UNDERSTAND:
        raise VQFormatError(
            f"chunk {index + 1} ({type_name(chunk_type)}) has reserved flag bits set (flags "
            f"0x{flags:02x}; only bit 0 is defined): {_FAULTY}"
        )
    return Chunk.from_fields(chunk_type, layer, bool(flags & MUST_UNDERSTAND), buf[start : start + length])


def _reader_errors(parse: Callable[[], VQFile]) -> VQFile:
    """Run `parse()`, turning a broken rule (`Invalid`) into VQFormatError."""
    try:
        return parse()
    except Invalid as exc:
        raise VQFormatError(f"{exc}: {_FAULTY}") from None


# ------------------------------------------------------------------------------ whole-file rules


def _interpret(modality_raw: int, chunks: Sequence[Chunk], *, allow_unknown_required: bool) -> VQFile:
    """Check the whole-file rules of version 2 and build the VQFile.

    Order: modality; layer order (a framing rule, for every chunk); unknown must-understand
    chunks (refused with "upgrade vqcodec" unless allowed); each known chunk's flag, layer and
    payload; required and repeated chunks; quality layers contiguous from 1.

    Raises:
        Invalid: a rule is broken.
        VQFormatError: a must-understand chunk of unknown type, or an unknown modality (newer file).
    """
    if modality_raw not in Modality._value2member_map_:
        raise VQFormatError(
            f"unknown modality {modality_raw} (this vqcodec knows 0=image, 1=audio): the file was made "
            f"by a newer vqcodec or is corrupted; upgrade vqcodec"
        )
    modality = Modality(modality_raw)
    _check_layer_order(chunks)
    if not allow_unknown_required:
        _refuse_unknown_required(chunks)
    seen = _Seen()
    for i, c in enumerate(chunks):
        problem = rule_problem(c.type, c.layer, c.must_understand)
        if problem:
            raise Invalid(f"chunk {i + 1}: {problem}")
        try:
            seen.add(c)
        except Invalid as exc:
            raise Invalid(f"chunk {i + 1} ({type_name(c.type)}): {exc}") from None
    return seen.finish(modality, tuple(chunks))


def _check_layer_order(chunks: Sequence[Chunk]) -> None:
    previous = 0
    for i, c in enumerate(chunks):
        if c.layer < previous:
            raise Invalid(
                f"chunk {i + 1} ({type_name(c.type)}) has layer {c.layer} after a chunk of layer "
                f"{previous}; chunks must be in non-decreasing layer order"
            )
        previous = c.layer


def _refuse_unknown_required(chunks: Sequence[Chunk]) -> None:
    for i, c in enumerate(chunks):
        if c.must_understand and not c.known:
            raise VQFormatError(
                f"chunk {i + 1} has chunk type {c.type} (0x{c.type:04x}), which must be understood "
                f"but this vqcodec does not know: the file was made by a newer vqcodec; upgrade vqcodec"
            )


class _Seen:
    """What the known chunks of a file say, collected in one pass (`add`) and checked (`finish`)."""

    def __init__(self) -> None:
        self.components: list[ModelComponent] = []
        self.roles: set[str] = set()
        self.geometries: list[tuple[ChunkType, Geometry]] = []
        self.streams_per_layer: dict[int, int] = {}
        self.metadata: dict[str, bytes] = {}
        self.segment_frames: tuple[int, ...] | None = None
        self.encoder_name: str | None = None
        self.stage_syntax: StageSyntax | None = None
        self.refinement_base: int | None = None
        self.alpha_planes = 0
        self.max_layer = 0

    def add(self, c: Chunk) -> None:
        if c.layer > self.max_layer:
            self.max_layer = c.layer
        if c.type is ChunkType.STAGE_STREAM:  # the common case first (audio files have many)
            if len(c.payload) % 4:
                raise Invalid(f"stream of {len(c.payload)} bytes is not a whole number of 32-bit words")
            self.streams_per_layer[c.layer] = self.streams_per_layer.get(c.layer, 0) + 1
        elif c.type == ChunkType.MODEL:
            component = decode_model(c.payload)
            if component.role in self.roles:
                raise Invalid(f"a second MODEL chunk for role {component.role!r}; roles must be distinct")
            self.roles.add(component.role)
            self.components.append(component)
        elif c.type == ChunkType.IMAGE_GEOMETRY:
            self.geometries.append((ChunkType.IMAGE_GEOMETRY, decode_image_geometry(c.payload)))
        elif c.type == ChunkType.AUDIO_GEOMETRY:
            self.geometries.append((ChunkType.AUDIO_GEOMETRY, decode_audio_geometry(c.payload)))
        elif c.type == ChunkType.SEGMENT_TABLE:
            if self.segment_frames is not None:
                raise Invalid("a second SEGMENT_TABLE chunk")
            self.segment_frames = decode_segment_table(c.payload)
        elif c.type == ChunkType.METADATA:
            key, value = decode_metadata(c.payload)
            if key in self.metadata:
                raise Invalid(f"a second METADATA chunk with key {key!r}")
            self.metadata[key] = value
        elif c.type == ChunkType.ENCODER:
            if self.encoder_name is not None:
                raise Invalid("a second ENCODER chunk")
            self.encoder_name = decode_encoder(c.payload)
        elif c.type == ChunkType.ALPHA_PLANE:
            if self.alpha_planes:
                raise Invalid("a second ALPHA_PLANE chunk")
            decode_alpha_plane(c.payload)
            self.alpha_planes += 1
        elif c.type == ChunkType.STAGE_SYNTAX:
            if self.stage_syntax is not None:
                raise Invalid("a second STAGE_SYNTAX chunk")
            self.stage_syntax = decode_stage_syntax(c.payload)
        elif c.type == ChunkType.REFINEMENT:
            if self.refinement_base is not None:
                raise Invalid("a second REFINEMENT chunk")
            self.refinement_base = decode_refinement_base(c.payload)

    def finish(self, modality: Modality, chunks: tuple[Chunk, ...]) -> VQFile:
        if not self.components:
            raise Invalid("no MODEL chunk (a file names at least one model component)")
        want = ChunkType.IMAGE_GEOMETRY if modality == Modality.IMAGE else ChunkType.AUDIO_GEOMETRY
        kinds = [kind for kind, _ in self.geometries]
        if kinds != [want]:
            raise Invalid(
                f"a {modality.name.lower()} file needs exactly one geometry chunk, {want.name}; "
                f"it has {', '.join(k.name for k in kinds) or 'none'}"
            )
        if self.segment_frames is not None and modality != Modality.AUDIO:
            raise Invalid("SEGMENT_TABLE chunk in an image file (it is for audio only)")
        if self.refinement_base is not None and modality != Modality.IMAGE:
            raise Invalid("REFINEMENT chunk in an audio file (it is for images only)")
        if self.refinement_base is not None and self.stage_syntax != StageSyntax.DEPTH:
            raise Invalid("REFINEMENT chunk in a file without the depth stage syntax (refinement layers follow "
                          "depth-coded stages)")
        self._check_alpha(modality)
        layers = self._check_layers(modality)
        return VQFile(
            version=FORMAT_VERSION,
            modality=modality,
            components=tuple(self.components),
            geometry=self.geometries[0][1],
            layers=layers,
            chunks=chunks,
            metadata=types.MappingProxyType(self.metadata),
            segment_frames=self.segment_frames or (),
            encoder_name=self.encoder_name or "",
            stage_syntax=self.stage_syntax or StageSyntax.PLAIN,
            refinement_base=self.refinement_base,
        )

    def _check_alpha(self, modality: Modality) -> None:
        """An image has one ALPHA_PLANE chunk if its channel layout has alpha, else none; audio none."""
        if modality != Modality.IMAGE:
            if self.alpha_planes:
                raise Invalid("ALPHA_PLANE chunk in an audio file (it is for images only)")
            return
        layout = self.geometries[0][1].channel_layout
        if self.alpha_planes != layout.has_alpha:
            raise Invalid(f"channel layout {int(layout)} ({layout.name}) with {self.alpha_planes} ALPHA_PLANE "
                          f"chunks; it needs {int(layout.has_alpha)}")

    def _check_layers(self, modality: Modality) -> int:
        """Stream layers must be 1..N (N >= 1), no chunk above N; images: one stream per layer."""
        layers = len(self.streams_per_layer)
        if layers == 0:
            raise Invalid("no STAGE_STREAM chunk (a file holds at least one quality layer)")
        for k in range(1, layers + 1):
            if k not in self.streams_per_layer:
                raise Invalid(f"quality layer {k} has no STAGE_STREAM chunk; layers must be 1, 2, ... without gaps")
        if self.max_layer > layers:
            raise Invalid(f"a chunk has layer {self.max_layer}, but the file's streams stop at layer {layers}")
        if modality == Modality.IMAGE:
            for k, count in self.streams_per_layer.items():
                if count != 1:
                    raise Invalid(f"image quality layer {k} has {count} STAGE_STREAM chunks; it must have 1")
        return layers
