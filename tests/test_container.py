"""Tests for vqcodec.bitstream.container: the .vq byte layout, validation, truncation, fuzzing.

Version 1 (legacy, still read) first, then version 2 (chunks).
"""
from __future__ import annotations

import dataclasses
import hashlib
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest

from vqcodec.bitstream import (
    FORMAT_VERSION,
    MAGIC,
    MAX_CHUNKS,
    MAX_VARINT_BYTES,
    MIN_CHUNK_HEADER_BYTES,
    MIN_FILE_BYTES,
    MIN_HEADER_BYTES,
    MIN_V2_FILE_BYTES,
    V1_FORMAT_VERSION,
    V2_WEIGHTS_HASH_BYTES,
    AudioGeometry,
    ChannelLayout,
    Chunk,
    ChunkType,
    ImageGeometry,
    ModelComponent,
    Modality,
    VQFile,
    VQFormatError,
    hash_matches,
    hash_weights,
    inspect,
    metadata_chunk,
    read_file,
    segment_table_chunk,
    truncate,
    write_file,
)
from vqcodec.bitstream.v1 import VQHeader, check_model, pack, read_header, unpack  # the version-1 layout
from vqcodec.bitstream._common import Invalid, VarintTruncated, encode_uvarint, read_uvarint

HASH = hash_weights(b"pretend these are weights")
MODEL = "image-f8-s8-v1"


def _header(**kw) -> VQHeader:
    base = dict(modality=Modality.IMAGE, model_id=MODEL, weights_hash=HASH, width=768, height=512)
    base.update(kw)
    return VQHeader(**base)


def _streams(lengths=(37, 0, 5, 120)) -> list[bytes]:
    rng = np.random.default_rng(sum(lengths))
    return [rng.integers(0, 256, size=n, dtype=np.uint8).tobytes() for n in lengths]


def _raw(
    *,
    magic=MAGIC,
    version=V1_FORMAT_VERSION,
    modality=0,
    model_id=b"m",
    weights_hash=HASH,
    width=4,
    height=3,
    layout=0,
    lengths=(2,),
    streams=(b"ab",),
    id_len=None,
    stages=None,
) -> bytes:
    """Hand-built file with a *valid* CRC, bypassing pack()'s checks (to test field validation)."""
    body = (
        struct.pack("<4sBBB", magic, version, modality, len(model_id) if id_len is None else id_len)
        + model_id
        + struct.pack("<16sIIBB", weights_hash, width, height, layout,
                      len(lengths) if stages is None else stages)
        + struct.pack(f"<{len(lengths)}I", *lengths)
        + b"".join(streams)
    )
    return body + struct.pack("<I", zlib.crc32(body))


def _only_vqformaterror(data) -> VQFormatError | None:
    """Run unpack; return the VQFormatError raised (None if it parsed). Any other error fails."""
    try:
        unpack(data)
    except VQFormatError as exc:
        assert str(exc)
        return exc
    return None


# ------------------------------------------------------------------------------- round trips


def test_roundtrip_and_canonical() -> None:
    streams = _streams()
    data = pack(_header(), streams)
    for view in (data, bytearray(data), memoryview(data)):
        header, out = unpack(view)
        assert out == streams
        assert all(type(s) is bytes for s in out)
        assert header == _header(stream_lengths=(37, 0, 5, 120))
        assert header.stages == 4
        assert header.file_bytes == len(data)
    # the encoding is canonical: repacking gives the same bytes
    assert pack(dataclasses.replace(header, stream_lengths=()), out) == data
    assert pack(header, out) == data  # consistent stream_lengths are accepted


def test_memoryview_of_non_byte_format() -> None:
    data = pack(_header(), _streams((8,)))
    padded = data + b"\0" * (-len(data) % 4)
    words = np.frombuffer(padded, dtype=np.uint32)
    # a uint32 memoryview of the (padded) file: unpack sees its raw bytes, so only padding differs
    err = _only_vqformaterror(memoryview(words))
    assert (err is None) == (padded == data)
    assert unpack(memoryview(data).cast("B"))[1] == _streams((8,))


def test_byte_layout_matches_spec() -> None:
    """Offsets from FORMAT.md's table."""
    streams = [b"\x01\x02\x03", b"", b"\xff" * 6]
    header = _header(modality=Modality.AUDIO, width=65535, height=1)
    data = pack(header, streams)
    L = len(MODEL)
    assert data[0:4] == MAGIC == b"\x89VQC"
    assert data[4] == V1_FORMAT_VERSION == 1
    assert data[5] == 1  # AUDIO
    assert data[6] == L
    assert data[7 : 7 + L] == MODEL.encode("ascii")
    assert data[7 + L : 23 + L] == HASH
    assert struct.unpack_from("<II", data, 23 + L) == (65535, 1)
    assert data[31 + L] == ChannelLayout.RGB == 0
    assert data[32 + L] == 3
    assert struct.unpack_from("<3I", data, 33 + L) == (3, 0, 6)
    assert data[45 + L : 45 + L + 9] == b"\x01\x02\x03" + b"\xff" * 6
    assert len(data) == 45 + L + 9 + 4
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])
    assert unpack(data)[0].header_bytes == 45 + L


def test_smallest_file() -> None:
    data = _raw(model_id=b"x", lengths=(0,), streams=())
    assert len(data) == MIN_FILE_BYTES == 42
    header, streams = unpack(data)
    assert streams == [b""] and header.model_id == "x"


def test_hash_weights() -> None:
    blob = b"\x00\x01weights"
    assert hash_weights(blob) == hashlib.sha256(blob).digest()[:16]
    assert len(hash_weights(b"")) == 16


# ------------------------------------------------------------------------------- truncation


def test_truncate_keeps_prefix_of_stages() -> None:
    streams = _streams((10, 20, 0, 7, 3))
    data = pack(_header(), streams)
    for k in range(1, 6):
        cut = truncate(data, k)
        header, out = unpack(cut)
        assert out == streams[:k]
        assert header.stream_lengths == (10, 20, 0, 7, 3)[:k]
        assert dataclasses.replace(header, stream_lengths=()) == _header()
        assert len(cut) == len(data) - 4 * (5 - k) - sum((10, 20, 0, 7, 3)[k:])
        assert truncate(cut, 1) == truncate(data, 1)  # truncation composes
    assert truncate(data, 5) == data
    assert truncate(bytearray(data), 2) == truncate(data, 2)


@pytest.mark.parametrize("stages", [0, -1, 6])
def test_truncate_rejects_bad_stage_count(stages: int) -> None:
    data = pack(_header(), _streams((1, 2, 3, 4, 5)))
    with pytest.raises(ValueError, match="choose 1..5"):
        truncate(data, stages)


def test_truncate_rejects_bad_file() -> None:
    with pytest.raises(VQFormatError):
        truncate(b"not a vq file at all, just text", 1)


# ------------------------------------------------------------------------------- header reading


def test_read_header() -> None:
    data = pack(_header(), _streams())
    header = read_header(data)
    assert header == unpack(data)[0]
    size = header.header_bytes
    # without the CRC check, the header prefix alone is enough (e.g. a partial download)
    assert read_header(data[:size], verify_crc=False) == header
    with pytest.raises(VQFormatError, match="truncated"):
        read_header(data[: size - 1], verify_crc=False)
    with pytest.raises(VQFormatError, match="truncated"):
        read_header(data[:size])
    broken = bytearray(data)
    broken[-10] ^= 0x40  # inside a stream
    assert read_header(bytes(broken), verify_crc=False) == header
    with pytest.raises(VQFormatError, match="CRC mismatch"):
        read_header(bytes(broken))


def test_check_model() -> None:
    header = unpack(pack(_header(), _streams()))[0]
    check_model(header, MODEL, HASH)
    with pytest.raises(VQFormatError, match=f"made with model {MODEL} \\(weights hash {HASH.hex()}\\)"):
        check_model(header, "image-f8-s4-v2", HASH)
    other = hash_weights(b"other weights")
    with pytest.raises(VQFormatError, match="same|different weights") as info:
        check_model(header, MODEL, other)
    assert other.hex() in str(info.value) and "does not have" in str(info.value)


# ------------------------------------------------------------------------------- specific errors


