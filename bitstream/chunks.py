"""Chunk types of .vq format version 2 and their payloads (FORMAT.md, "Chunk types").

A version-2 file is a 7..10-byte header, a sequence of chunks and a CRC (framing: `container`). This
module defines what a chunk is (`Chunk`), the numbers of the chunk types (`ChunkType`), the rules
each known type obeys (must-understand bit, layer), and the payload layout of each known type:
`ModelComponent` (MODEL), `ImageGeometry` (IMAGE_GEOMETRY), `AudioGeometry` (AUDIO_GEOMETRY),
segment table (SEGMENT_TABLE), metadata (METADATA), encoder name (ENCODER), alpha plane (ALPHA_PLANE:
its coding byte; the plane is decoded by `vqcodec.image.alpha`). STAGE_STREAM payloads
are range-coded streams (`entropy.py`); only their length is checked here.

Fixed-width integers are little-endian and unsigned; "varint" is an unsigned LEB128 varint in its
minimal encoding (`_common.read_uvarint`), as in the framing. Payload decoders raise `Invalid` for a broken rule
(the reader turns it into `VQFormatError`) and `VQFormatError` directly for a value that a newer
vqcodec may define ("upgrade vqcodec"); constructors raise `TypeError` / `ValueError` for bad
arguments.
Decoders check every length against the payload before slicing, so they allocate at most a copy
of the payload and run in time linear in its size.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Sequence, Union

from ._common import (
    MAX_MODEL_ID_BYTES,
    V2_WEIGHTS_HASH_BYTES,
    WEIGHTS_HASH_BYTES,
    BytesLike,
    ChannelLayout,
    Invalid,
    VarintTruncated,
    check_int,
    encode_uvarint,
    model_id_problem,
    name_problem,
    read_uvarint,
    size_problem,
)
from .errors import VQFormatError

__all__ = [
    "ChunkType",
    "Chunk",
    "ModelComponent",
    "ImageGeometry",
    "AudioGeometry",
    "Geometry",
    "metadata_chunk",
    "SETTINGS_KEY",
    "settings_chunk",
    "decode_settings",
    "segment_table_chunk",
    "alpha_plane_chunk",
    "AlphaCoding",
    "stage_syntax_chunk",
    "StageSyntax",
    "refinement_chunk",
    "decode_refinement_base",
    "MAX_REFINEMENT_BASE",
    "FIRST_FUTURE_TYPE",
    "FIRST_PRIVATE_TYPE",
    "MAX_LAYER",
    "MAX_CHUNK_PAYLOAD_BYTES",
    "MAX_ROLE_BYTES",
    "MAX_METADATA_KEY_BYTES",
    "MAX_ENCODER_VERSION_BYTES",
    "MAX_SAMPLE_RATE",
    "MAX_AUDIO_CHANNELS",
    "MAX_NUM_SAMPLES",
]

MAX_LAYER = 255
"""A chunk's layer is a u8: 0 = side information, 1..255 = quality layer."""
MAX_CHUNK_PAYLOAD_BYTES = 0xFFFFFFFF
"""A chunk's payload length (a varint of 1..5 bytes) is at most 2**32 - 1."""
MAX_ROLE_BYTES = 16
MAX_METADATA_KEY_BYTES = 64
MAX_ENCODER_VERSION_BYTES = 64
ENCODER_SOFTWARE = "vqcodec"
"""The software an ENCODER chunk names: its payload holds only the version ("0.2.0"), and readers
present it as "vqcodec 0.2.0"."""
MAX_SAMPLE_RATE = 768_000
"""Hz, the original input rate of an audio file (a varint of 1..3 bytes)."""
MAX_AUDIO_CHANNELS = 255
MAX_NUM_SAMPLES = 1 << 40
"""Samples per channel: about 397 hours at 768 kHz, 6300 hours at 48 kHz (a varint of 1..6 bytes)."""
MAX_SEGMENT_FRAMES = 0xFFFFFFFF
"""One SEGMENT_TABLE entry (a varint of 1..5 bytes)."""


class ChunkType(enum.IntEnum):
    """Chunk type numbers (u16). 0 is invalid; see FIRST_FUTURE_TYPE / FIRST_PRIVATE_TYPE."""

    MODEL = 0x0001
    IMAGE_GEOMETRY = 0x0002
    AUDIO_GEOMETRY = 0x0003
    STAGE_STREAM = 0x0004
    SEGMENT_TABLE = 0x0005
    METADATA = 0x0006
    ENCODER = 0x0007
    ALPHA_PLANE = 0x0008
    STAGE_SYNTAX = 0x0009
    REFINEMENT = 0x000B


