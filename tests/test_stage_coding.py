"""Stage coding (codec/coding/stages.py): one range-coded stream per stage under any StagePrior, the same
path for image index maps (h, w) and for sequences (T,)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vqcodec.bitstream import IndexEncoder, VQFormatError
from vqcodec.coding import StagePrior, decode_stages, encode_stages
from vqcodec.image.prior_integer import load_integer_prior


@pytest.fixture(scope="module")
def tiny_prior(tiny_weights):
    return load_integer_prior(tiny_weights / "image_prior.safetensors")


def random_indices(prior, shape, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, prior.codebook_size, (prior.num_stages, *shape), generator=g)


# ------------------------------------------------------------------------------------------ image prior
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (5, 7), (13, 3), (6, 11)])
def test_image_round_trip_on_awkward_shapes(tiny_prior, shape):
    assert isinstance(tiny_prior, StagePrior)
    x = random_indices(tiny_prior, shape, seed=sum(shape))
    streams = encode_stages(tiny_prior, x)
    assert len(streams) == tiny_prior.num_stages and all(isinstance(s, bytes) and s for s in streams)
    out = decode_stages(tiny_prior, streams, shape)
    assert out.dtype == torch.int64 and torch.equal(out, x)
    # a prefix of the streams decodes to the first stages (quality layers)
    assert torch.equal(decode_stages(tiny_prior, streams[:1], shape), x[:1])


def test_streams_equal_the_hand_written_coding_loop(tiny_prior):
    """encode_stages makes the bytes ImageCodec.pack made before it existed (the pre-0.2 loop, inlined)."""
    x = random_indices(tiny_prior, (10, 7), seed=3)
    h, w = x.shape[1:]
    expected = []
    for stage in range(1, x.shape[0] + 1):
        freqs = tiny_prior.frequencies(x, stage)
        symbols = x[stage - 1].reshape(-1).numpy()
        enc = IndexEncoder()
        for group in tiny_prior.coding_groups(stage, (h, w)):
            enc.encode(symbols[group], freqs[group])
        expected.append(enc.finish())
    assert encode_stages(tiny_prior, x) == expected


def test_progress_reports_every_stage(tiny_prior):
    x = random_indices(tiny_prior, (4, 5))
    seen_enc, seen_dec = [], []
    streams = encode_stages(tiny_prior, x, progress=lambda s, n: seen_enc.append((s, n)))
    decode_stages(tiny_prior, streams[:2], (4, 5), progress=lambda s, n: seen_dec.append((s, n)))
    assert seen_enc == [(1, 3), (2, 3), (3, 3)] and seen_dec == [(1, 2), (2, 2)]


@pytest.mark.parametrize("damage", ["drop_word", "drop_byte", "extra_word", "extra_byte"])
def test_damaged_stream_raises_format_error(tiny_prior, damage):
    x = random_indices(tiny_prior, (9, 12), seed=7)
    streams = encode_stages(tiny_prior, x)
    assert torch.equal(decode_stages(tiny_prior, streams, (9, 12)), x)
    for i in range(len(streams)):
        bad = list(streams)
        bad[i] = {"drop_word": bad[i][:-4], "drop_byte": bad[i][:-1], "extra_word": bad[i] + b"\x00\x00\x00\x00",
                  "extra_byte": bad[i] + b"\x01"}[damage]
        with pytest.raises(VQFormatError):
            decode_stages(tiny_prior, bad, (9, 12))


def test_bad_arguments(tiny_prior):
    x = random_indices(tiny_prior, (3, 4))
    streams = encode_stages(tiny_prior, x)
    with pytest.raises(ValueError, match="at most"):
        decode_stages(tiny_prior, streams + streams[:1], (3, 4))
    with pytest.raises(ValueError, match="at most"):
        encode_stages(tiny_prior, torch.cat([x, x[:1]]))
    with pytest.raises(ValueError, match="stages, \\*shape"):
        encode_stages(tiny_prior, x[0, 0])


# --------------------------------------------------------------------------------- a 1-D toy prior
class MarkovPrior:
    """Toy 1-D StagePrior over sequences (T,), 2 stages, K = 5, fixed integer tables.

    Stage 1: frequencies of x1[t] depend on x1[t-1] (start row at t = 0), coded one position at a time.
    Stage 2: frequencies of x2[t] depend on x1[t], coded in one group in reverse order (any order the
    decoder follows is fine; the reversal checks that the coder honours the prior's order).
    """

    num_stages = 2
    codebook_size = 5

    def __init__(self) -> None:
        g = np.random.default_rng(0)
        k = self.codebook_size
        self.t1 = g.integers(1, 1000, (k + 1, k))  # row k: start
        self.t1[np.arange(k), np.arange(k)] += 5000  # sticky: repeats are likely
        self.t2 = g.integers(1, 1000, (k, k))

    def frequencies(self, indices, stage):
        x = torch.as_tensor(indices).numpy()
        if stage == 1:
            prev = np.concatenate([[self.codebook_size], x[0, :-1]])
            return self.t1[prev].astype(np.int64)
        return self.t2[x[0]].astype(np.int64)

    def coding_groups(self, stage, shape):
        (t,) = shape
        if stage == 1:
            return [np.array([i], dtype=np.int64) for i in range(t)]
        return [np.arange(t, dtype=np.int64)[::-1].copy()]

    def decode_stage(self, stage, earlier, shape, decode_fn):
        (t,) = shape
        out = np.zeros(t, dtype=np.int64)
        if stage == 1:
            prev = self.codebook_size
            for i in range(t):
                out[i] = decode_fn(self.t1[prev][None].astype(np.int64))[0]
                prev = out[i]
        else:
            order = self.coding_groups(stage, shape)[0]
            out[order] = decode_fn(self.t2[earlier[0].numpy()[order]].astype(np.int64))
        return torch.from_numpy(out)


@pytest.mark.parametrize("t", [1, 2, 17, 300])
def test_1d_toy_prior_round_trips_through_the_same_path(t):
    prior = MarkovPrior()
    assert isinstance(prior, StagePrior)
    g = np.random.default_rng(t)
    x1 = np.zeros(t, dtype=np.int64)
    for i in range(1, t):  # a sequence the prior likes: mostly repeats
        x1[i] = x1[i - 1] if g.random() < 0.8 else g.integers(0, 5)
    x = torch.from_numpy(np.stack([x1, g.integers(0, 5, t)]))
    streams = encode_stages(prior, x)
    assert len(streams) == 2
    assert torch.equal(decode_stages(prior, streams, (t,)), x)
    assert torch.equal(decode_stages(prior, streams[:1], (t,)), x[:1])
    if t == 300:  # the coder used the prior's tables: a likely sequence costs far less than log2(5) per symbol
        assert 8 * len(streams[0]) < 0.6 * t * np.log2(5)
        with pytest.raises(VQFormatError):
            decode_stages(prior, [streams[0] + b"\x00" * 4, streams[1]], (t,))


def test_incomplete_coding_groups_are_refused():
    class Gappy(MarkovPrior):
        def coding_groups(self, stage, shape):
            return super().coding_groups(stage, shape)[:-1]

    with pytest.raises(ValueError, match="coding groups"):
        encode_stages(Gappy(), torch.zeros(2, 6, dtype=torch.int64))