V1_ERRORS = [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 60, "bad magic"),
    (b"VQC\x89" + b"\0" * 60, "bad magic"),
    (MAGIC[:2], "truncated"),
    (MAGIC, "truncated"),
    (_raw(version=7), "format version 7 is newer than this vqcodec supports \\(2\\); upgrade"),
    (_raw(version=0), "version 0 is invalid"),
    (_raw(id_len=0, model_id=b""), "model id length 0"),
    (_raw(id_len=65, model_id=b"a" * 65), "model id length 65"),
    (_raw(stages=0, lengths=(), streams=()), "stage count 0"),
    (_raw(stages=33, lengths=(0,) * 33, streams=()), "stage count 33"),
    (_raw(lengths=(0xFFFFFFFF,), streams=()), "truncated: expected 4294967299 bytes"),
    (_raw(lengths=(0xFFFFFFFF,) * 32, streams=()), "truncated"),
    (_raw()[:-1], "truncated: expected 6 bytes of stream data and CRC, found 5"),
    (_raw() + b"extra", "5 unexpected bytes after the end"),
    (_raw()[:-4] + b"\0\0\0\0", "CRC mismatch"),
    (_raw(modality=2), "unknown modality 2"),
    (_raw(layout=9), "unknown channel layout 9"),
    (_raw(width=0), "image size 0x3"),
    (_raw(height=65536), "image size 4x65536"),
    (_raw(width=0xFFFFFFFF), "outside 1..65535"),
    (_raw(model_id=b"im age"), "visible ASCII"),
    (_raw(model_id=b"\xc3\xa9t\xc3\xa9"), "visible ASCII"),
]


@pytest.mark.parametrize("data, message", V1_ERRORS)
def test_specific_errors(data: bytes, message: str) -> None:
    with pytest.raises(VQFormatError, match=message):
        unpack(data)
    with pytest.raises(VQFormatError, match=message):  # read_file reads version 1 the same way
        read_file(data)


def test_length_mismatch_with_bad_crc_reports_corruption() -> None:
    data = bytearray(_raw(lengths=(2, 3), streams=(b"ab", b"cde")))
    data += b"zz"  # longer than declared, and the declared CRC position no longer matches
    data[-6] ^= 1
    with pytest.raises(VQFormatError, match="corrupted"):
        unpack(bytes(data))


def test_max_stages() -> None:
    data = pack(_header(), _streams((1, 2, 3)))
    assert unpack(data, max_stages=3)[0].stages == 3
    with pytest.raises(VQFormatError, match="3 stages but the installed model has only 2"):
        unpack(data, max_stages=2)


def test_vqformaterror_is_valueerror() -> None:
    assert issubclass(VQFormatError, ValueError)