FIRST_FUTURE_TYPE = 0x0008
"""0x0008..0x7FFF: types that later vqcodec versions define (assigned in FORMAT.md, in order)."""
FIRST_PRIVATE_TYPE = 0x8000
"""0x8000..0xFFFF: private / experimental types, never written by a released vqcodec."""


@dataclass(frozen=True)
class _Rule:
    must_understand: bool
    layered: bool  # True: layer >= 1 (quality-layer data); False: layer 0 (side information)


_RULES: dict[int, _Rule] = {
    ChunkType.MODEL: _Rule(True, False),
    ChunkType.IMAGE_GEOMETRY: _Rule(True, False),
    ChunkType.AUDIO_GEOMETRY: _Rule(True, False),
    ChunkType.STAGE_STREAM: _Rule(True, True),
    ChunkType.SEGMENT_TABLE: _Rule(True, False),
    ChunkType.METADATA: _Rule(False, False),
    ChunkType.ENCODER: _Rule(False, False),
    ChunkType.ALPHA_PLANE: _Rule(True, False),
    ChunkType.STAGE_SYNTAX: _Rule(True, False),
    ChunkType.REFINEMENT: _Rule(True, False),
}


_KNOWN_TYPES: dict[int, ChunkType] = {int(t): t for t in ChunkType}


def type_name(chunk_type: int) -> str:
    """"STAGE_STREAM (type 4)" for a known type, "unknown type 0x1234 (4660)" otherwise."""
    if chunk_type in _RULES:
        return f"{ChunkType(chunk_type).name} (type {chunk_type})"
    return f"unknown type 0x{chunk_type:04x} ({chunk_type})"


def rule_problem(chunk_type: int, layer: int, must_understand: bool) -> str | None:
    """Why a chunk of a known type breaks its type's rule (flag bit, layer), or None.

    Unknown types have no rule here (the container decides what to do with them).
    """
    rule = _RULES.get(chunk_type)
    if rule is None:
        return None
    if must_understand != rule.must_understand:
        want = "set" if rule.must_understand else "clear"
        return f"{type_name(chunk_type)} chunk must have its must-understand flag {want}"
    if rule.layered and layer == 0:
        return f"{type_name(chunk_type)} chunk has layer 0; it belongs to a quality layer 1..{MAX_LAYER}"
    if not rule.layered and layer != 0:
        return f"{type_name(chunk_type)} chunk has layer {layer}; it must have layer 0"
    return None


@dataclass(frozen=True)
class Chunk:
    """One chunk of a version-2 file.

    Attributes:
        type: chunk type number, 1..65535 (a `ChunkType` for the types this version knows).
        layer: 0 = side information (geometry, model, metadata), k >= 1 = quality layer k; <= 255.
        must_understand: flag bit 0. A reader that does not know `type` refuses the file if set,
            and skips (but keeps) the chunk if clear.
        payload: 0..2**32-1 bytes (bytes-like input is copied into bytes).
    """

    type: int
    layer: int
    must_understand: bool
    payload: bytes

    def __post_init__(self) -> None:
        chunk_type = check_int(self.type, "chunk type")
        layer = check_int(self.layer, "chunk layer")
        if not 1 <= chunk_type <= 0xFFFF:
            raise ValueError(f"chunk type {chunk_type} is outside 1..65535")
        if not 0 <= layer <= MAX_LAYER:
            raise ValueError(f"chunk layer {layer} is outside 0..{MAX_LAYER}")
        if not isinstance(self.must_understand, bool):
            raise TypeError(f"must_understand must be bool, got {type(self.must_understand).__name__}")
        if not isinstance(self.payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"chunk payload must be bytes-like, got {type(self.payload).__name__}")
        payload = bytes(self.payload)
        if len(payload) > MAX_CHUNK_PAYLOAD_BYTES:
            raise ValueError(f"chunk payload of {len(payload)} bytes exceeds {MAX_CHUNK_PAYLOAD_BYTES}")
        object.__setattr__(self, "type", _KNOWN_TYPES.get(chunk_type, chunk_type))
        object.__setattr__(self, "layer", layer)
        object.__setattr__(self, "payload", payload)

    @classmethod
    def from_fields(cls, chunk_type: int, layer: int, must_understand: bool, payload: bytes) -> "Chunk":
        """A chunk from fields a reader has already bounded (type 1..65535 and layer 0..255 from
        the u16/u8 fields, payload a bytes slice): skips the argument checks, which dominate
        parsing time for files of many small chunks."""
        chunk = object.__new__(cls)
        object.__setattr__(chunk, "type", _KNOWN_TYPES.get(chunk_type, chunk_type))
        object.__setattr__(chunk, "layer", layer)
        object.__setattr__(chunk, "must_understand", must_understand)
        object.__setattr__(chunk, "payload", payload)
        return chunk

    @property
    def known(self) -> bool:
        """Whether this version of vqcodec defines the chunk's type."""
        return self.type in _RULES


