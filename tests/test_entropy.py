"""Tests for vqcodec.bitstream.entropy: range coding of indices under integer frequency tables."""
from __future__ import annotations

import hashlib
import logging

import numpy as np
import pytest

from vqcodec.bitstream import (
    MAX_ROW_SUM,
    IndexDecoder,
    IndexEncoder,
    VQFormatError,
    cross_entropy_bits,
)

log = logging.getLogger(__name__)
K = 512


def _sample(rng: np.random.Generator, freqs: np.ndarray) -> np.ndarray:
    """Draw one symbol per row from the integer tables (int64 (n,))."""
    cdf = np.cumsum(freqs, axis=1)
    u = rng.integers(0, cdf[:, -1])
    return (cdf <= u[:, None]).sum(axis=1).astype(np.int64)


def _peaked(rng: np.random.Generator, n: int, k: int, temperature: float) -> np.ndarray:
    """Softmax of Gaussian logits * temperature, quantised to integers with row sum <= 2**24."""
    logits = rng.normal(size=(n, k)) * temperature
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return np.maximum(1, np.floor(p * (MAX_ROW_SUM - k))).astype(np.int64)


def _roundtrip(symbols: np.ndarray, freqs: np.ndarray) -> tuple[bytes, np.ndarray]:
    enc = IndexEncoder()
    enc.encode(symbols, freqs)
    data = enc.finish()
    dec = IndexDecoder(data)
    out = dec.decode(freqs)
    dec.check_finished()
    return data, out


@pytest.mark.parametrize("k", [2, 3, 17, K])
@pytest.mark.parametrize("n", [0, 1, 2, 257])
def test_roundtrip_random_tables(n: int, k: int) -> None:
    rng = np.random.default_rng(1000 * n + k)
    freqs = rng.integers(1, 1 << 14, size=(n, k), dtype=np.int64)
    symbols = rng.integers(0, k, size=n, dtype=np.int64)
    data, out = _roundtrip(symbols, freqs)
    assert out.dtype == np.int64 and out.shape == (n,)
    np.testing.assert_array_equal(out, symbols)
    assert len(data) % 4 == 0
    if n == 0:
        assert data == b""


def test_roundtrip_peaked_tables() -> None:
    rng = np.random.default_rng(7)
    for temperature in (0.5, 3.0, 10.0):
        freqs = _peaked(rng, 300, K, temperature)
        symbols = _sample(rng, freqs)
        _, out = _roundtrip(symbols, freqs)
        np.testing.assert_array_equal(out, symbols)


def test_rare_symbol_among_huge_frequencies() -> None:
    """A frequency-1 symbol in rows whose sum is exactly the 2**24 bound is still coded exactly."""
    n = 20
    freqs = np.ones((n, K), dtype=np.int64)
    freqs[:, 0] = MAX_ROW_SUM - (K - 1)  # row sum == 2**24, p(0) ~ 1 - 2**-15
    symbols = np.zeros(n, dtype=np.int64)
    symbols[::3] = np.arange(0, n, 3) % (K - 1) + 1  # improbable symbols (p = 2**-24)
    symbols[5] = K - 1
    assert freqs.sum(axis=1).max() == MAX_ROW_SUM
    _, out = _roundtrip(symbols, freqs)
    np.testing.assert_array_equal(out, symbols)


def test_payload_close_to_cross_entropy() -> None:
    """50k indices at ~6 bits each plus sharply peaked rows: stream within 0.5% of the ideal."""
    rng = np.random.default_rng(3)
    enc = IndexEncoder()
    ideal = 0.0
    batches = []
    # 45k symbols of a broad prior (~6 bits) + 5k of sharply peaked rows (~0.1 bit)
    for temperature, count in ((2.0, 9000),) * 5 + ((12.0, 5000),):
        freqs = _peaked(rng, count, K, temperature)
        symbols = _sample(rng, freqs)
        enc.encode(symbols, freqs)
        ideal += cross_entropy_bits(symbols, freqs)
        batches.append((symbols, freqs))
    data = enc.finish()
    n = sum(len(s) for s, _ in batches)
    bits = 8 * len(data)
    overhead = (bits - ideal) / ideal
    log.info("payload %d bits, cross-entropy %.1f bits (%.3f bits/index), overhead %.4f%%",
             bits, ideal, ideal / n, 100 * overhead)
    assert n == 50_000
    assert 5.0 < ideal / n < 7.0
    assert bits >= ideal - 64  # cannot beat the model (allowing for the last word)
    assert overhead < 0.005
    dec = IndexDecoder(data)
    for symbols, freqs in batches:
        np.testing.assert_array_equal(dec.decode(freqs), symbols)
    dec.check_finished()