def test_non_bytes_input_is_typeerror() -> None:
    for bad in ("text", None, 3, [1, 2]):
        with pytest.raises(TypeError):
            unpack(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- pack validation


@pytest.mark.parametrize(
    "kw, streams, exc",
    [
        (dict(model_id=""), [b""], ValueError),
        (dict(model_id="x" * 65), [b""], ValueError),
        (dict(model_id="modèle"), [b""], ValueError),
        (dict(model_id="has space"), [b""], ValueError),
        (dict(model_id=5), [b""], TypeError),
        (dict(weights_hash=b"short"), [b""], ValueError),
        (dict(width=0), [b""], ValueError),
        (dict(height=65536), [b""], ValueError),
        (dict(width=3.0), [b""], TypeError),
        (dict(modality=7), [b""], ValueError),
        (dict(channel_layout=4), [b""], ValueError),
        (dict(version=2), [b""], ValueError),
        (dict(stream_lengths=(5,)), [b"abc"], ValueError),
        (dict(), [], ValueError),
        (dict(), [b""] * 33, ValueError),
        (dict(), ["text"], TypeError),
    ],
)
def test_pack_rejects_bad_fields(kw, streams, exc) -> None:
    with pytest.raises(exc):
        pack(_header(**kw), streams)


def test_pack_accepts_plain_ints_for_enums() -> None:
    data = pack(_header(modality=1, channel_layout=0), [b"x"])
    header = unpack(data)[0]
    assert header.modality is Modality.AUDIO and header.channel_layout is ChannelLayout.RGB


# ------------------------------------------------------------------------------- fuzzing


def test_fuzz_every_truncation() -> None:
    data = pack(_header(), _streams((9, 0, 4)))
    for n in range(len(data)):
        err = _only_vqformaterror(data[:n])
        assert err is not None
        if n >= 4:
            assert "truncated" in str(err)


def test_fuzz_every_single_bit_flip() -> None:
    """CRC32 detects every single-bit error, and every length field is cross-checked."""
    data = pack(_header(model_id="m1"), [b"\x00\x11", b"", b"\x22\x33\x44"])
    for bit in range(8 * len(data)):
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert _only_vqformaterror(bytes(bad)) is not None, f"bit {bit} flip accepted"


def test_fuzz_random_bytes_and_huge_lengths() -> None:
    rng = np.random.default_rng(0)
    valid = pack(_header(), _streams((30, 2)))
    for trial in range(3000):
        n = int(rng.integers(0, 120))
        junk = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        if trial % 3 == 1:  # get past the magic and version checks
            junk = MAGIC + bytes([1]) + junk
        elif trial % 3 == 2:  # random overwrite of a valid file's header bytes
            bad = bytearray(valid)
            for _ in range(int(rng.integers(1, 4))):
                bad[int(rng.integers(0, 60))] = int(rng.integers(0, 256))
            junk = bytes(bad)
        err = _only_vqformaterror(junk)
        assert err is not None or junk == valid
    # every length field set to its maximum, with a valid CRC: rejected without allocating
    for stages in (1, 32):
        assert _only_vqformaterror(_raw(lengths=(0xFFFFFFFF,) * stages, streams=())) is not None


# =============================================================================== version 2


VQVAE = ModelComponent("vqvae", "image-vqvae-f8-s8-k512-v3", hash_weights(b"vqvae weights"))
PRIOR = ModelComponent("prior", "image-prior-v3", hash_weights(b"prior weights"))
UNKNOWN_OPTIONAL = Chunk(0x9001, 0, False, b"some future side information")
UNKNOWN_REQUIRED = 0x0042


def _words(n_words: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=4 * n_words, dtype=np.uint8).tobytes()


def _image_v2(layers: int = 3, extra=(), encoder: str = "vqcodec 0.2.0") -> tuple[bytes, list[list[bytes]]]:
    streams = [[_words(k + 2, k)] for k in range(layers)]
    data = write_file(Modality.IMAGE, [VQVAE, PRIOR], ImageGeometry(768, 512), streams, extra, encoder=encoder)
    return data, streams


def _audio_v2() -> tuple[bytes, list[list[bytes]]]:
    # 2 segments x 2 channels per layer, 2 layers
    streams = [[_words(3 * k + i, 10 * k + i) for i in range(4)] for k in range(2)]
    components = [ModelComponent("vqvae", "audio-vqvae-v1", hash_weights(b"a")), ModelComponent("prior", "audio-prior-v1", hash_weights(b"b"))]
    data = write_file(Modality.AUDIO, components, AudioGeometry(44100, 2, 3 * 3600 * 44100), streams,
                      [segment_table_chunk([1000, 17]), metadata_chunk("xmp", b"<x:xmpmeta/>")])
    return data, streams


def _v(value: int) -> bytes:
    """`value` as a minimal LEB128 varint, written out here independently of the code under test."""
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value >= 0x80 else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _raw2(chunks, *, modality=0, version=2, count=None, count_bytes=None) -> bytes:
    """Hand-built v2 file with a valid CRC, bypassing write_file. Chunks are (type, flags, layer, payload)
    or (type, flags, layer, payload, length_bytes) to write the length field as given bytes."""
    body = struct.pack("<4sBB", MAGIC, version, modality)
    body += count_bytes if count_bytes is not None else _v(len(chunks) if count is None else count)
    for chunk_type, flags, layer, payload, *length_bytes in chunks:
        body += struct.pack("<HBB", chunk_type, flags, layer)
        body += length_bytes[0] if length_bytes else _v(len(payload))
        body += payload
    return body + struct.pack("<I", zlib.crc32(body))


def _model_payload(role=b"vqvae", model_id=b"m", weights_hash=HASH[:8]) -> bytes:
    return bytes([len(role)]) + role + model_id + weights_hash


def _stored(c: ModelComponent) -> ModelComponent:
    """The component as a v2 file gives it back: the first 8 bytes of its weights hash."""
    return ModelComponent(c.role, c.model_id, c.weights_hash[:V2_WEIGHTS_HASH_BYTES])


MODEL_C = (1, 1, 0, _model_payload())
GEOM_C = (2, 1, 0, struct.pack("<HHB", 4, 3, 0))
AUDIO_C = (3, 1, 0, _v(48000) + b"\x01" + _v(480))


def _stream(layer, payload=b"abcd"):
    return (4, 1, layer, payload)


def _only_read_error(data) -> VQFormatError | None:
    """Run read_file; return the VQFormatError raised (None if it parsed). Any other error fails."""
    try:
        read_file(data)
    except VQFormatError as exc:
        assert str(exc)
        return exc
    return None


# ------------------------------------------------------------------------------- v2 round trips


def test_v2_image_roundtrip() -> None:
    extra = [metadata_chunk("icc", b"\x00\x01icc profile"), metadata_chunk("exif", b""), UNKNOWN_OPTIONAL]
    data, streams = _image_v2(3, extra)
    for view in (data, bytearray(data), memoryview(data)):
        f = read_file(view)
        assert (f.version, f.modality, f.modality_name) == (2, Modality.IMAGE, "image")
        assert f.components == (_stored(VQVAE), _stored(PRIOR))  # the first 8 bytes of each hash
        assert all(hash_matches(c.weights_hash, g.weights_hash) for c, g in zip((VQVAE, PRIOR), f.components))
        assert f.geometry == ImageGeometry(768, 512, ChannelLayout.RGB)
        assert f.layers == 3
        assert [f.streams(k) for k in (1, 2, 3)] == streams
        assert all(type(s) is bytes for k in (1, 2, 3) for s in f.streams(k))
        assert dict(f.metadata) == {"icc": b"\x00\x01icc profile", "exif": b""}
        assert f.encoder_name == "vqcodec 0.2.0"
        assert f.segment_frames == ()
        assert UNKNOWN_OPTIONAL in f.chunks
    assert inspect(data) == read_file(data)
    # chunk order: MODEL x2, geometry, ENCODER, layer-0 extras, then each layer's stream
    assert [(c.type, c.layer) for c in read_file(data).chunks] == [
        (1, 0), (1, 0), (2, 0), (7, 0), (6, 0), (6, 0), (0x9001, 0), (4, 1), (4, 2), (4, 3)]


def test_v2_many_chunks_two_byte_count() -> None:
    """130 streams in a layer: the chunk count takes 2 varint bytes; every cut and header flip is refused."""
    streams = [[_words(i % 3, i) for i in range(130)], [b""] * 130]
    data = write_file(Modality.AUDIO, [VQVAE], AudioGeometry(8000, 1, 10), streams)
    assert data[6:8] == _v(1 + 1 + 260) == b"\x86\x02"
    f = read_file(data)
    assert [f.streams(1), f.streams(2)] == streams
    assert read_file(truncate(data, 1)).streams(1) == streams[0] and truncate(data, 1)[6:8] == _v(132)
    for n in range(64):
        assert "truncated" in str(_only_read_error(data[:n])) or n < 4
    for bit in range(8 * 12):
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert _only_read_error(bytes(bad)) is not None


def test_v2_audio_roundtrip() -> None:
    data, streams = _audio_v2()
    f = read_file(data)
    assert (f.version, f.modality, f.modality_name) == (2, Modality.AUDIO, "audio")
    assert f.geometry == AudioGeometry(44100, 2, 3 * 3600 * 44100)
    assert f.layers == 2 and [f.streams(1), f.streams(2)] == streams
    assert f.segment_frames == (1000, 17)
    assert next(c.payload for c in f.chunks if c.type == ChunkType.SEGMENT_TABLE) == _v(1000) + _v(17) == b"\xe8\x07\x11"
    assert next(c.payload for c in f.chunks if c.type == ChunkType.AUDIO_GEOMETRY) == _v(44100) + b"\x02" + _v(3 * 3600 * 44100)
    assert dict(f.metadata) == {"xmp": b"<x:xmpmeta/>"}
    assert [c.role for c in f.components] == ["vqvae", "prior"]
    big = write_file(Modality.AUDIO, [VQVAE], AudioGeometry(768000, 255, 1 << 40), [[b""]])
    assert read_file(big).geometry == AudioGeometry(768000, 255, 1 << 40)  # the largest: 3 + 1 + 6 bytes
    assert next(c.payload for c in read_file(big).chunks if c.type == ChunkType.AUDIO_GEOMETRY) == b"\x80\xf0\x2e\xff" + _v(1 << 40)
    huge = segment_table_chunk([0xFFFFFFFF, 1])
    assert huge.payload == b"\xff\xff\xff\xff\x0f\x01"


def test_v2_streams_accessor_bounds() -> None:
    f = read_file(_image_v2(2)[0])
    for bad in (0, 3, -1):
        with pytest.raises(ValueError, match="outside 1..2"):
            f.streams(bad)


def test_v2_byte_layout_matches_spec() -> None:
    """Offsets from FORMAT.md: 7-byte header (1-byte count), 5..9-byte chunk headers, CRC last."""
    stream = bytes(range(200))  # a 200-byte stream: a 2-byte length varint (c8 01)
    data = write_file(Modality.IMAGE, [ModelComponent("vqvae", "m", HASH)], ImageGeometry(65535, 1),
                      [[b"\x01\x02\x03\x04"], [stream]], encoder="vqcodec 0.2.0")
    assert MIN_HEADER_BYTES == 7 and MIN_CHUNK_HEADER_BYTES == 5 and MAX_VARINT_BYTES == 5
    assert data[0:4] == MAGIC and data[4] == FORMAT_VERSION == 2 and data[5] == 0
    assert data[6] == 5  # chunk count, a 1-byte varint
    assert struct.unpack_from("<HBBB", data, 7) == (ChunkType.MODEL, 1, 0, 1 + 5 + 1 + 8)
    assert data[12:27] == b"\x05vqvae" + b"m" + HASH[:8]  # role length, role, model id, hash prefix
    assert struct.unpack_from("<HBBB", data, 27) == (ChunkType.IMAGE_GEOMETRY, 1, 0, 5)
    assert struct.unpack_from("<HHB", data, 32) == (65535, 1, 0)
    assert struct.unpack_from("<HBBB", data, 37) == (ChunkType.ENCODER, 0, 0, 5)
    assert data[42:47] == b"0.2.0"  # the version only: "vqcodec " is implied
    assert struct.unpack_from("<HBBB", data, 47) == (ChunkType.STAGE_STREAM, 1, 1, 4)
    assert data[52:56] == b"\x01\x02\x03\x04"
    assert struct.unpack_from("<HBB", data, 56) == (ChunkType.STAGE_STREAM, 1, 2) and data[60:62] == b"\xc8\x01"
    assert data[62:262] == stream
    assert len(data) == 266 and struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])
    assert read_file(data).encoder_name == "vqcodec 0.2.0"


def test_v2_smallest_file() -> None:
    data = write_file(Modality.IMAGE, [ModelComponent("m", "x", HASH)], ImageGeometry(1, 1), [[b""]])
    assert len(data) == MIN_V2_FILE_BYTES == 42
    assert read_file(data).streams(1) == [b""]
    for n in range(len(data)):
        assert "truncated" in str(_only_read_error(data[:n])) or n < 4


def test_v2_framing_overhead() -> None:
    """FORMAT.md's figure: an image file spends 111 + 6L bytes on framing (streams of 128..16383 bytes)."""
    components = [ModelComponent("vqvae", "image-f8-s8-k512-v3", hash_weights(b"v")),
                  ModelComponent("prior", "image-prior-pixelcnn-v3", hash_weights(b"p"))]
    for layers, overhead in ((1, 117), (8, 159)):
        streams = [[bytes(2800)] for _ in range(layers)]
        data = write_file(Modality.IMAGE, components, ImageGeometry(768, 512), streams, encoder="vqcodec 0.2.0")
        assert len(data) - 2800 * layers == overhead == 111 + 6 * layers


def test_v2_model_hash_is_the_first_8_bytes() -> None:
    """write_file takes the 16-byte hash_weights value (or its first 8 bytes) and stores the first 8."""
    full = write_file(Modality.IMAGE, [VQVAE], ImageGeometry(4, 3), [[b""]])
    short = write_file(Modality.IMAGE, [_stored(VQVAE)], ImageGeometry(4, 3), [[b""]])
    assert full == short and V2_WEIGHTS_HASH_BYTES == 8
    (c,) = read_file(full).components
    assert c.weights_hash == hash_weights(b"vqvae weights")[:8] == hashlib.sha256(b"vqvae weights").digest()[:8]
    assert read_file(full).chunks[0].payload.endswith(c.weights_hash)


