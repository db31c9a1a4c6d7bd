"""Stage coding: residual-VQ indices (s, *shape) <-> one range-coded stream per stage, for any modality.

A codec quantizes its signal to s index maps ("stages", quality layers) over a grid of some shape:
(h, w) latent positions of an image, (T,) frames of a sequence. A prior (`StagePrior`) gives integer
frequency tables for them, stage after stage; `encode_stages` range-codes each stage into its own
stream (vqcodec.bitstream.IndexEncoder) and `decode_stages` inverts it (IndexDecoder). One stream per
stage is what lets a file be truncated to fewer quality layers.

Contract between the two sides, per stage (1-based, like the format):
* the encoder asks for the stage's frequencies at every position (`frequencies`, raster order) and
  codes the positions group by group in `coding_groups` order, each group's positions in array order;
* the decoder calls `decode_stage`, which must call decode_fn once per group of `coding_groups`, in
  the same order, with the same frequency rows in the same row order, and place the returned symbols.
Exact decoding needs the decoder's frequencies to equal the encoder's bit for bit: a prior built on
`vqcodec.integer` computes them in exact integer arithmetic (see codec/integer/layers.py).

Errors: damaged stream data raises VQFormatError (from the decoder: wrong length, unread or missing
data, symbols out of range; from `check_stream_lengths`: a stream too short for its grid, before anything
is allocated); a prior or arguments that break the contract raise ValueError.
"""
from __future__ import annotations

import math
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from vqcodec.bitstream import IndexDecoder, IndexEncoder, VQFormatError
from vqcodec.bitstream.entropy import MAX_ROW_SUM, max_symbols, min_bits_per_symbol
from vqcodec.contract import Progress

__all__ = ["DecodeFn", "Progress", "StagePrior", "encode_stages", "decode_stages", "min_bits_per_index",
           "check_stream_lengths"]

DecodeFn = Callable[[np.ndarray], np.ndarray]
"""decode_fn(freqs (n, K) int64) -> symbols (n,) integer array, in the row order of freqs."""

# Progress (vqcodec.contract): here progress(stage, stages) is called after each stage is coded (stage 1-based).


@runtime_checkable
class StagePrior(Protocol):
    """What `encode_stages` / `decode_stages` need from a prior over s index maps of a grid shape.

    Stages are 1-based. Grid positions are flat indices in raster (C) order of `shape`, N = prod(shape).
    """

    @property
    def num_stages(self) -> int:
        """Most stages the prior can code."""
        ...

    @property
    def codebook_size(self) -> int:
        """K: every index lies in [0, K)."""
        ...

    def frequencies(self, indices: torch.Tensor, stage: int) -> np.ndarray:
        """Encoder side. indices (s', *shape) int64 with s' >= stage -> frequencies (N, K) int64 of
        `stage` at every position, raster order (entries >= 1, row sums <= 2^24). May use any index
        the decoder knows before the position's group: earlier stages, earlier groups of this stage."""
        ...

    def coding_groups(self, stage: int, shape: tuple[int, ...]) -> list[np.ndarray]:
        """Coding order of `stage`: int64 arrays of flat positions covering 0..N-1 once, in the order
        the decoder can follow (a group's frequencies depend only on earlier groups and stages)."""
        ...

    def decode_stage(self, stage: int, earlier: torch.Tensor, shape: tuple[int, ...],
                     decode_fn: DecodeFn) -> torch.Tensor:
        """Decoder side. earlier (stage-1, *shape) int64: the stages decoded so far. Calls decode_fn
        once per group of `coding_groups(stage, shape)`, in order, with the rows `frequencies` gives for
        that group's positions; returns the stage's indices, int64 of `shape`."""
        ...


def min_bits_per_index(prior: StagePrior) -> float:
    """A lower bound on the bits one index of `prior` costs in a stream (vqcodec.bitstream.entropy).

    The bound needs the largest frequency the prior can give: `prior.max_frequency` if it has one, else
    the top of the exp table of its `vqcodec.integer.layers.ExpFreqs` (attribute `exp` or `freqs`: the
    integer image and audio priors), else the bare contract's 2^24 - (K - 1).
    """
    k = int(prior.codebook_size)
    top = getattr(prior, "max_frequency", None)
    if top is None:
        for name in ("exp", "freqs"):
            lut = getattr(getattr(prior, name, None), "lut", None)
            if lut is not None:
                top = int(lut.max())
                break
    if top is None:
        top = MAX_ROW_SUM - (k - 1)
    return min_bits_per_symbol(int(top), k)