def test_batch_grouping_does_not_matter() -> None:
    """Same bytes whatever the encode grouping; decoding in any grouping gives the same symbols."""
    rng = np.random.default_rng(11)
    n = 1000
    freqs = _peaked(rng, n, K, 2.5)
    symbols = _sample(rng, freqs)

    one = IndexEncoder()
    one.encode(symbols, freqs)
    data_one = one.finish()

    cuts = [0, 1, 2, 50, 51, 400, 999, 1000]
    many = IndexEncoder()
    for a, b in zip(cuts[:-1], cuts[1:]):
        many.encode(symbols[a:b], freqs[a:b])
    assert many.num_symbols == n
    assert many.finish() == data_one

    for grouping in (cuts, [0, 500, 1000], [0, 3, 7, 1000]):
        dec = IndexDecoder(data_one)
        parts = [dec.decode(freqs[a:b]) for a, b in zip(grouping[:-1], grouping[1:])]
        dec.check_finished()
        np.testing.assert_array_equal(np.concatenate(parts), symbols)
        assert dec.num_symbols == n


def _reference_case() -> tuple[np.ndarray, np.ndarray]:
    """Tables and symbols made with integer arithmetic only (no RNG), for the golden test."""
    n = 96
    i = np.arange(n, dtype=np.int64)[:, None]
    j = np.arange(K, dtype=np.int64)[None, :]
    freqs = 1 + ((i * 31 + j * 17) % 97) * ((j % 13) + 1)
    peak = (np.arange(n) * 37) % K
    rows = np.arange(0, n, 2)
    freqs[rows, peak[rows]] += MAX_ROW_SUM - freqs[rows].sum(axis=1)  # even rows: sum == 2**24
    symbols = (np.arange(n, dtype=np.int64) * 131) % K
    symbols[1::4] = peak[1::4]
    symbols[::6] = peak[::6]
    return symbols, freqs


# sha256 of the stream `_reference_case` encodes to with constriction 0.5.0. If this changes, a
# constriction upgrade changed its quantisation or coder, and old .vq files would no longer decode:
# pin constriction or bump the format version (see FORMAT.md, "Versioning").
GOLDEN_SHA256 = "4ee69f106a69dfa65c7d5eb64866560e5cce8fe44f3437352168c510c6cf0796"
GOLDEN_LEN = 124


def test_golden_stream_bytes() -> None:
    symbols, freqs = _reference_case()
    assert freqs.sum(axis=1).max() == MAX_ROW_SUM
    enc = IndexEncoder()
    enc.encode(symbols, freqs)
    data = enc.finish()
    assert len(data) == GOLDEN_LEN
    assert hashlib.sha256(data).hexdigest() == GOLDEN_SHA256
    dec = IndexDecoder(data)
    np.testing.assert_array_equal(dec.decode(freqs), symbols)
    dec.check_finished()


def _documented_cdf(row: np.ndarray) -> list[int]:
    """The integer CDF (precision 24) that entropy.py's docstring says constriction builds."""
    k = len(row)
    scale = float(MAX_ROW_SUM - k) / float(row.sum())  # one IEEE division
    left = np.concatenate([[0], np.cumsum(row)[:-1]]).astype(np.float64)  # exact integers
    return [int(np.floor(x * scale)) + i for i, x in enumerate(left)] + [MAX_ROW_SUM]