def test_hash_matches() -> None:
    installed = hash_weights(b"w")
    assert hash_matches(installed, installed) and hash_matches(installed, installed[:8])
    assert hash_matches(bytearray(installed), memoryview(installed[:8]))
    assert not hash_matches(installed, hash_weights(b"x")[:8])
    assert not hash_matches(installed, hash_weights(b"x"))
    for bad in (b"", installed[:1], installed[:7], installed[:9], installed[:15], installed + b"\0"):
        assert not hash_matches(installed, bad), len(bad)  # only 8 or 16 bytes name weights
    assert not hash_matches(installed[:8], installed)  # a shorter installed hash cannot match 16 bytes


@pytest.mark.parametrize(
    "value, encoded",
    [(0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (16383, "ff7f"), (16384, "808001"),
     ((1 << 21) - 1, "ffff7f"), (1 << 21, "80808001"), ((1 << 28) - 1, "ffffff7f"), (1 << 28, "8080808001"),
     (0xFFFFFFFF, "ffffffff0f"), (1 << 40, "808080808020")],
)
def test_varint_encoding(value: int, encoded: str) -> None:
    raw = bytes.fromhex(encoded)
    assert encode_uvarint(value) == _v(value) == raw
    assert read_uvarint(b"\xaa" + raw + b"\xbb", 1, 1 + len(raw), max_bytes=6) == (value, 1 + len(raw))
    if len(raw) > 1:
        with pytest.raises(VarintTruncated):
            read_uvarint(raw, 0, len(raw) - 1, max_bytes=6)


@pytest.mark.parametrize(
    "raw, message",
    [("8000", "not minimal"), ("ff00", "not minimal"), ("808000", "not minimal"), ("8180808000", "not minimal"),
     ("808080808001", "longer than 5 bytes"), ("ffffffffff7f", "longer than 5 bytes"), ("", "runs past"), ("80", "runs past")],
)
def test_varint_is_minimal_and_at_most_5_bytes(raw: str, message: str) -> None:
    data = bytes.fromhex(raw)
    with pytest.raises(Invalid, match=message):
        read_uvarint(data, 0, len(data))


GOLDEN_V2 = (
    # header: magic, version 2, modality 0 (image), chunk count 7 (varint)
    "89565143" "02" "00" "07"
    # MODEL (type 1, must-understand, layer 0, length 25): role length 5, "vqvae", model id "image-f8-v8"
    # (the rest but the hash), sha256(b"vqvae")[:8]
    "0100" "01" "00" "19" "05" "7671766165" "696d6167652d66382d7638" "eb754efa69e82d14"
    # MODEL (24 bytes): "prior", "image-p-v8", sha256(b"prior")[:8]
    "0100" "01" "00" "18" "05" "7072696f72" "696d6167652d702d7638" "e5bade0e979cb8cf"
    # IMAGE_GEOMETRY (type 2, 5 bytes): width 3 (u16), height 2 (u16), RGB
    "0200" "01" "00" "05" "0300" "0200" "00"
    # ENCODER (type 7, optional, 4 bytes): version "test" (read as "vqcodec test")
    "0700" "00" "00" "04" "74657374"
    # METADATA (type 6, optional, 8 bytes): key "icc", value 00 01 02 03
    "0600" "00" "00" "08" "03" "696363" "00010203"
    # STAGE_STREAM (type 4, must-understand) of layer 1 (4 bytes) and layer 2 (132 bytes: varint 84 01)
    "0400" "01" "01" "04" "efbeadde"
    "0400" "01" "02" "8401" + "00000000ffffffff" * 16 + "01020304"
    # CRC-32 of everything before
    + "f2be3835"
)


def test_v2_golden_bytes() -> None:
    """The exact bytes of one small v2 file: the layout cannot drift silently."""
    data = write_file(
        Modality.IMAGE,
        [ModelComponent("vqvae", "image-f8-v8", hash_weights(b"vqvae")),
         ModelComponent("prior", "image-p-v8", hash_weights(b"prior"))],
        ImageGeometry(3, 2),
        [[b"\xef\xbe\xad\xde"], [(b"\x00" * 4 + b"\xff" * 4) * 16 + b"\x01\x02\x03\x04"]],
        [metadata_chunk("icc", b"\x00\x01\x02\x03")],
        encoder="vqcodec test",
    )
    assert data.hex() == GOLDEN_V2
    f = read_file(bytes.fromhex(GOLDEN_V2))
    assert f.encoder_name == "vqcodec test" and len(f.streams(2)[0]) == 132
    assert [c.model_id for c in f.components] == ["image-f8-v8", "image-p-v8"]


# ------------------------------------------------------------------------------- v2 truncation


def test_v2_truncate_every_layer_keeps_optional_chunks() -> None:
    layer2_note = Chunk(0x9002, 2, False, b"belongs to layer 2")
    extra = [metadata_chunk("exif", b"Exif\0\0"), UNKNOWN_OPTIONAL, layer2_note]
    data, streams = _image_v2(4, extra)
    full = read_file(data)
    for k in range(1, 5):
        cut = truncate(data, k)
        f = read_file(cut)
        assert f.layers == k and [f.streams(j) for j in range(1, k + 1)] == streams[:k]
        assert (f.components, f.geometry, f.metadata, f.encoder_name) == (
            full.components, full.geometry, full.metadata, full.encoder_name)
        assert UNKNOWN_OPTIONAL in f.chunks
        assert (layer2_note in f.chunks) == (k >= 2)
        assert f.chunks == tuple(c for c in full.chunks if c.layer <= k)  # order unchanged
        assert truncate(cut, 1) == truncate(data, 1)  # truncation composes
        assert truncate(cut, k) == cut
    assert truncate(data, 4) == data  # canonical: re-serializing gives the same bytes
    assert truncate(bytearray(data), 2) == truncate(data, 2)


def test_v2_truncate_audio_keeps_every_stream_of_kept_layers() -> None:
    data, streams = _audio_v2()
    f = read_file(truncate(data, 1))
    assert f.layers == 1 and f.streams(1) == streams[0] and f.segment_frames == (1000, 17)


@pytest.mark.parametrize("layers", [0, -1, 4])
def test_v2_truncate_rejects_bad_layer_count(layers: int) -> None:
    data = _image_v2(3)[0]
    with pytest.raises(ValueError, match="choose 1..3"):
        truncate(data, layers)


def test_v2_truncate_rejects_non_int_and_bad_files() -> None:
    data = _image_v2(2)[0]
    for bad in (True, 1.0, "1"):
        with pytest.raises(TypeError):
            truncate(data, bad)  # type: ignore[arg-type]
    broken = bytearray(data)
    broken[-9] ^= 1
    with pytest.raises(VQFormatError, match="CRC mismatch"):
        truncate(bytes(broken), 1)


def test_v1_file_stays_v1_when_truncated() -> None:
    data = pack(_header(), _streams((8, 4, 12)))
    cut = truncate(data, 2)
    assert cut[4] == 1 and read_file(cut).version == 1
    assert cut == pack(_header(), _streams((8, 4, 12))[:2])


# ------------------------------------------------------------------------------- unknown chunks


def test_unknown_must_understand_chunk_is_refused_with_upgrade_message() -> None:
    data = _image_v2(2, [Chunk(UNKNOWN_REQUIRED, 0, True, b"new feature")])[0]
    with pytest.raises(VQFormatError, match=r"chunk type 66 \(0x0042\).*made by a newer vqcodec; upgrade vqcodec"):
        read_file(data)
    # the same in a quality layer, in a file built by hand
    raw = _raw2([MODEL_C, GEOM_C, _stream(1), (0x7FFF, 1, 1, b"")])
    with pytest.raises(VQFormatError, match="32767.*upgrade vqcodec"):
        read_file(raw)
    # truncation is defined by the framing, so it still works and keeps the chunk
    cut = truncate(_image_v2(2, [Chunk(UNKNOWN_REQUIRED, 2, True, b"x")])[0], 1)
    assert read_file(cut).layers == 1  # the layer-2 chunk went with its layer
    kept = truncate(data, 1)  # a layer-0 one stays
    with pytest.raises(VQFormatError, match="upgrade vqcodec"):
        read_file(kept)


def test_unknown_optional_chunk_is_skipped_and_preserved() -> None:
    plain = _image_v2(2)[0]
    data = _image_v2(2, [UNKNOWN_OPTIONAL, Chunk(0x0100, 1, False, b"\x00" * 5)])[0]
    f, g = read_file(data), read_file(plain)
    assert (f.components, f.geometry, f.layers, f.streams(1), f.streams(2)) == (
        g.components, g.geometry, g.layers, g.streams(1), g.streams(2))
    unknown = [c for c in f.chunks if not c.known]
    assert unknown == [UNKNOWN_OPTIONAL, Chunk(0x0100, 1, False, b"\x00" * 5)]
    assert truncate(data, 2) == data


# ------------------------------------------------------------------------------- v2 errors


V2_ERRORS = [
    (_raw2([MODEL_C, GEOM_C, _stream(1)])[:9], "truncated"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)], version=3), "format version 3 is newer than this vqcodec supports \\(2\\); upgrade"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)], count=0xFFFFFFFF), "chunk count 4294967295 exceeds"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)], count=MAX_CHUNKS + 1), "chunk count 16777217 exceeds 16777216"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)], count=MAX_CHUNKS), "truncated: expected at least 83886094 bytes"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)], count=4), "truncated"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)], count=2), "unexpected bytes|corrupted"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)], count=4)[:-4] + struct.pack("<HBB", 4, 1, 1) + _v(0xFFFFFFFF) + b"\0" * 4,
     "truncated: expected at least 4294967354 bytes of file \\(chunk 4 of 4 declares a 4294967295-byte payload\\)"),
    # varints: minimal, at most 5 bytes, within the field's bound, not running into the CRC
    (_raw2([MODEL_C, GEOM_C, _stream(1)], count_bytes=b"\x83\x00"), "chunk count: varint of 2 bytes is not minimal"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)], count_bytes=b"\x83\x80\x80\x80\x00"), "chunk count: varint of 5 bytes is not minimal"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)], count_bytes=_v(1 << 28)), "chunk count 268435456 exceeds"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)], count_bytes=b"\x80" * 5 + b"\x03"), "chunk count: varint is longer than 5 bytes"),
    (MAGIC + b"\x02\x00" + b"\x80" * 8, "truncated: expected at least 15 bytes of file \\(the chunk count runs into the CRC\\)"),
    (_raw2([MODEL_C, GEOM_C, (4, 1, 1, b"abcd", b"\x84\x00")]), "length of chunk 3 of 3: varint of 2 bytes is not minimal"),
    (_raw2([MODEL_C, GEOM_C, (4, 1, 1, b"", b"\x80\x00")]), "length of chunk 3 of 3: varint of 2 bytes is not minimal"),
    (_raw2([(1, 1, 0, _model_payload(), b"\x8f\x80\x80\x80\x00"), GEOM_C, _stream(1)]), "length of chunk 1 of 3: varint of 5 bytes is not minimal"),
    (_raw2([MODEL_C, GEOM_C, (4, 1, 1, b"", b"\x80" * 5 + b"\x00")]), "length of chunk 3 of 3: varint is longer than 5 bytes"),
    (_raw2([MODEL_C, GEOM_C, (4, 1, 1, b"", b"\xff" * 9 + b"\x01")]), "varint is longer than 5 bytes"),
    (_raw2([MODEL_C, GEOM_C, (4, 1, 1, b"", _v(1 << 32))]), "chunk 3 of 3 declares a 4294967296-byte payload, above the format's 4294967295"),
    (_raw2([MODEL_C, GEOM_C, (4, 1, 1, b"", _v((1 << 35) - 1))]), "declares a 34359738367-byte payload, above"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)], count=4)[:-4] + struct.pack("<HBB", 4, 1, 1) + b"\x80\x80" + b"\0" * 4,
     "truncated: expected at least 57 bytes of file \\(the length of chunk 4 of 4 runs into the CRC\\)"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)])[:-1], "truncated"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)]) + b"\0", "1 unexpected bytes after the end"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)])[:-4] + b"\0\0\0\0", "CRC mismatch"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)], modality=5), "unknown modality 5.*upgrade vqcodec"),
    (_raw2([MODEL_C, GEOM_C, (0, 1, 1, b"")]), "type 0, which is invalid"),
    (_raw2([MODEL_C, GEOM_C, (4, 3, 1, b"")]), "reserved flag bits"),
    (_raw2([MODEL_C, GEOM_C, (0x9000, 0x80, 1, b"")]), "reserved flag bits"),
    # layer order and layer structure
    (_raw2([MODEL_C, GEOM_C, _stream(2), _stream(1)]), "layer 1 after a chunk of layer 2.*non-decreasing"),
    (_raw2([MODEL_C, _stream(1), GEOM_C]), "layer 0 after a chunk of layer 1"),
    (_raw2([MODEL_C, GEOM_C, _stream(1), (6, 0, 0, b"\x01kv")]), "non-decreasing"),
    (_raw2([MODEL_C, GEOM_C, _stream(1), _stream(3)]), "layer 2 has no STAGE_STREAM"),
    (_raw2([MODEL_C, GEOM_C, _stream(2)]), "layer 1 has no STAGE_STREAM"),
    (_raw2([MODEL_C, GEOM_C]), "no STAGE_STREAM"),
    (_raw2([MODEL_C, GEOM_C, _stream(1), (0x9000, 0, 2, b"")]), "layer 2, but the file's streams stop at layer 1"),
    (_raw2([MODEL_C, GEOM_C, _stream(1), _stream(1)]), "image quality layer 1 has 2 STAGE_STREAM"),
    (_raw2([MODEL_C, GEOM_C, (4, 1, 0, b"")]), "STAGE_STREAM \\(type 4\\) chunk has layer 0"),
    (_raw2([MODEL_C, GEOM_C, _stream(1, b"abc")]), "not a whole number of 32-bit words"),
    # required and repeated chunks
    (_raw2([GEOM_C, _stream(1)]), "no MODEL chunk"),
    (_raw2([MODEL_C, _stream(1)]), "exactly one geometry chunk, IMAGE_GEOMETRY; it has none"),
    (_raw2([MODEL_C, GEOM_C, GEOM_C, _stream(1)]), "IMAGE_GEOMETRY, IMAGE_GEOMETRY"),
    (_raw2([MODEL_C, AUDIO_C, _stream(1)]), "it has AUDIO_GEOMETRY"),
    (_raw2([MODEL_C, GEOM_C, _stream(1)], modality=1), "audio file needs exactly one geometry chunk, AUDIO_GEOMETRY"),
    (_raw2([MODEL_C, GEOM_C, AUDIO_C, _stream(1)], modality=1), "IMAGE_GEOMETRY, AUDIO_GEOMETRY"),
    (_raw2([MODEL_C, MODEL_C, GEOM_C, _stream(1)]), "second MODEL chunk for role 'vqvae'"),
    (_raw2([MODEL_C, GEOM_C, (5, 1, 0, b"\x01"), _stream(1)]), "SEGMENT_TABLE chunk in an image file"),
    (_raw2([MODEL_C, AUDIO_C, (5, 1, 0, b"\x01"), (5, 1, 0, b"\x01"), _stream(1)], modality=1), "second SEGMENT_TABLE"),
    (_raw2([MODEL_C, GEOM_C, (6, 0, 0, b"\x01k"), (6, 0, 0, b"\x01kv"), _stream(1)]), "second METADATA chunk with key 'k'"),
    (_raw2([MODEL_C, GEOM_C, (7, 0, 0, b"a"), (7, 0, 0, b"b"), _stream(1)]), "second ENCODER"),
    # flags and layers of known types
    (_raw2([(1, 0, 0, _model_payload()), GEOM_C, _stream(1)]), "MODEL \\(type 1\\) chunk must have its must-understand flag set"),
    (_raw2([MODEL_C, GEOM_C, (6, 1, 0, b"\x01k"), _stream(1)]), "METADATA \\(type 6\\) chunk must have its must-understand flag clear"),
    (_raw2([MODEL_C, GEOM_C, _stream(1), (1, 1, 1, _model_payload(role=b"prior"))]), "MODEL \\(type 1\\) chunk has layer 1; it must have layer 0"),
    # payloads
    (_raw2([(1, 1, 0, b""), GEOM_C, _stream(1)]), "MODEL payload is empty"),
    (_raw2([(1, 1, 0, _model_payload(role=b"")), GEOM_C, _stream(1)]), "role length 0"),
    (_raw2([(1, 1, 0, _model_payload(role=b"r" * 17)), GEOM_C, _stream(1)]), "role length 17"),
    (_raw2([(1, 1, 0, b"\x10ab"), GEOM_C, _stream(1)]), "MODEL payload is 3 bytes: with role length 16 .* model id length -22"),
    (_raw2([(1, 1, 0, _model_payload(role=b"a b")), GEOM_C, _stream(1)]), "visible ASCII"),
    (_raw2([(1, 1, 0, _model_payload(model_id=b"")), GEOM_C, _stream(1)]), "MODEL payload is 14 bytes: .*model id length 0, outside 1..64"),
    (_raw2([(1, 1, 0, _model_payload(model_id=b"x" * 65)), GEOM_C, _stream(1)]), "model id length 65"),
    (_raw2([(1, 1, 0, _model_payload(model_id=b"\xff")), GEOM_C, _stream(1)]), "visible ASCII"),
    (_raw2([(1, 1, 0, _model_payload(model_id=b"m\x01")), GEOM_C, _stream(1)]), "visible ASCII"),
    (_raw2([(1, 1, 0, _model_payload()[:-1]), GEOM_C, _stream(1)]), "MODEL payload is 14 bytes"),
    (_raw2([(1, 1, 0, _model_payload(weights_hash=HASH)), GEOM_C, _stream(1)]), "visible ASCII"),  # a 16-byte hash is not v2
    (_raw2([MODEL_C, (2, 1, 0, struct.pack("<HHB", 4, 3, 0) + b"\0"), _stream(1)]), "IMAGE_GEOMETRY payload is 6 bytes; it must be 5"),
    (_raw2([MODEL_C, (2, 1, 0, struct.pack("<IIB", 4, 3, 0)), _stream(1)]), "IMAGE_GEOMETRY payload is 9 bytes; it must be 5"),
    (_raw2([MODEL_C, (2, 1, 0, struct.pack("<HHB", 0, 3, 0)), _stream(1)]), "image size 0x3"),
    (_raw2([MODEL_C, (2, 1, 0, struct.pack("<HHB", 4, 0, 0)), _stream(1)]), "image size 4x0"),
    (_raw2([MODEL_C, (2, 1, 0, struct.pack("<HHB", 4, 3, 4)), _stream(1)]), "unknown channel layout 4.*upgrade vqcodec"),
    (_raw2([MODEL_C, (3, 1, 0, _v(0) + b"\x01" + _v(1)), _stream(1)], modality=1), "sample rate 0 Hz"),
    (_raw2([MODEL_C, (3, 1, 0, _v(768001) + b"\x01" + _v(1)), _stream(1)], modality=1), "sample rate 768001"),
    (_raw2([MODEL_C, (3, 1, 0, _v(1 << 21) + b"\x01" + _v(1)), _stream(1)], modality=1), "varint is longer than 3 bytes"),
    (_raw2([MODEL_C, (3, 1, 0, b"\xc0\xbb\x82\x00" + b"\x01" + _v(1)), _stream(1)], modality=1), "longer than 3 bytes"),
    (_raw2([MODEL_C, (3, 1, 0, b"\xc0\xbb\x80\x00" + b"\x01" + _v(1)), _stream(1)], modality=1), "longer than 3 bytes"),
    (_raw2([MODEL_C, (3, 1, 0, b"\xc0\x80\x00" + b"\x01" + _v(1)), _stream(1)], modality=1), "not minimal"),
    (_raw2([MODEL_C, (3, 1, 0, _v(8000) + b"\x00" + _v(1)), _stream(1)], modality=1), "channel count 0"),
    (_raw2([MODEL_C, (3, 1, 0, _v(8000) + b"\x01" + _v(0)), _stream(1)], modality=1), "sample count 0"),
    (_raw2([MODEL_C, (3, 1, 0, _v(8000) + b"\x01" + _v((1 << 40) + 1)), _stream(1)], modality=1), "sample count 1099511627777"),
    (_raw2([MODEL_C, (3, 1, 0, _v(8000) + b"\x01" + _v(1 << 42)), _stream(1)], modality=1), "longer than 6 bytes"),
    (_raw2([MODEL_C, (3, 1, 0, _v(8000) + b"\x01" + b"\x81\x00"), _stream(1)], modality=1), "not minimal"),
    (_raw2([MODEL_C, (3, 1, 0, _v(8000) + b"\x01" + _v(1) + b"\0"), _stream(1)], modality=1), "1 bytes after its last field"),
    (_raw2([MODEL_C, (3, 1, 0, _v(8000) + b"\x01"), _stream(1)], modality=1), "AUDIO_GEOMETRY payload of 3 bytes: varint runs past"),
    (_raw2([MODEL_C, (3, 1, 0, _v(8000)), _stream(1)], modality=1), "AUDIO_GEOMETRY payload of 2 bytes: no channel count"),
    (_raw2([MODEL_C, (3, 1, 0, b""), _stream(1)], modality=1), "AUDIO_GEOMETRY payload of 0 bytes: varint runs past"),
    (_raw2([MODEL_C, (3, 1, 0, struct.pack("<IHQ", 8000, 1, 1)), _stream(1)], modality=1), "AUDIO_GEOMETRY"),
    (_raw2([MODEL_C, AUDIO_C, (5, 1, 0, b""), _stream(1)], modality=1), "SEGMENT_TABLE payload is 0 bytes"),
    (_raw2([MODEL_C, AUDIO_C, (5, 1, 0, b"\x01\x81"), _stream(1)], modality=1), "segment 2: varint runs past"),
    (_raw2([MODEL_C, AUDIO_C, (5, 1, 0, b"\x01\x00"), _stream(1)], modality=1), "segment 2 has 0 frames"),
    (_raw2([MODEL_C, AUDIO_C, (5, 1, 0, b"\x81\x00"), _stream(1)], modality=1), "segment 1: varint of 2 bytes is not minimal"),
    (_raw2([MODEL_C, AUDIO_C, (5, 1, 0, _v(1 << 32)), _stream(1)], modality=1), "segment 1 has 4294967296 frames"),
    (_raw2([MODEL_C, AUDIO_C, (5, 1, 0, b"\x80" * 5 + b"\x01"), _stream(1)], modality=1), "longer than 5 bytes"),
    (_raw2([MODEL_C, GEOM_C, (6, 0, 0, b""), _stream(1)]), "METADATA payload is empty"),
    (_raw2([MODEL_C, GEOM_C, (6, 0, 0, b"\x00v"), _stream(1)]), "metadata key length 0"),
    (_raw2([MODEL_C, GEOM_C, (6, 0, 0, b"\x05ab"), _stream(1)]), "key length 5 runs past"),
    (_raw2([MODEL_C, GEOM_C, (6, 0, 0, b"\x02a\n"), _stream(1)]), "visible ASCII"),
    (_raw2([MODEL_C, GEOM_C, (7, 0, 0, b""), _stream(1)]), "encoder version length 0"),
    (_raw2([MODEL_C, GEOM_C, (7, 0, 0, b"a\tb"), _stream(1)]), "visible ASCII"),
    (_raw2([MODEL_C, GEOM_C, (7, 0, 0, b"0.2 beta"), _stream(1)]), "visible ASCII"),
    (_raw2([MODEL_C, GEOM_C, (7, 0, 0, b"x" * 65), _stream(1)]), "encoder version length 65"),
]