# ---------------------------------------------------------------------------------------------- MODEL


@dataclass(frozen=True)
class ModelComponent:
    """One model component that made a file (payload of a MODEL chunk).

    Attributes:
        role: what the component does, 1..16 visible ASCII bytes, e.g. "vqvae", "prior";
            unique within a file.
        model_id: 1..64 visible ASCII bytes, e.g. "image-vqvae-f8-s8-k512-v3".
        weights_hash: 16 raw bytes, `hash_weights` of that component's weights file, or its first
            8 bytes (V2_WEIGHTS_HASH_BYTES). A version-2 file stores the first 8 bytes, so
            `write_file` accepts either and `read_file` gives 8 for version-2 files (16 for
            version-1 files); compare hashes with `hash_matches`.
    """

    role: str
    model_id: str
    weights_hash: bytes

    def __post_init__(self) -> None:
        for name in ("role", "model_id"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be str, got {type(getattr(self, name)).__name__}")
        role, model_id = _ascii(self.role, "role"), _ascii(self.model_id, "model id")
        problem = _role_problem(role) or model_id_problem(model_id)
        if problem:
            raise ValueError(problem)
        if not isinstance(self.weights_hash, (bytes, bytearray, memoryview)):
            raise TypeError(f"weights_hash must be bytes, got {type(self.weights_hash).__name__}")
        if len(bytes(self.weights_hash)) not in (WEIGHTS_HASH_BYTES, V2_WEIGHTS_HASH_BYTES):
            raise ValueError(
                f"weights_hash must be {WEIGHTS_HASH_BYTES} raw bytes (use hash_weights(weights_file_bytes)) "
                f"or their first {V2_WEIGHTS_HASH_BYTES}"
            )
        object.__setattr__(self, "weights_hash", bytes(self.weights_hash))


def _role_problem(role: bytes) -> str | None:
    return name_problem(role, "role", MAX_ROLE_BYTES)


_MODEL_FIXED_BYTES = 1 + V2_WEIGHTS_HASH_BYTES
"""Role length byte and weights hash: a MODEL payload is 9 + role length + model id length bytes."""


def encode_model(component: ModelComponent) -> bytes:
    """MODEL payload: role length u8, role, model id (the rest but the last 8 bytes), weights hash
    (its first 8 bytes: a 16-byte `hash_weights` value is cut to them)."""
    role, model_id = component.role.encode("ascii"), component.model_id.encode("ascii")
    return bytes([len(role)]) + role + model_id + component.weights_hash[:V2_WEIGHTS_HASH_BYTES]


def decode_model(payload: bytes) -> ModelComponent:
    """Parse a MODEL payload (9 + role length + model id length bytes, 11..89); the hash has 8 bytes."""
    n = len(payload)
    if n < 1:
        raise Invalid("MODEL payload is empty")
    role_len = payload[0]
    if not 1 <= role_len <= MAX_ROLE_BYTES:
        raise Invalid(f"MODEL payload: role length {role_len} is outside 1..{MAX_ROLE_BYTES}")
    id_len = n - _MODEL_FIXED_BYTES - role_len
    if not 1 <= id_len <= MAX_MODEL_ID_BYTES:
        raise Invalid(
            f"MODEL payload is {n} bytes: with role length {role_len} that leaves a model id length {id_len}, "
            f"outside 1..{MAX_MODEL_ID_BYTES} (the payload is {_MODEL_FIXED_BYTES} + role length + model "
            f"id length bytes)"
        )
    role = payload[1 : 1 + role_len]
    model_id = payload[1 + role_len : 1 + role_len + id_len]
    problem = _role_problem(role) or model_id_problem(model_id)
    if problem:
        raise Invalid(f"MODEL payload: {problem}")
    return ModelComponent(role.decode("ascii"), model_id.decode("ascii"), payload[n - V2_WEIGHTS_HASH_BYTES :])


# ------------------------------------------------------------------------------------- geometries

_IMAGE_GEOMETRY = struct.Struct("<HHB")  # width, height, channel layout: 5 bytes


@dataclass(frozen=True)
class ImageGeometry:
    """Payload of IMAGE_GEOMETRY: the image's size and channel layout.

    Attributes:
        width, height: pixels, 1..65535 each.
        channel_layout: of the decoded image (an int is converted to `ChannelLayout`).
    """

    width: int
    height: int
    channel_layout: ChannelLayout = ChannelLayout.RGB

    def __post_init__(self) -> None:
        width, height = check_int(self.width, "width"), check_int(self.height, "height")
        problem = size_problem(width, height)
        if problem:
            raise ValueError(problem)
        layout = check_int(self.channel_layout, "channel_layout")
        if layout not in ChannelLayout._value2member_map_:
            raise ValueError(f"unknown channel layout {layout}; use a ChannelLayout member")
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)
        object.__setattr__(self, "channel_layout", ChannelLayout(layout))