def _symbol_at_quantile(q: int, row: np.ndarray) -> int:
    """Decode one symbol from a crafted stream whose first quantile is exactly q (0 <= q < 2**24).

    A fresh RangeDecoder (64-bit state, range 2**64 - 1) reads two words as `point` and looks
    up quantile point // ((2**64 - 1) >> 24).
    """
    import constriction

    point = q * (((1 << 64) - 1) >> 24)
    words = np.array([point >> 32, point & 0xFFFFFFFF], dtype=np.uint32)
    dec = constriction.stream.queue.RangeDecoder(words)
    fam = constriction.stream.model.Categorical(perfect=False)
    return int(dec.decode(fam, row[None].astype(np.float64))[0])


def test_quantised_cdf_matches_documented_formula() -> None:
    """Probe constriction's decoder at CDF boundaries: the quantisation is the documented one.

    This is what makes indices exact across machines: the CDF depends only on IEEE-754 f64
    division, multiplication and truncation of exact integers.
    """
    rng = np.random.default_rng(12)
    rows = [rng.integers(1, MAX_ROW_SUM // k, size=k) for k in (2, 3, 100, K, K)]
    rows.append(np.array([MAX_ROW_SUM - (K - 1)] + [1] * (K - 1)))
    for row in rows:
        cdf = _documented_cdf(row)
        for s in sorted(set(rng.integers(0, len(row), size=25).tolist()) | {0, len(row) - 1}):
            assert cdf[s] < cdf[s + 1]
            assert _symbol_at_quantile(cdf[s], row) == s
            assert _symbol_at_quantile(cdf[s + 1] - 1, row) == s
            if s:
                assert _symbol_at_quantile(cdf[s] - 1, row) == s - 1


def test_stream_is_little_endian_words() -> None:
    """The stream is constriction's uint32 words written little-endian, whatever the host."""
    import constriction

    rng = np.random.default_rng(4)
    freqs = _peaked(rng, 50, K, 1.0)
    symbols = _sample(rng, freqs)
    enc = IndexEncoder()
    enc.encode(symbols, freqs)
    data = enc.finish()
    raw = constriction.stream.queue.RangeEncoder()
    raw.encode(symbols.astype(np.int32), constriction.stream.model.Categorical(perfect=False),
               freqs.astype(np.float64))
    words = raw.get_compressed()
    assert data == words.astype("<u4").tobytes()
    assert data != words.astype(">u4").tobytes()
    for view in (bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(IndexDecoder(view).decode(freqs), symbols)


def test_cross_entropy_bits() -> None:
    uniform = np.full((10, K), 3, dtype=np.int64)
    assert cross_entropy_bits(np.arange(10), uniform) == pytest.approx(90.0, abs=1e-9)
    freqs = np.array([[1, 3], [2, 2], [7, 1]], dtype=np.int64)
    expect = -np.log2(3 / 4) - np.log2(2 / 4) - np.log2(1 / 8)
    assert cross_entropy_bits(np.array([1, 0, 1]), freqs) == pytest.approx(expect, rel=1e-12)
    assert cross_entropy_bits(np.zeros(0, dtype=np.int64), np.ones((0, K), dtype=np.int64)) == 0.0


@pytest.mark.parametrize(
    "freqs, symbols, exc",
    [
        (np.zeros((2, 4), dtype=np.int64), np.array([0, 1]), ValueError),  # freq 0
        (np.full((1, 4), MAX_ROW_SUM // 4 + 1, dtype=np.int64), np.array([0]), ValueError),  # sum
        (np.full((1, 2), MAX_ROW_SUM + 1, dtype=np.int64), np.array([0]), ValueError),
        (np.ones((2, 4)), np.array([0, 1]), TypeError),  # float table
        (np.ones((2, 1), dtype=np.int64), np.array([0, 0]), ValueError),  # K = 1
        (np.ones(4, dtype=np.int64), np.array([0]), ValueError),  # rank 1
        (np.ones((2, 4), dtype=np.int64), np.array([0, 4]), ValueError),  # symbol >= K
        (np.ones((2, 4), dtype=np.int64), np.array([-1, 0]), ValueError),
        (np.ones((2, 4), dtype=np.int64), np.array([0]), ValueError),  # length mismatch
        (np.ones((2, 4), dtype=np.int64), np.array([0.0, 1.0]), TypeError),
    ],
)
def test_encoder_rejects_bad_arguments(freqs, symbols, exc) -> None:
    with pytest.raises(exc):
        IndexEncoder().encode(symbols, freqs)


def test_encode_after_finish_is_an_error() -> None:
    enc = IndexEncoder()
    enc.encode(np.array([1]), np.ones((1, 4), dtype=np.int64))
    first = enc.finish()
    assert enc.finish() == first
    with pytest.raises(RuntimeError):
        enc.encode(np.array([1]), np.ones((1, 4), dtype=np.int64))


def _encoded(seed: int, n: int = 40) -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    freqs = _peaked(rng, n, K, 1.5)
    symbols = _sample(rng, freqs)
    enc = IndexEncoder()
    enc.encode(symbols, freqs)
    return enc.finish(), symbols, freqs


def _decode_all(data: bytes, freqs: np.ndarray, *, verify: bool = True) -> np.ndarray:
    dec = IndexDecoder(data, verify=verify)
    out = dec.decode(freqs)
    dec.check_finished()
    return out


def test_most_bit_flips_are_detected() -> None:
    """A range code has almost no redundancy, so some flips decode to a *valid* other stream;
    re-encoding still catches the large majority (measured ~99%); the container CRC catches all."""
    flips = detected = 0
    for seed in range(3):
        data, _, freqs = _encoded(seed, 60)
        for bit in range(8 * len(data)):
            bad = bytearray(data)
            bad[bit // 8] ^= 1 << (bit % 8)
            flips += 1
            try:
                _decode_all(bytes(bad), freqs)
            except VQFormatError:
                detected += 1
    log.info("stream bit flips detected by re-encoding: %d / %d", detected, flips)
    assert detected >= 0.95 * flips


def test_truncated_or_extended_stream_is_detected() -> None:
    data, _, freqs = _encoded(6)
    for cut in range(len(data)):
        with pytest.raises(VQFormatError):
            _decode_all(data[:cut], freqs)
    for tail in (b"\0\0\0\0", b"\x01\0\0\0", b"\xff" * 8):
        with pytest.raises(VQFormatError):
            _decode_all(data + tail, freqs)
    # without re-encoding, two or more unread words are still noticed
    with pytest.raises(VQFormatError, match="unread"):
        _decode_all(data + b"\x01\0\0\0" * 2, freqs, verify=False)
    _decode_all(data, freqs, verify=False)


def test_wrong_prior_or_count_is_usually_detected() -> None:
    """Decoding with another prior (or too few indices) is caught by re-encoding in most cases.

    Not always: nearly every word sequence is a valid range code under any prior."""
    other_prior = short = 0
    trials = 40
    for seed in range(trials):
        data, _, freqs = _encoded(seed, 60)
        other = _peaked(np.random.default_rng(seed + 1000), 60, K, 1.5)
        for table, counter in ((other, "other"), (freqs[:-3], "short")):
            try:
                _decode_all(data, table)
            except VQFormatError:
                if counter == "other":
                    other_prior += 1
                else:
                    short += 1
    log.info("wrong prior detected %d/%d, too few indices detected %d/%d",
             other_prior, trials, short, trials)
    assert other_prior >= 0.8 * trials
    assert short >= 0.8 * trials


def test_garbage_streams_raise_only_vqformaterror() -> None:
    """Random bytes decode to some symbols or raise VQFormatError; nothing else, never a hang."""
    rng = np.random.default_rng(9)
    freqs = _peaked(rng, 64, K, 2.0)
    rejected = 0
    for trial in range(300):
        length = int(rng.integers(0, 80))
        data = rng.integers(0, 256, size=length, dtype=np.uint8).tobytes()
        for verify in (True, False):
            try:
                dec = IndexDecoder(data, verify=verify)
                out = dec.decode(freqs[: 1 + trial % 64])
                assert ((out >= 0) & (out < K)).all()
                dec.check_finished()
            except VQFormatError:
                rejected += verify
    assert rejected >= 290  # with verify, garbage is (nearly) always rejected