@pytest.mark.parametrize("data, message", V2_ERRORS)
def test_v2_specific_errors(data: bytes, message: str) -> None:
    with pytest.raises(VQFormatError, match=message) as info:
        read_file(data)
    assert "upgrade" in str(info.value) or "truncated" in str(info.value) or "corrupted" in str(info.value) \
        or "cut the file" in str(info.value)


def test_v2_hand_built_file_matches_write_file() -> None:
    """_raw2 and write_file agree, so the error cases above differ from a valid file only where they say."""
    data = _raw2([MODEL_C, GEOM_C, _stream(1)])
    assert data == write_file(Modality.IMAGE, [ModelComponent("vqvae", "m", HASH)], ImageGeometry(4, 3), [[b"abcd"]])


def test_v2_semantic_errors_come_after_crc() -> None:
    """A flipped bit is reported as corruption (CRC), never as a field's meaning."""
    data = bytearray(_raw2([MODEL_C, GEOM_C, _stream(1)]))
    data[5] = 9  # modality byte: would be "unknown modality" with a valid CRC
    with pytest.raises(VQFormatError, match="CRC mismatch"):
        read_file(bytes(data))


def test_v2_verify_crc_false_reads_a_damaged_file() -> None:
    data, streams = _image_v2(2)
    broken = bytearray(data)
    broken[-6] ^= 0x10  # inside the last stream
    f = read_file(bytes(broken), verify_crc=False)
    assert f.streams(1) == streams[0] and f.streams(2) != streams[1]
    with pytest.raises(VQFormatError, match="CRC mismatch"):
        read_file(bytes(broken))
    with pytest.raises(VQFormatError, match="truncated"):
        read_file(data[:-1], verify_crc=False)  # the size is still checked


