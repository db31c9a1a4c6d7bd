"""Per-position depth coding (codec/coding/depth.py): STOP symbols, a raw mode per stage, exact round
trips on awkward shapes and depth patterns, truncation, and damaged data refused as VQFormatError."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vqcodec.bitstream import IndexDecoder, VQFormatError
from vqcodec.coding.depth import (ABSENT, MODE_PRIOR, MODE_RAW, DepthStagePrior, check_depth_indices,
                                  decode_depth_stages, depths_of, encode_depth_stages, stream_mode)
from vqcodec.image.prior_integer import load_integer_prior


@pytest.fixture(scope="module")
def tiny_prior(tiny_weights):
    return load_integer_prior(tiny_weights / "image_prior.safetensors")


def depth_indices(prior, shape, depths: torch.Tensor, seed=0) -> torch.Tensor:
    """Random codes (S, h, w) with ABSENT past `depths` (h, w) in 1..S; trailing all-ABSENT stages cut."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, prior.codebook_size, (prior.num_stages, *shape), generator=g)
    for s in range(prior.num_stages):
        x[s][depths <= s] = ABSENT
    return x[: int(depths.max())]


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (5, 7), (13, 3), (6, 11)])
@pytest.mark.parametrize("pattern", ["random", "full", "one", "half"])
def test_round_trip_on_awkward_shapes_and_depths(tiny_prior, shape, pattern):
    assert isinstance(tiny_prior, DepthStagePrior)
    s = tiny_prior.num_stages
    g = torch.Generator().manual_seed(sum(shape))
    depths = {"random": torch.randint(1, s + 1, shape, generator=g), "full": torch.full(shape, s),
              "one": torch.ones(shape, dtype=torch.int64),
              "half": torch.where(torch.arange(shape[1]) < shape[1] // 2, s, 1).expand(shape)}[pattern]
    x = depth_indices(tiny_prior, shape, depths, seed=len(pattern))
    for allow_raw in (True, False):
        streams = encode_depth_stages(tiny_prior, x, allow_raw=allow_raw)
        assert len(streams) == x.shape[0]
        out = decode_depth_stages(tiny_prior, streams, shape)
        assert out.dtype == torch.int64 and torch.equal(out, x)
        assert torch.equal(depths_of(out), depths)
        for n in range(1, len(streams) + 1):  # quality layers: any prefix of the streams decodes
            assert torch.equal(decode_depth_stages(tiny_prior, streams[:n], shape), x[:n])


def test_raw_mode_bounds_every_stage_by_raw_indices(tiny_prior):
    """Uniform random codes: the prior cannot beat 9-bit (here log2 K-bit) indices, so raw is chosen and
    no stream exceeds raw indices plus the mode bit and the STOP symbols."""
    shape = (12, 16)
    x = depth_indices(tiny_prior, shape, torch.full(shape, tiny_prior.num_stages), seed=1)
    streams = encode_depth_stages(tiny_prior, x)
    n, bits = math.prod(shape), math.log2(tiny_prior.codebook_size)
    for k, stream in enumerate(streams, 1):
        stop_bits = 0 if k == 1 else n * 0.02 + 2 * 5 * 4  # STOP costs ~0.016 bit at level 15; 4-bit levels
        assert len(stream) * 8 <= n * bits + 1 + stop_bits + 64, k
    prior_only = encode_depth_stages(tiny_prior, x, allow_raw=False)
    for stream, under_prior in zip(streams, prior_only):
        assert len(stream) <= len(under_prior)
        if len(stream) < len(under_prior):
            assert stream_mode(stream) == MODE_RAW


def test_the_prior_mode_is_kept_where_it_pays(tiny_prior):
    """Indices drawn from the prior itself are cheaper under it than raw: the prior mode is chosen."""
    x = tiny_prior.sample(tiny_prior.num_stages, 10, 12, seed=3)
    streams = encode_depth_stages(tiny_prior, x)
    assert stream_mode(streams[0]) == MODE_PRIOR
    assert torch.equal(decode_depth_stages(tiny_prior, streams, (10, 12)), x)


def test_conditional_frequencies_match_the_plain_ones_without_absent(tiny_prior):
    x = torch.randint(0, tiny_prior.codebook_size, (tiny_prior.num_stages, 5, 6),
                      generator=torch.Generator().manual_seed(0))
    for stage in range(2, tiny_prior.num_stages + 1):
        assert np.array_equal(tiny_prior.conditional_frequencies(x[: stage - 1], stage),
                              tiny_prior.frequencies(x, stage))


def test_absent_frequencies_are_exact_across_threads_and_chunking(tiny_prior):
    shape = (9, 14)
    depths = torch.randint(1, tiny_prior.num_stages + 1, shape, generator=torch.Generator().manual_seed(2))
    x = depth_indices(tiny_prior, shape, depths, seed=2)
    stage = x.shape[0]
    if stage < 2:
        pytest.skip("needs two stages")
    tiny_prior.num_threads = 1
    one = tiny_prior.conditional_frequencies(x[: stage - 1], stage)
    tiny_prior.num_threads = 2
    try:
        two = tiny_prior.conditional_frequencies(x[: stage - 1], stage)
    finally:
        tiny_prior.num_threads = 1
    assert np.array_equal(one, two)
    # an absent position and a present one do not give the same context (absent adds nothing)
    y = x[: stage - 1].clone()
    y[-1][y[-1] < 0] = 0
    if bool((x[: stage - 1] < 0).any()):
        assert not np.array_equal(tiny_prior.conditional_frequencies(y, stage), one)


@pytest.mark.parametrize("bad, match", [
    ("absent_stage1", "stage 1"),
    ("revived", "stay stopped"),
    ("too_big", "lie in"),
    ("below_absent", "lie in"),
])
def test_invalid_index_maps_are_refused(tiny_prior, bad, match):
    x = depth_indices(tiny_prior, (4, 4), torch.full((4, 4), tiny_prior.num_stages))
    if bad == "absent_stage1":
        x[0, 0, 0] = ABSENT
    elif bad == "revived":
        x[1, 1, 1] = ABSENT
    elif bad == "too_big":
        x[0, 0, 0] = tiny_prior.codebook_size
    else:
        x[1, 0, 0] = -2
    with pytest.raises(ValueError, match=match):
        encode_depth_stages(tiny_prior, x)
    with pytest.raises(ValueError, match=match):
        check_depth_indices(x, tiny_prior.codebook_size)


def test_damaged_streams_raise_format_error_only(tiny_prior):
    shape = (8, 10)
    depths = torch.randint(1, tiny_prior.num_stages + 1, shape, generator=torch.Generator().manual_seed(4))
    x = depth_indices(tiny_prior, shape, depths, seed=4)
    streams = encode_depth_stages(tiny_prior, x)
    rng = np.random.default_rng(0)
    for trial in range(60):
        damaged = [bytearray(s) for s in streams]
        k = int(rng.integers(0, len(damaged)))
        if trial % 3 == 0:
            damaged[k] = damaged[k][: 4 * int(rng.integers(0, len(damaged[k]) // 4 + 1))]
        elif damaged[k]:
            pos = int(rng.integers(0, len(damaged[k])))
            damaged[k][pos] ^= 1 << int(rng.integers(0, 8))
        try:
            out = decode_depth_stages(tiny_prior, [bytes(d) for d in damaged], shape)
        except VQFormatError:
            continue
        check_depth_indices(out, tiny_prior.codebook_size)  # a "successful" decode is still well formed


def test_short_later_stream_is_refused_before_work(tiny_prior):
    shape = (60, 80)
    x = depth_indices(tiny_prior, shape, torch.full(shape, tiny_prior.num_stages), seed=5)
    streams = encode_depth_stages(tiny_prior, x)
    with pytest.raises(VQFormatError, match="too short"):
        decode_depth_stages(tiny_prior, [streams[0], b"\0\0\0\0"], shape)


def test_ideal_bits_skip_absent_positions(tiny_prior):
    shape = (6, 8)
    full = depth_indices(tiny_prior, shape, torch.full(shape, tiny_prior.num_stages), seed=6)
    cut = full.clone()
    cut[1:, :, 4:] = ABSENT  # the right half stops after stage 1
    bits_full, bits_cut = tiny_prior.bits(full), tiny_prior.bits(cut)
    assert bits_cut.shape == (tiny_prior.num_stages,) and bits_cut[0] == bits_full[0]
    assert np.all(np.isfinite(bits_cut)) and np.all(bits_cut > 0)


def _stop_rows_integer(code_freqs: np.ndarray | None, stop: np.ndarray, k: int) -> np.ndarray:
    """The rows of `_stop_rows` by the integer formula of the format (floor division in int64)."""
    code = np.ones((stop.size, k), dtype=np.int64) if code_freqs is None else code_freqs
    budget = (1 << 24) - stop - k
    scaled = np.maximum(code * budget[:, None] // code.sum(axis=1)[:, None], 1)
    return np.concatenate([scaled, stop[:, None]], axis=1)


@pytest.mark.parametrize("k", [2, 3, 511, 512])
def test_stop_rows_float_division_equals_the_integer_formula(k):
    """`_stop_rows` divides in float64; it must equal the format's integer floor division everywhere,
    including rows of ones, rows at the 2^24 / K bound, single huge entries, and every STOP level."""
    from vqcodec.coding.depth import STOP_FREQ, _stop_rows

    rng = np.random.default_rng(k)
    n = 4000
    cap = (1 << 24) // k
    rows = [rng.integers(1, cap + 1, (n, k)), np.ones((n, k), dtype=np.int64), np.full((n, k), cap),
            rng.integers(1, 3, (n, k))]
    spiky = np.ones((n, k), dtype=np.int64)
    spiky[:, 0] = (1 << 24) - (k - 1)
    rows.append(spiky)
    stop = np.array(STOP_FREQ, dtype=np.int64)[rng.integers(0, len(STOP_FREQ), n)] << 8
    for code in rows + [None]:
        got = _stop_rows(code, stop, k)
        assert got.dtype == np.int64 and np.array_equal(got, _stop_rows_integer(code, stop, k))
        assert got.sum(axis=1).max() <= 1 << 24 and got.min() >= 1


@pytest.mark.parametrize("k", [2, 7, 512])
def test_coded_bits_predict_the_stream_length(k):
    """entropy.coded_bits is the information under constriction's own CDFs: a stream of those symbols is
    its bits rounded up to words, plus at most the seal."""
    from vqcodec.bitstream import IndexEncoder
    from vqcodec.bitstream.entropy import coded_bits_of_rows

    rng = np.random.default_rng(k)
    for n, peak in [(1, 1), (50, 1), (3000, 1 << 14), (3000, 1 << 23), (20000, 4)]:
        peak = min(peak, (1 << 24) // (k + 1))
        freqs = rng.integers(1, peak + 1, (n, k))
        freqs[:, rng.integers(0, k)] += peak  # one likely symbol per row
        p = freqs / freqs.sum(1, keepdims=True)
        symbols = np.array([rng.choice(k, p=row) for row in p]) if n <= 3000 else rng.integers(0, k, n)
        enc = IndexEncoder()
        enc.encode(symbols, freqs)
        words = len(enc.finish()) // 4
        bits = coded_bits_of_rows(symbols, freqs)
        assert bits <= 32 * words + 1e-6, (n, peak)
        assert 32 * words <= bits + 32 * 3, (n, peak, bits, words)


@pytest.mark.parametrize("seed", range(6))
def test_mode_choice_equals_coding_both_and_keeping_the_shorter(tiny_prior, seed):
    """The encoder codes only modes that can win; its streams must equal those of coding both modes and
    keeping the shorter (the prior's on a tie), also on maps mixing prior samples with random codes so that
    the two modes come close."""
    from vqcodec.coding import depth

    shape = (9, 14)
    g = torch.Generator().manual_seed(seed)
    x = tiny_prior.sample(tiny_prior.num_stages, *shape, seed=seed)
    noise = torch.randint(0, tiny_prior.codebook_size, x.shape, generator=g)
    mix = torch.rand(x.shape, generator=g) < seed / 6
    x = torch.where(mix, noise, x)
    depths = torch.randint(1, tiny_prior.num_stages + 1, shape, generator=g)
    for s in range(tiny_prior.num_stages):
        x[s][depths <= s] = ABSENT
    x = x[: int(depths.max())]
    margin = depth.MODE_CHOICE_MARGIN_BITS
    try:
        depth.MODE_CHOICE_MARGIN_BITS = float("inf")  # every mode coded: the brute force
        both = encode_depth_stages(tiny_prior, x)
    finally:
        depth.MODE_CHOICE_MARGIN_BITS = margin
    assert encode_depth_stages(tiny_prior, x) == both


@pytest.mark.parametrize("workers", [2, 3, 16])
def test_threaded_stage_coding_gives_the_same_streams(tiny_prior, workers):
    """Stages are coded on several threads at once (encode_depth_stages(workers=...)): the streams are the
    bytes one thread writes, progress still comes stage by stage in order, and the caller's torch thread
    count is left as it was."""
    shape = (9, 14)
    g = torch.Generator().manual_seed(5)
    x = depth_indices(tiny_prior, shape, torch.randint(1, tiny_prior.num_stages + 1, shape, generator=g), seed=5)
    one = encode_depth_stages(tiny_prior, x, workers=1)
    seen = []
    before = torch.get_num_threads()
    many = encode_depth_stages(tiny_prior, x, lambda s, n: seen.append((s, n)), workers=workers)
    assert many == one
    assert seen == [(s, x.shape[0]) for s in range(1, x.shape[0] + 1)]
    assert torch.get_num_threads() == before
    first = encode_depth_stages(tiny_prior, x, workers=workers, first_stream=one[0])
    assert first == one


def test_threaded_stage_coding_passes_errors_on(tiny_prior):
    """An exception in a worker reaches the caller (here: a prior that fails at stage 3)."""

    class Failing:
        def __getattr__(self, name):
            return getattr(tiny_prior, name)

        def frequency_rows(self, indices, stage):
            if stage == 3:
                raise RuntimeError("stage 3 failed")
            return tiny_prior.frequency_rows(indices, stage)

    x = depth_indices(tiny_prior, (6, 6), torch.full((6, 6), tiny_prior.num_stages), seed=2)
    with pytest.raises(RuntimeError, match="stage 3 failed"):
        encode_depth_stages(Failing(), x, workers=2)