def encode_image_geometry(g: ImageGeometry) -> bytes:
    """IMAGE_GEOMETRY payload: width u16, height u16, channel layout u8 (5 bytes)."""
    return _IMAGE_GEOMETRY.pack(g.width, g.height, int(g.channel_layout))


def decode_image_geometry(payload: bytes) -> ImageGeometry:
    """Parse an IMAGE_GEOMETRY payload (exactly 5 bytes)."""
    _check_size(payload, _IMAGE_GEOMETRY.size, "IMAGE_GEOMETRY")
    width, height, layout = _IMAGE_GEOMETRY.unpack(payload)
    problem = size_problem(width, height)
    if problem:
        raise Invalid(problem)
    if layout not in ChannelLayout._value2member_map_:
        raise VQFormatError(
            f"unknown channel layout {layout} (this vqcodec knows 0=RGB, 1=RGBA, 2=gray, 3=gray+alpha): the "
            f"file was made by a "
            f"newer vqcodec or is corrupted; upgrade vqcodec"
        )
    return ImageGeometry(width, height, ChannelLayout(layout))


@dataclass(frozen=True)
class AudioGeometry:
    """Payload of AUDIO_GEOMETRY: what the decoder must give back.

    Attributes:
        sample_rate: Hz, the original input's rate (the model may run at another rate; the audio
            codec resamples), 1..768000.
        channels: 1..255, coded independently or jointly as the audio codec defines.
        num_samples: samples per channel of the original input, 1..2**40.
    """

    sample_rate: int
    channels: int
    num_samples: int

    def __post_init__(self) -> None:
        values = tuple(check_int(getattr(self, f), f) for f in ("sample_rate", "channels", "num_samples"))
        problem = _audio_problem(*values)
        if problem:
            raise ValueError(problem)
        for name, value in zip(("sample_rate", "channels", "num_samples"), values):
            object.__setattr__(self, name, value)


def _audio_problem(sample_rate: int, channels: int, num_samples: int) -> str | None:
    if not 1 <= sample_rate <= MAX_SAMPLE_RATE:
        return f"sample rate {sample_rate} Hz is outside 1..{MAX_SAMPLE_RATE}"
    if not 1 <= channels <= MAX_AUDIO_CHANNELS:
        return f"channel count {channels} is outside 1..{MAX_AUDIO_CHANNELS}"
    if not 1 <= num_samples <= MAX_NUM_SAMPLES:
        return f"sample count {num_samples} is outside 1..{MAX_NUM_SAMPLES} (2**40)"
    return None


_SAMPLE_RATE_VARINT_BYTES = 3  # 768000 < 2**21
_NUM_SAMPLES_VARINT_BYTES = 6  # 2**40 < 2**42


def encode_audio_geometry(g: AudioGeometry) -> bytes:
    """AUDIO_GEOMETRY payload: sample rate varint, channels u8, samples per channel varint (3..10 bytes)."""
    return encode_uvarint(g.sample_rate) + bytes((g.channels,)) + encode_uvarint(g.num_samples)