def test_v2_file_refused_by_v1_api() -> None:
    data = _image_v2(1)[0]
    for reader in (unpack, read_header):
        with pytest.raises(VQFormatError, match="format-version-2.*use vqcodec.bitstream.read_file"):
            reader(data)


# ------------------------------------------------------------------------------- v1 through read_file


def test_v1_file_through_read_file() -> None:
    streams = _streams((8, 0, 12))
    data = pack(_header(), streams)
    f = read_file(data)
    assert (f.version, f.modality, f.layers) == (1, Modality.IMAGE, 3)
    assert f.components == (ModelComponent("model", MODEL, HASH),)
    assert f.geometry == ImageGeometry(768, 512, ChannelLayout.RGB)
    assert [f.streams(k) for k in (1, 2, 3)] == [[s] for s in streams]
    assert (dict(f.metadata), f.encoder_name, f.segment_frames) == ({}, "", ())
    assert [(c.type, c.layer) for c in f.chunks] == [(1, 0), (2, 0), (4, 1), (4, 2), (4, 3)]
    # the same content written as version 2 reads back equal, except for the version and the hash,
    # which version 2 cuts to its first 8 bytes (the MODEL chunk f lists already holds those 8)
    v2 = write_file(f.modality, f.components, f.geometry, [f.streams(k) for k in (1, 2, 3)])
    assert dataclasses.replace(read_file(v2), version=1, components=f.components) == f
    assert read_file(v2).components == (ModelComponent("model", MODEL, HASH[:8]),)
    broken = bytearray(data)
    broken[-6] ^= 1
    assert read_file(bytes(broken), verify_crc=False).streams(3) != [streams[2]]