def check_stream_lengths(prior: StagePrior, streams: Sequence[bytes], counts: "int | Sequence[int]",
                         what: str = "stage") -> None:
    """Raise VQFormatError unless every stream is long enough to hold its count of indices.

    A cheap test on lengths alone, made before anything is allocated or decoded, so a small file that
    declares a large grid is refused at a cost proportional to the file: stream i must hold counts[i]
    indices (an int: the same count for every stream), each costing >= `min_bits_per_index(prior)` bits
    (bound and safety factor in `vqcodec.bitstream.entropy.max_symbols`). Never refuses a valid stream.
    """
    bits = min_bits_per_index(prior)
    for i, stream in enumerate(streams):
        n = counts if isinstance(counts, int) else counts[i]
        cap = max_symbols(len(stream), bits)
        if n > cap:
            raise VQFormatError(
                f"{what} {i + 1}'s stream is {len(stream)} bytes, too short to hold {n} indices (at most {cap} "
                f"fit): the file is truncated or corrupted, or declares a larger size than it holds"
            )


def encode_stages(prior: StagePrior, indices: torch.Tensor, progress: Progress | None = None) -> list[bytes]:
    """Range-code indices (s, *shape) int64 (s <= prior.num_stages) -> s streams, stream i holding stage i+1.

    Each stream's bytes are a function of the indices and the prior only (IndexEncoder: the symbols in
    `coding_groups` order under the `frequencies` rows).
    """
    x = torch.as_tensor(indices, dtype=torch.int64)
    if x.dim() < 2:
        raise ValueError(f"indices must be (stages, *shape), got shape {tuple(x.shape)}")
    s, shape = x.shape[0], tuple(x.shape[1:])
    if s > prior.num_stages:
        raise ValueError(f"{s} stages given, the prior codes at most {prior.num_stages}")
    n = math.prod(shape)
    streams = []
    for stage in range(1, s + 1):
        freqs = prior.frequencies(x, stage)
        if freqs.shape != (n, prior.codebook_size):
            raise ValueError(f"prior gave frequencies of shape {freqs.shape} for {n} positions of stage {stage}")
        symbols = x[stage - 1].reshape(-1).numpy()
        enc = IndexEncoder()
        for group in prior.coding_groups(stage, shape):
            enc.encode(symbols[group], freqs[group])
        if enc.num_symbols != n:
            raise ValueError(f"coding groups of stage {stage} hold {enc.num_symbols} positions, the grid has {n}")
        streams.append(enc.finish())
        if progress:
            progress(stage, s)
    return streams


def decode_stages(prior: StagePrior, streams: Sequence[bytes], shape: Sequence[int],
                  progress: Progress | None = None) -> torch.Tensor:
    """Decode len(streams) stages of a grid `shape` -> indices (len(streams), *shape) int64.

    Every stream must be consumed exactly (IndexDecoder.check_finished): a truncated stream, one with
    extra bytes or one decoded under a different prior raises VQFormatError. Work before a rejection
    stays proportional to the streams' size: their lengths are checked against the grid before anything
    is allocated (`check_stream_lengths`), and a stream that runs dry stops the decoder at the group
    where it does (IndexDecoder.decode), not at the end of the stage.
    """
    shape = tuple(int(v) for v in shape)
    s = len(streams)
    if s > prior.num_stages:
        raise ValueError(f"{s} streams given, the prior codes at most {prior.num_stages} stages")
    check_stream_lengths(prior, streams, math.prod(shape))
    out = torch.empty((s, *shape), dtype=torch.int64)
    for stage in range(1, s + 1):
        dec = IndexDecoder(streams[stage - 1])
        plane = prior.decode_stage(stage, out[: stage - 1], shape, dec.decode)
        dec.check_finished()
        if tuple(plane.shape) != shape:
            raise ValueError(f"prior decoded stage {stage} to shape {tuple(plane.shape)}, expected {shape}")
        out[stage - 1] = plane
        if progress:
            progress(stage, s)
    return out