def decode_audio_geometry(payload: bytes) -> AudioGeometry:
    """Parse an AUDIO_GEOMETRY payload: sample rate varint (1..3 bytes), channels u8, samples per
    channel varint (1..6 bytes), nothing after."""
    n = len(payload)
    try:
        sample_rate, pos = read_uvarint(payload, 0, n, _SAMPLE_RATE_VARINT_BYTES)
        if pos >= n:
            raise VarintTruncated("no channel count")
        channels = payload[pos]
        num_samples, pos = read_uvarint(payload, pos + 1, n, _NUM_SAMPLES_VARINT_BYTES)
    except Invalid as exc:
        raise Invalid(f"AUDIO_GEOMETRY payload of {n} bytes: {exc}") from None
    if pos != n:
        raise Invalid(f"AUDIO_GEOMETRY payload has {n - pos} bytes after its last field")
    problem = _audio_problem(sample_rate, channels, num_samples)
    if problem:
        raise Invalid(problem)
    return AudioGeometry(sample_rate, channels, num_samples)


Geometry = Union[ImageGeometry, AudioGeometry]


# ---------------------------------------------------------------------------------------- ALPHA_PLANE


class AlphaCoding(enum.IntEnum):
    """How an ALPHA_PLANE payload codes the plane (its first byte; FORMAT.md, "ALPHA_PLANE")."""

    CONSTANT = 0
    """Every sample has one value, the payload's second (and last) byte: 255 = fully opaque."""
    LZMA2 = 1
    """A raw LZMA2 stream of the W*H samples in raster order."""
    LZMA2_LEFT = 2
    """A raw LZMA2 stream of each sample minus its left neighbour (mod 256; 0 left of the first column)."""
    LZMA2_UP = 3
    """A raw LZMA2 stream of each sample minus the sample above (mod 256; 0 above the first row)."""


def alpha_plane_chunk(coding: "AlphaCoding | int", data: BytesLike) -> Chunk:
    """An ALPHA_PLANE chunk (layer 0, must-understand): coding u8, then `data` (CONSTANT: the one
    value byte; LZMA2*: the stream, >= 1 byte). The image codec makes `data` (vqcodec.image.alpha)."""
    value = check_int(coding, "alpha coding")
    if value not in AlphaCoding._value2member_map_:
        raise ValueError(f"unknown alpha coding {value}; use an AlphaCoding member")
    payload = bytes([value]) + bytes(data)
    try:
        decode_alpha_plane(payload)
    except Invalid as exc:
        raise ValueError(str(exc)) from None
    return Chunk(ChunkType.ALPHA_PLANE, 0, True, payload)


def decode_alpha_plane(payload: bytes) -> tuple[AlphaCoding, bytes]:
    """Parse an ALPHA_PLANE payload -> (coding, data): CONSTANT is exactly 2 bytes, the LZMA2 codings
    at least 2. The stream itself is checked when the plane is decoded (vqcodec.image.alpha)."""
    if not payload:
        raise Invalid("ALPHA_PLANE payload is empty")
    if payload[0] not in AlphaCoding._value2member_map_:
        raise VQFormatError(
            f"alpha coding {payload[0]} is not known to this vqcodec (it knows 0..{max(AlphaCoding)}): the "
            "file was made by a newer vqcodec; upgrade vqcodec"
        )
    coding = AlphaCoding(payload[0])
    if coding == AlphaCoding.CONSTANT and len(payload) != 2:
        raise Invalid(f"ALPHA_PLANE payload with constant coding is {len(payload)} bytes; it must be 2")
    if coding != AlphaCoding.CONSTANT and len(payload) < 2:
        raise Invalid(f"ALPHA_PLANE payload with {coding.name} coding has no stream")
    return coding, payload[1:]


# ------------------------------------------------------------------------ SEGMENT_TABLE, METADATA, ENCODER


class StageSyntax(enum.IntEnum):
    """How the STAGE_STREAM chunks of a file are coded (the STAGE_SYNTAX chunk; absent = PLAIN)."""

    PLAIN = 0
    """One stream per stage, every position of the grid coded under the prior (vqcodec.coding.stages)."""
    DEPTH = 1
    """Per-position depth: each stream starts with a mode symbol (prior / raw), and streams of stages
    >= 2 code a STOP symbol or an index for each position still present (vqcodec.coding.depth)."""