def test_release_files_read_the_same_through_read_file() -> None:
    """The .vq files vqcodec 0.1.0 wrote (version 1): read_file gives unpack's streams."""
    from pathlib import Path

    files = sorted((Path(__file__).parent / "data").glob("release_v0.1.0/*.vq"))  # later releases: version 2
    assert files
    for path in files:
        data = path.read_bytes()
        header, streams = unpack(data)
        f = read_file(data)
        assert f.version == 1 and f.layers == header.stages
        assert [f.streams(k) for k in range(1, f.layers + 1)] == [[s] for s in streams]
        assert f.components == (ModelComponent("model", header.model_id, header.weights_hash),)
        assert truncate(data, 1) == pack(dataclasses.replace(header, stream_lengths=()), streams[:1])


def test_v1_audio_modality_is_refused_by_read_file() -> None:
    data = pack(_header(modality=Modality.AUDIO), [b"x"])
    assert unpack(data)[0].modality == Modality.AUDIO  # the v1 path keeps its old behaviour
    with pytest.raises(VQFormatError, match="version-1 file says it holds audio"):
        read_file(data)


# ------------------------------------------------------------------------------- v2 fuzzing


def _fuzz_file() -> bytes:
    """A small audio file with every known type, an unknown one, and 1- and 2-byte varints."""
    return write_file(
        Modality.AUDIO, [ModelComponent("vqvae", "a1", HASH), ModelComponent("prior", "p1", HASH)],
        AudioGeometry(16000, 2, 1234), [[b"\x00\x11\x22\x33", b""], [bytes(range(128, 256)), b"\x55" * 4]],
        [segment_table_chunk([7]), metadata_chunk("k", b"v"), Chunk(0x9000, 1, False, b"u")], encoder="vqcodec e",
    )


def test_v2_fuzz_every_truncation() -> None:
    data = _fuzz_file()
    for n in range(len(data)):
        err = _only_read_error(data[:n])
        assert err is not None
        if n >= 4:
            assert "truncated" in str(err), (n, str(err))


def test_v2_fuzz_every_single_bit_flip() -> None:
    data = _fuzz_file()
    for bit in range(8 * len(data)):
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert _only_read_error(bytes(bad)) is not None, f"bit {bit} flip accepted"
        with pytest.raises(VQFormatError):
            truncate(bytes(bad), 1)


def test_v2_fuzz_random_bytes_and_overwrites() -> None:
    rng = np.random.default_rng(1)
    valid = _fuzz_file()
    reference = read_file(valid)
    for trial in range(3000):
        n = int(rng.integers(0, 160))
        junk = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        if trial % 3 == 1:  # past the magic and version checks
            junk = MAGIC + bytes([2]) + junk
        elif trial % 3 == 2:  # random overwrites of a valid file
            bad = bytearray(valid)
            for _ in range(int(rng.integers(1, 4))):
                bad[int(rng.integers(0, len(bad)))] = int(rng.integers(0, 256))
            junk = bytes(bad)
        err = _only_read_error(junk)
        assert err is not None or read_file(junk) == reference


def test_v2_fuzz_valid_crc_with_random_chunk_headers() -> None:
    """Random framing fields with a *valid* CRC get past the CRC: still only VQFormatError."""
    rng = np.random.default_rng(2)
    for _ in range(2000):
        chunks = []
        for _ in range(int(rng.integers(0, 6))):
            chunk_type = int(rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 0x9000, int(rng.integers(0, 65536))]))
            payload = rng.integers(0, 256, size=int(rng.integers(0, 30)), dtype=np.uint8).tobytes()
            chunk = (chunk_type, int(rng.integers(0, 4)), int(rng.integers(0, 3)), payload)
            if rng.random() < 0.2:  # a random length field: non-minimal, too long, or not this payload's
                chunk += (rng.integers(0, 256, size=int(rng.integers(1, 8)), dtype=np.uint8).tobytes(),)
            chunks.append(chunk)
        count_bytes = rng.integers(0, 256, size=int(rng.integers(1, 7)), dtype=np.uint8).tobytes() if rng.random() < 0.1 else None
        data = _raw2(chunks, modality=int(rng.integers(0, 3)), count_bytes=count_bytes)
        _only_read_error(data)


def test_v2_huge_declared_lengths_are_rejected() -> None:
    """Maximal declared sizes in a tiny file: rejected from the framing, fast and without allocating."""
    head = MAGIC + bytes([2, 0])
    cases = [head + _v(count) + b"\0" * 20 for count in (MAX_CHUNKS, MAX_CHUNKS + 1, 0xFFFFFFFF, (1 << 35) - 1)]
    one_stream = _raw2([(4, 1, 1, b"")], count=1)[:-5]  # the stream's header without its length
    for length in (0xFFFFFFFF, 0x7FFFFFFF, 1 << 28, 5):
        cases.append(one_stream + _v(length) + b"\0" * 4)
        cases.append(_raw2([MODEL_C, GEOM_C, (4, 1, 1, b"", _v(length))]))  # with a valid CRC
    cases.append(one_stream + _v(1 << 32) + b"\0" * 4)  # over the bound
    cases.append(_raw2([(0x9000, 0, 0, b"", _v(0xFFFFFFFF))] * 3, count=3))
    _only_read_error(cases[0])  # warm up (imports, caches) before measuring
    tracemalloc.start()
    try:
        start = time.perf_counter()
        for data in cases:
            err = _only_read_error(data)
            assert err is not None and ("truncated" in str(err) or "exceeds" in str(err) or "above" in str(err))
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"reading {len(cases)} tiny files allocated {peak} bytes"
    assert elapsed < 1.0, f"{elapsed:.3f} s for {len(cases)} tiny files"


def test_v2_every_bit_matters() -> None:
    """One file has one byte form: with the CRC unchecked, every single-bit flip outside the CRC is
    refused or parses to a different file (minimal varints, no ignored bit), never to the same one."""
    data = _fuzz_file()
    reference = read_file(data)
    for bit in range(8 * (len(data) - 4)):
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << (bit % 8)
        try:
            parsed = read_file(bytes(bad), verify_crc=False)
        except VQFormatError:
            continue
        assert parsed != reference, f"bit {bit} flip parses to the same file"


# ------------------------------------------------------------------------------- v2 writing


