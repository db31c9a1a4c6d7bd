"""Tests for vqcodec.bitstream.container: the .vq byte layout, validation, truncation, fuzzing."""
from __future__ import annotations

import dataclasses
import hashlib
import struct
import time
import zlib

import numpy as np
import pytest

from vqcodec.bitstream import (
    FORMAT_VERSION,
    MAGIC,
    MIN_FILE_BYTES,
    ChannelLayout,
    Modality,
    VQFormatError,
    VQHeader,
    check_model,
    hash_weights,
    pack,
    read_header,
    truncate,
    unpack,
)

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
    version=FORMAT_VERSION,
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
    assert data[4] == FORMAT_VERSION == 1
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


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 60, "bad magic"),
        (b"VQC\x89" + b"\0" * 60, "bad magic"),
        (MAGIC[:2], "truncated"),
        (MAGIC, "truncated"),
        (_raw(version=7), "format version 7 is newer than this vqcodec supports \\(1\\); upgrade"),
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
    ],
)
def test_specific_errors(data: bytes, message: str) -> None:
    with pytest.raises(VQFormatError, match=message):
        unpack(data)


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
    start = time.perf_counter()
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
    assert time.perf_counter() - start < 10.0