def _single_varint(payload: bytes, name: str) -> int:
    """The one minimal varint that fills a `name` chunk's payload (Invalid otherwise)."""
    try:
        value, pos = read_uvarint(payload, 0, len(payload))
    except Invalid as exc:
        raise Invalid(f"{name}: {exc}") from None
    if pos != len(payload):
        raise Invalid(f"{name} payload has {len(payload) - pos} bytes after its value")
    return value


def stage_syntax_chunk(syntax: "StageSyntax | int") -> Chunk:
    """A STAGE_SYNTAX chunk (layer 0, must-understand): one varint, the `StageSyntax` of the streams."""
    value = check_int(syntax, "stage syntax")
    if value not in StageSyntax._value2member_map_ or value == StageSyntax.PLAIN:
        raise ValueError(f"stage syntax must be one of {[int(v) for v in StageSyntax][1:]}, got {value} "
                         "(PLAIN files carry no STAGE_SYNTAX chunk)")
    return Chunk(ChunkType.STAGE_SYNTAX, 0, True, encode_uvarint(value))


def decode_stage_syntax(payload: bytes) -> StageSyntax:
    """Parse a STAGE_SYNTAX payload: exactly one minimal varint naming a known syntax other than PLAIN."""
    value = _single_varint(payload, "STAGE_SYNTAX")
    if value == StageSyntax.PLAIN:
        raise Invalid("STAGE_SYNTAX names the plain syntax, which files state by omitting the chunk")
    if value not in StageSyntax._value2member_map_:
        raise VQFormatError(f"stage syntax {value} is not known to this vqcodec: the file was made by a newer "
                            "vqcodec; upgrade vqcodec")
    return StageSyntax(value)


MAX_REFINEMENT_BASE = 255
"""Most residual-VQ layers under an image file's refinement layers (layers are u8 in the chunk headers)."""


def refinement_chunk(base_layers: int) -> Chunk:
    """A REFINEMENT chunk (layer 0, must-understand): one varint, the number B of residual-VQ layers; the file's
    layers B+1, B+2, ... are scalar refinement layers over the reconstruction of layers 1..B."""
    b = check_int(base_layers, "refinement base layers")
    if not 1 <= b <= MAX_REFINEMENT_BASE:
        raise ValueError(f"refinement base layers must be 1..{MAX_REFINEMENT_BASE}, got {b}")
    return Chunk(ChunkType.REFINEMENT, 0, True, encode_uvarint(b))


def decode_refinement_base(payload: bytes) -> int:
    """Parse a REFINEMENT payload: exactly one minimal varint B in 1..MAX_REFINEMENT_BASE."""
    value = _single_varint(payload, "REFINEMENT")
    if not 1 <= value <= MAX_REFINEMENT_BASE:
        raise Invalid(f"REFINEMENT names {value} base layers; it must be 1..{MAX_REFINEMENT_BASE}")
    return value


def segment_table_chunk(segment_frames: Sequence[int]) -> Chunk:
    """A SEGMENT_TABLE chunk: the length of each audio segment in the audio model's frames.

    Args:
        segment_frames: 1 or more lengths, each 1..2**32-1 frames, in time order.
    """
    frames = [check_int(f, "segment length") for f in segment_frames]
    if not frames:
        raise ValueError("a segment table needs at least one segment")
    if any(not 1 <= f <= MAX_SEGMENT_FRAMES for f in frames):
        raise ValueError("every segment length must be 1..2**32-1 frames")
    payload = b"".join(encode_uvarint(f) for f in frames)
    if len(payload) > MAX_CHUNK_PAYLOAD_BYTES:
        raise ValueError(f"{len(frames)} segments do not fit in one chunk")
    return Chunk(ChunkType.SEGMENT_TABLE, 0, True, payload)


def decode_segment_table(payload: bytes) -> tuple[int, ...]:
    """Parse a SEGMENT_TABLE payload: n >= 1 varints back to back, each 1..2**32-1, filling it exactly."""
    n = len(payload)
    if not n:
        raise Invalid("SEGMENT_TABLE payload is 0 bytes; it needs at least one segment")
    frames = []
    pos = 0
    while pos < n:
        try:
            value, pos = read_uvarint(payload, pos, n)
        except Invalid as exc:
            raise Invalid(f"SEGMENT_TABLE: segment {len(frames) + 1}: {exc}") from None
        if not 1 <= value <= MAX_SEGMENT_FRAMES:
            raise Invalid(f"SEGMENT_TABLE: segment {len(frames) + 1} has {value} frames (1..2**32-1)")
        frames.append(value)
    return tuple(frames)


