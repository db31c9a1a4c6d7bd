"""Refinement-layer coding: the symbols of one scalar refinement layer <-> one range-coded stream.

A refinement layer (`vqcodec.quantization.scalar_refinement`) holds one small integer per latent position and
dimension. Its entropy model is static: an integer frequency table per context and dimension over the layer's
alphabet (the context: what the layers before it reconstructed there, `layer_contexts`), fitted on training
latents (`fit_tables`) and stored with the model, so encoder and decoder use the same integers and decoding
is exact (`vqcodec.bitstream.entropy`). Symbols are coded position by position, the dimensions of a position
in order (raster order of the positions, as the caller lays them out).

Measured as the `sq` curves of `benchmarks/high_rate_layers.py`: a static per-dimension table costs within 1 %
of one looked up by the latent's stage-1 code.

On a latent grid (`encode_refinement_grid`) the context also reads the row above: the magnitudes of the same
dimension's symbols above, above-left and above-right (`row_activity`, ROW_BUCKETS buckets), so a whole row
decodes in one call. Measured on the held-out photos (`benchmarks/high_rate_layers.py`, 128-dim pilot, two VQ
stages): the first layer's bits fell 11 % against the layer context alone, the first two layers' 9 %.

Shapes: symbols and contexts (N, D) int64, symbols in [lo, hi], contexts in 0..C-1; a table (C, D, hi - lo + 1)
int64, every entry >= 1, row sums TABLE_TOTAL; on a grid, symbols and layer contexts (h, w, D).
"""
from __future__ import annotations

import numpy as np
import torch

from vqcodec.bitstream import IndexDecoder, IndexEncoder

__all__ = ["TABLE_TOTAL", "ROW_BUCKETS", "fit_tables", "encode_refinement", "decode_refinement", "refinement_bits",
           "row_activity", "grid_contexts", "encode_refinement_grid", "decode_refinement_grid", "row_frequencies",
           "BLOCK_BUCKETS", "block_activity"]

TABLE_TOTAL = 1 << 16
"""Row sum of every fitted table (each symbol at least 1 of it: at most 16 bits)."""


def fit_tables(symbols: torch.Tensor, contexts: torch.Tensor, num_contexts: int, lo: int, hi: int,
               total: int = TABLE_TOTAL) -> torch.Tensor:
    """Frequency tables per context and dimension of symbols (N, D) in [lo, hi] -> (C, D, hi - lo + 1) int64
    with row sums `total`: the counts plus one half, scaled to `total` with every entry at least 1 (largest
    remainders first, ties to the lower symbol)."""
    if symbols.dim() != 2 or contexts.shape != symbols.shape:
        raise ValueError(f"symbols and contexts must be the same (N, D), got {tuple(symbols.shape)} and "
                         f"{tuple(contexts.shape)}")
    k = hi - lo + 1
    if k < 2 or total < 2 * k:
        raise ValueError(f"need hi > lo and total >= 2 * (hi - lo + 1), got lo={lo}, hi={hi}, total={total}")
    if symbols.numel() and (int(symbols.min()) < lo or int(symbols.max()) > hi):
        raise ValueError(f"symbols outside [{lo}, {hi}]")
    if contexts.numel() and (int(contexts.min()) < 0 or int(contexts.max()) >= num_contexts):
        raise ValueError(f"contexts outside 0..{num_contexts - 1}")
    d = symbols.shape[1]
    dims = torch.arange(d).expand_as(symbols)
    cell = (contexts.long() * d + dims) * k + (symbols - lo).long()
    counts = torch.bincount(cell.reshape(-1), minlength=num_contexts * d * k).double().view(num_contexts * d, k)
    p = (counts + 0.5) / (counts + 0.5).sum(1, keepdim=True)
    share = p * (total - k)  # one each, then the rest by probability
    table = torch.floor(share).to(torch.int64) + 1
    left = total - table.sum(1)  # < k per row
    order = torch.argsort(-(share - torch.floor(share)), dim=1, stable=True)
    bump = torch.arange(k)[None, :] < left[:, None]
    table.scatter_add_(1, order, bump.to(torch.int64))
    return table.view(num_contexts, d, k)