@pytest.mark.parametrize(
    "kw, exc, message",
    [
        (dict(modality=7), ValueError, "unknown modality"),
        (dict(modality=True), TypeError, "modality"),
        (dict(components=[]), ValueError, "no MODEL chunk"),
        (dict(components=[VQVAE, VQVAE]), ValueError, "second MODEL chunk for role 'vqvae'"),
        (dict(components=[("vqvae", "m", HASH)]), TypeError, "ModelComponent"),
        (dict(geometry=(4, 3)), TypeError, "geometry"),
        (dict(geometry=AudioGeometry(8000, 1, 10)), ValueError, "exactly one geometry chunk"),
        (dict(layer_streams=[]), ValueError, "1..255 quality layers"),
        (dict(layer_streams=[[]]), ValueError, "layer 1 has no streams"),
        (dict(layer_streams=[[b"abcd"], []]), ValueError, "layer 2 has no streams"),
        (dict(layer_streams=[[b"abcd", b"abcd"]]), ValueError, "image quality layer 1 has 2"),
        (dict(layer_streams=[[b"abc"]]), ValueError, "32-bit words"),
        (dict(layer_streams=[b"abcd"]), TypeError, "not one stream"),
        (dict(layer_streams=[["abcd"]]), TypeError, "bytes-like"),
        (dict(layer_streams=[[b""]] * 256), ValueError, "1..255"),
        (dict(extra_chunks=[metadata_chunk("k", b""), metadata_chunk("k", b"")]), ValueError, "second METADATA"),
        (dict(extra_chunks=[segment_table_chunk([1])]), ValueError, "SEGMENT_TABLE chunk in an image file"),
        (dict(extra_chunks=[Chunk(ChunkType.STAGE_STREAM, 1, True, b"")]), ValueError, "come from write_file's arguments"),
        (dict(extra_chunks=[Chunk(ChunkType.MODEL, 0, True, b"")]), ValueError, "come from write_file's arguments"),
        (dict(extra_chunks=[Chunk(ChunkType.METADATA, 0, True, b"\x01k")]), ValueError, "flag clear"),
        (dict(extra_chunks=[Chunk(0x9000, 2, False, b"")]), ValueError, "streams stop at layer 1"),
        (dict(extra_chunks=[b"raw"]), TypeError, "Chunk"),
        (dict(encoder="vqcodec é"), ValueError, "not ASCII"),
        (dict(encoder="vqcodec " + "x" * 65), ValueError, "encoder version length 65"),
        (dict(encoder="vqcodec "), ValueError, "encoder version length 0"),
        (dict(encoder="vqcodec 0.2 beta"), ValueError, "visible ASCII"),
        (dict(encoder="other 1.0"), ValueError, "must be 'vqcodec ' followed by the version"),
        (dict(encoder="vqcodec"), ValueError, "must be 'vqcodec ' followed by the version"),
        (dict(encoder=b"vqcodec 1"), TypeError, "encoder name must be str"),
    ],
)
def test_write_file_rejects_bad_arguments(kw, exc, message) -> None:
    args = dict(modality=Modality.IMAGE, components=[VQVAE], geometry=ImageGeometry(4, 3), layer_streams=[[b"abcd"]])
    args.update(kw)
    with pytest.raises(exc, match=message):
        write_file(**args)


def test_write_file_may_write_unknown_must_understand_chunks() -> None:
    """A newer or experimental feature: this vqcodec writes it, and refuses to read it."""
    data = _image_v2(1, [Chunk(0x8000, 0, True, b"experimental")])[0]
    with pytest.raises(VQFormatError, match="upgrade vqcodec"):
        read_file(data)


@pytest.mark.parametrize(
    "make, exc",
    [
        (lambda: Chunk(0, 0, False, b""), ValueError),
        (lambda: Chunk(0x10000, 0, False, b""), ValueError),
        (lambda: Chunk(1, 256, True, b""), ValueError),
        (lambda: Chunk(1, -1, True, b""), ValueError),
        (lambda: Chunk(1, 0, 1, b""), TypeError),
        (lambda: Chunk(1, 0, True, "text"), TypeError),
        (lambda: Chunk(1.0, 0, True, b""), TypeError),
        (lambda: ModelComponent("", "m", HASH), ValueError),
        (lambda: ModelComponent("r" * 17, "m", HASH), ValueError),
        (lambda: ModelComponent("vq vae", "m", HASH), ValueError),
        (lambda: ModelComponent("vqvae", "", HASH), ValueError),
        (lambda: ModelComponent("vqvae", "x" * 65, HASH), ValueError),
        (lambda: ModelComponent("vqvae", "modèle", HASH), ValueError),
        (lambda: ModelComponent("vqvae", 5, HASH), TypeError),
        (lambda: ModelComponent("vqvae", "m", b"short"), ValueError),
        (lambda: ModelComponent("vqvae", "m", HASH[:12]), ValueError),
        (lambda: ModelComponent("vqvae", "m", HASH + b"\0"), ValueError),
        (lambda: ModelComponent("vqvae", "m", "0" * 16), TypeError),
        (lambda: ImageGeometry(0, 1), ValueError),
        (lambda: ImageGeometry(1, 65536), ValueError),
        (lambda: ImageGeometry(1.0, 1), TypeError),
        (lambda: ImageGeometry(1, 1, 4), ValueError),
        (lambda: AudioGeometry(0, 1, 1), ValueError),
        (lambda: AudioGeometry(768001, 1, 1), ValueError),
        (lambda: AudioGeometry(8000, 256, 1), ValueError),
        (lambda: AudioGeometry(8000, 1, 0), ValueError),
        (lambda: AudioGeometry(8000, 1, (1 << 40) + 1), ValueError),
        (lambda: AudioGeometry(8000.0, 1, 1), TypeError),
        (lambda: segment_table_chunk([]), ValueError),
        (lambda: segment_table_chunk([0]), ValueError),
        (lambda: segment_table_chunk([1 << 32]), ValueError),
        (lambda: metadata_chunk("", b""), ValueError),
        (lambda: metadata_chunk("a key", b""), ValueError),
        (lambda: metadata_chunk("k", "text"), TypeError),
    ],
)
def test_v2_types_reject_bad_fields(make, exc) -> None:
    with pytest.raises(exc):
        make()


def test_v2_types_normalise_fields() -> None:
    c = Chunk(4, 1, True, bytearray(b"abcd"))
    assert c.type is ChunkType.STAGE_STREAM and type(c.payload) is bytes and c.known
    assert Chunk(0x9000, 0, False, memoryview(b"x")) == Chunk(0x9000, 0, False, b"x")
    assert not Chunk(0x9000, 0, False, b"").known
    assert ModelComponent("vqvae", "m", bytearray(HASH)).weights_hash == HASH
    assert ModelComponent("vqvae", "m", memoryview(HASH[:8])).weights_hash == HASH[:8]  # as v2 files store it
    assert ImageGeometry(4, 3, 0).channel_layout is ChannelLayout.RGB
    assert isinstance(read_file(_image_v2(1)[0]), VQFile)


# ------------------------------------------------------------------------------------------ STAGE_SYNTAX
def test_stage_syntax_chunk_round_trips_and_survives_truncation():
    from vqcodec.bitstream import StageSyntax, stage_syntax_chunk, truncate

    data, _ = _image_v2(3, [stage_syntax_chunk(StageSyntax.DEPTH)])
    f = read_file(data)
    assert f.stage_syntax == StageSyntax.DEPTH
    assert read_file(truncate(data, 1)).stage_syntax == StageSyntax.DEPTH  # side information: kept
    assert read_file(_image_v2(3)[0]).stage_syntax == StageSyntax.PLAIN  # absent: plain (0.2.0's files)


@pytest.mark.parametrize("payload, match", [
    (b"\x00", "omitting the chunk"),
    (b"\x01\x00", "after its value"),
    (b"", "STAGE_SYNTAX"),
    (b"\x81\x00", "minimal|STAGE_SYNTAX"),
])
def test_bad_stage_syntax_payloads_are_refused(payload, match):
    data = _raw2([MODEL_C, GEOM_C, (0x0009, 1, 0, payload), _stream(1)])
    with pytest.raises(VQFormatError, match=match):
        read_file(data)


def test_unknown_stage_syntax_asks_for_an_upgrade_and_two_chunks_are_refused():
    from vqcodec.bitstream import StageSyntax, stage_syntax_chunk

    with pytest.raises(VQFormatError, match="upgrade vqcodec"):
        read_file(_raw2([MODEL_C, GEOM_C, (0x0009, 1, 0, b"\x07"), _stream(1)]))
    with pytest.raises(VQFormatError, match="second STAGE_SYNTAX"):
        read_file(_raw2([MODEL_C, GEOM_C, (0x0009, 1, 0, b"\x01"), (0x0009, 1, 0, b"\x01"), _stream(1)]))
    with pytest.raises(VQFormatError, match="must-understand"):
        read_file(_raw2([MODEL_C, GEOM_C, (0x0009, 0, 0, b"\x01"), _stream(1)]))
    assert read_file(_raw2([MODEL_C, GEOM_C, (0x0009, 1, 0, b"\x01"), _stream(1)])).stage_syntax == StageSyntax.DEPTH
    with pytest.raises(ValueError, match="PLAIN"):
        stage_syntax_chunk(StageSyntax.PLAIN)