def metadata_chunk(key: str, value: BytesLike) -> Chunk:
    """A METADATA chunk (optional, layer 0): `key` names what `value` holds.

    Args:
        key: 1..64 visible ASCII bytes; "exif", "xmp" and "icc" are registered (FORMAT.md).
        value: raw bytes, 0..(2**32 - 2 - len(key)).
    """
    if not isinstance(key, str):
        raise TypeError(f"metadata key must be str, got {type(key).__name__}")
    raw = _ascii(key, "metadata key")
    problem = name_problem(raw, "metadata key", MAX_METADATA_KEY_BYTES)
    if problem:
        raise ValueError(problem)
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"metadata value must be bytes-like, got {type(value).__name__}")
    return Chunk(ChunkType.METADATA, 0, False, bytes([len(raw)]) + raw + bytes(value))


SETTINGS_KEY = "settings"
"""The METADATA key under which vqcodec records the encoder settings a file was made with (FORMAT.md)."""


def settings_chunk(**settings: int) -> Chunk:
    """The METADATA chunk "settings": the encoder settings a file was made with, e.g. quality=50, effort=2,
    as ASCII "name=value" words separated by one space, in the order given ("quality=50 effort=2").
    Informational: decoding never reads it (a reader that does not know it ignores it, as any METADATA)."""
    words = []
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"setting {name} must be a non-negative int, got {value!r}")
        words.append(f"{name}={value}")
    return metadata_chunk(SETTINGS_KEY, " ".join(words).encode("ascii"))


def decode_settings(value: bytes) -> dict[str, int]:
    """The settings of a "settings" METADATA value -> {name: value}; words that are not `name=<digits>` are
    skipped (the value is informational: a damaged one never makes the file invalid)."""
    out: dict[str, int] = {}
    for word in bytes(value).split(b" "):
        name, eq, number = word.partition(b"=")
        if eq and name and number.isdigit() and len(number) <= 12 and name.isascii():
            out[name.decode("ascii")] = int(number)
    return out


def decode_metadata(payload: bytes) -> tuple[str, bytes]:
    """Parse a METADATA payload: key length u8 (1..64), key, value (the rest)."""
    if not payload:
        raise Invalid("METADATA payload is empty")
    key = payload[1 : 1 + payload[0]]
    if len(key) != payload[0]:
        raise Invalid(f"METADATA key length {payload[0]} runs past the payload ({len(payload)} bytes)")
    problem = name_problem(key, "metadata key", MAX_METADATA_KEY_BYTES)
    if problem:
        raise Invalid(problem)
    return key.decode("ascii"), payload[1 + len(key) :]


_ENCODER_PREFIX = ENCODER_SOFTWARE + " "


def encoder_chunk(name: str) -> Chunk:
    """An ENCODER chunk (optional, layer 0): the vqcodec release that wrote the file.

    Args:
        name: "vqcodec <version>", e.g. "vqcodec 0.2.0"; the chunk stores only the version (1..64
            visible ASCII bytes), `decode_encoder` gives `name` back.
    """
    if not isinstance(name, str):
        raise TypeError(f"encoder name must be str, got {type(name).__name__}")
    if not name.startswith(_ENCODER_PREFIX):
        raise ValueError(
            f"encoder name {name!r} must be {_ENCODER_PREFIX!r} followed by the version (the ENCODER chunk "
            f"names the vqcodec release that wrote the file)"
        )
    raw = _ascii(name[len(_ENCODER_PREFIX) :], "encoder version")
    problem = name_problem(raw, "encoder version", MAX_ENCODER_VERSION_BYTES)
    if problem:
        raise ValueError(problem)
    return Chunk(ChunkType.ENCODER, 0, False, raw)


def decode_encoder(payload: bytes) -> str:
    """Parse an ENCODER payload: a vqcodec version, 1..64 visible ASCII bytes -> "vqcodec <version>"."""
    problem = name_problem(payload, "encoder version", MAX_ENCODER_VERSION_BYTES)
    if problem:
        raise Invalid(problem)
    return _ENCODER_PREFIX + payload.decode("ascii")


# ---------------------------------------------------------------------------------------------- helpers


def _ascii(text: str, what: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {text!r} is not ASCII") from None


def _check_size(payload: bytes, size: int, what: str) -> None:
    if len(payload) != size:
        raise Invalid(f"{what} payload is {len(payload)} bytes; it must be {size}")