def _rows(table: torch.Tensor, contexts: torch.Tensor) -> np.ndarray:
    """The frequency rows of contexts (N, D), position-major: (N * D, K) int64."""
    d = table.shape[1]
    dims = torch.arange(d).expand_as(contexts)
    return table[contexts.long(), dims].reshape(-1, table.shape[2]).cpu().numpy().astype(np.int64)


def _check(symbols: torch.Tensor, contexts: torch.Tensor, table: torch.Tensor) -> None:
    if symbols.dim() != 2 or contexts.shape != symbols.shape or table.dim() != 3 or table.shape[1] != symbols.shape[1]:
        raise ValueError(f"need symbols and contexts (N, D) and a table (C, D, K), got {tuple(symbols.shape)}, "
                         f"{tuple(contexts.shape)}, {tuple(table.shape)}")
    if contexts.numel() and (int(contexts.min()) < 0 or int(contexts.max()) >= table.shape[0]):
        raise ValueError(f"contexts outside 0..{table.shape[0] - 1}")


def encode_refinement(symbols: torch.Tensor, contexts: torch.Tensor, table: torch.Tensor, lo: int) -> bytes:
    """Symbols (N, D) in [lo, lo + K - 1] with their contexts under `table` (C, D, K) -> one stream (bytes; a
    multiple of 4)."""
    _check(symbols, contexts, table)
    k = table.shape[2]
    flat = (symbols - lo).reshape(-1).cpu().numpy().astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= k):
        raise ValueError(f"symbols outside the table's alphabet [{lo}, {lo + k - 1}]")
    enc = IndexEncoder()
    enc.encode(flat, _rows(table, contexts))
    return enc.finish()


def decode_refinement(data: bytes, contexts: torch.Tensor, table: torch.Tensor, lo: int) -> torch.Tensor:
    """A stream of `encode_refinement` and the contexts (N, D) of its symbols -> the symbols (N, D) int64.
    VQFormatError for a damaged stream."""
    _check(contexts, contexts, table)
    dec = IndexDecoder(data)
    flat = dec.decode(_rows(table, contexts))
    dec.check_finished()
    return torch.from_numpy(flat).reshape(contexts.shape) + lo


def refinement_bits(symbols: torch.Tensor, contexts: torch.Tensor, table: torch.Tensor, lo: int) -> float:
    """Ideal code length (bits) of symbols (N, D) under `table`: -sum log2(freq / row sum)."""
    _check(symbols, contexts, table)
    rows = torch.from_numpy(_rows(table, contexts)).double()
    p = rows / rows.sum(1, keepdim=True)
    return float(-torch.log2(p.gather(1, (symbols - lo).reshape(-1, 1).long())).sum())


ROW_BUCKETS = 4
"""Buckets of `row_activity`: 0, 1-2, 3-5, 6 or more."""


def row_activity(above: torch.Tensor) -> torch.Tensor:
    """The symbols of the row above (w, D) -> the bucket of |above| + |above-left| + |above-right| per column
    and dimension, (w, D) int64 in 0..ROW_BUCKETS-1 (the first row has none: its callers use bucket 0)."""
    a = above.abs().to(torch.int64)
    t = a.clone()
    t[1:] += a[:-1]
    t[:-1] += a[1:]
    return torch.bucketize(t, torch.tensor([0, 2, 5]), right=False)


BLOCK_BUCKETS = 5
"""Buckets of `block_activity`: 0, 1-2, 3-8, 9-24, 25 or more non-zero symbols in a block."""


def block_activity(symbols: torch.Tensor) -> torch.Tensor:
    """Symbols (..., D) of a layer at some positions -> the bucket of each position's count of non-zero
    symbols, (...) int64 in 0..BLOCK_BUCKETS-1."""
    count = symbols.ne(0).sum(-1).contiguous()
    return torch.bucketize(count, torch.tensor([0, 2, 8, 24]), right=False)


def grid_contexts(symbols: torch.Tensor, layer_ctx: torch.Tensor, block: torch.Tensor | None = None) -> torch.Tensor:
    """Contexts of a grid's symbols (h, w, D) from its layer contexts (h, w, D) (`layer_contexts`):
    layer_ctx * ROW_BUCKETS + the activity of the row above (0 on the first row), (h, w, D) int64; with a
    block activity (h, w) (`block_activity` of some layer's symbols), that * BLOCK_BUCKETS + it."""
    act = torch.zeros_like(layer_ctx, dtype=torch.int64)
    for y in range(1, symbols.shape[0]):
        act[y] = row_activity(symbols[y - 1])
    ctx = layer_ctx.to(torch.int64) * ROW_BUCKETS + act
    return ctx if block is None else ctx * BLOCK_BUCKETS + block[..., None].to(torch.int64)


def encode_refinement_grid(symbols: torch.Tensor, layer_ctx: torch.Tensor, table: torch.Tensor, lo: int) -> bytes:
    """Symbols (h, w, D) of one layer on a latent grid, with their layer contexts, under `table`
    (C * ROW_BUCKETS, D, K) -> one stream, rows top to bottom (the order `decode_refinement_grid` reads), coded
    one row at a time (the frequency rows of one latent row in memory, not the grid's)."""
    h, w, d = symbols.shape
    if layer_ctx.shape != symbols.shape or table.dim() != 3 or table.shape[1] != d:
        raise ValueError(f"need symbols and layer contexts (h, w, D) and a table (C, D, K), got "
                         f"{tuple(symbols.shape)}, {tuple(layer_ctx.shape)}, {tuple(table.shape)}")
    k = table.shape[2]
    flat = symbols - lo
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= k):
        raise ValueError(f"symbols outside the table's alphabet [{lo}, {lo + k - 1}]")
    enc = IndexEncoder()
    for y in range(h):
        rows = row_frequencies(table, layer_ctx[y], symbols[y - 1] if y else None)
        enc.encode(flat[y].reshape(-1).cpu().numpy().astype(np.int64), rows)
    return enc.finish()


def row_frequencies(table: torch.Tensor, layer_ctx_row: torch.Tensor, above: torch.Tensor | None,
                    block: torch.Tensor | None = None) -> np.ndarray:
    """The frequency rows of one latent row's symbols, (w * D, K) int64 position-major: table (C * ROW_BUCKETS,
    D, K) at layer context (w, D) * ROW_BUCKETS + the activity of the row above's symbols (w, D) (None: the
    first row, bucket 0); with a block activity (w,) int64, the table is (C * ROW_BUCKETS * BLOCK_BUCKETS, D,
    K) and the context that * BLOCK_BUCKETS + it (as `grid_contexts`)."""
    w, d = layer_ctx_row.shape
    act = row_activity(above) if above is not None else torch.zeros((w, d), dtype=torch.int64)
    ctx = layer_ctx_row.to(torch.int64) * ROW_BUCKETS + act
    if block is not None:
        ctx = ctx * BLOCK_BUCKETS + block[:, None].to(torch.int64)
    if int(ctx.max()) >= table.shape[0] or int(ctx.min()) < 0:
        raise ValueError(f"contexts outside 0..{table.shape[0] - 1}")
    return table[ctx, torch.arange(d).expand(w, d)].reshape(w * d, -1).cpu().numpy().astype(np.int64)


def decode_refinement_grid(data: bytes, layer_ctx: torch.Tensor, table: torch.Tensor, lo: int) -> torch.Tensor:
    """A stream of `encode_refinement_grid` and the grid's layer contexts (h, w, D) -> its symbols (h, w, D)
    int64, one row per decoder call. VQFormatError for a damaged stream."""
    h, w, d = layer_ctx.shape
    if table.dim() != 3 or table.shape[1] != d:
        raise ValueError(f"table must be (C, {d}, K), got {tuple(table.shape)}")
    dec = IndexDecoder(data)
    out = torch.empty((h, w, d), dtype=torch.int64)
    for y in range(h):
        rows = row_frequencies(table, layer_ctx[y], out[y - 1] if y else None)
        out[y] = torch.from_numpy(dec.decode(rows)).reshape(w, d) + lo
    dec.check_finished()
    return out
