"""Residual-VQ path search in exact arithmetic: the same choices on any thread count and any machine.

A float search decides by float distances whose rounding depends on how a BLAS splits and orders its sums
(thread count, CPU, library version); where two candidates are within that rounding, the choice can flip.
Here every decision is the one exact integer arithmetic makes:

    latents and codebooks are snapped to the grid 2^-GRID_BITS (`snap`: round half to even, clamped to
    |value| <= LIMIT grid steps), held as float64 integers;
    a residual after s codes is a difference of such integers (|r| <= (s + 1) * LIMIT);
    exact scores come from one float64 matmul whose every partial sum is an integer below 2^53, so the
    result is exact whatever order or blocking the BLAS uses (FMA included).

The code index is folded into the score (key = K * (||c||^2 - 2 r.c) + k), so keys are unique and a top-k
over them has one answer: ties go to the smaller code, then (in the beam merge) to the earlier candidate.
`check_exact` verifies the 2^53 bound from the shapes before a search runs.

On the CPU a float32 screen decides instead where it provably gives that answer (`_stage_screened`: one
float32 matmul with a rigorous bound on its rounding, the least errors found by a two-level selection,
rows whose order the bound cannot settle re-ranked by exact errors, and rows that even this cannot settle
searched exactly), with residuals held as float32 integers (exact below 2^24). Each row's answer depends on
that row alone, so chunks (`rows`) can run in any order and on any threads (`map_chunks`).

Units: errors are int64 squared distances in grid units (latent units x 2^(2 * GRID_BITS)).
Shapes: x (N, D) float; codebooks S tensors (K, D) float; paths (N, s, s) int64 (ABSENT = -1 past each
row's depth); errors (N, s) int64.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch

__all__ = ["GRID_BITS", "LIMIT", "UNIT", "snap", "check_exact", "prefix_search_exact"]

GRID_BITS = 10
"""Latents and codes are snapped to multiples of 2^-10 (0.001 latent units; the shipped model's latents
are ~N(0, 1) per dimension and its depth-8 error is ~1e-2 per dimension)."""
LIMIT = 1 << 16
"""Largest snapped magnitude, in grid steps (64 latent units; the shipped model's latents stay below 12)."""
UNIT = 2.0 ** (-2 * GRID_BITS)
"""Latent squared-error units per grid unit of `prefix_search_exact`'s errors."""
_EXACT = 2**53  # float64 represents every integer below this
_EXACT32 = 2**24  # float32 represents every integer below this
_ROWS = 1024  # rows per chunk: the screen's (ROWS * beam, K) float32 scores, 8 MiB at beam 4, K 512
_BLOCK = 64  # block length of `_least`'s two-level selection
_RERANK = 4  # pairs beyond `keep` that `_rerank` reads exactly

ChunkMap = Callable[[Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], Sequence[torch.Tensor]],
                    Iterable[tuple[torch.Tensor, torch.Tensor]]]
"""How `prefix_search_exact` runs its chunks: map(fn, chunks) -> results in order (default: the builtin)."""


def snap(x: torch.Tensor) -> torch.Tensor:
    """float (any shape) -> float64 integers round(x * 2^GRID_BITS) (half to even), NaN -> 0, clamped to
    [-LIMIT, LIMIT]: the grid the exact search works on."""
    return torch.nan_to_num(x.detach().double() * float(1 << GRID_BITS)).round_().clamp_(-LIMIT, LIMIT)


def check_exact(dim: int, num_codes: int, num_stages: int, beam: int) -> None:
    """Raise ValueError unless every integer `prefix_search_exact` forms for these shapes stays below 2^53
    (scores are K * (2 * D * |r| * LIMIT + D * LIMIT^2) + K with |r| <= num_stages * LIMIT; merge keys are
    errors (<= D * ((num_stages + 1) * LIMIT)^2) times beam * beam)."""
    r = num_stages * LIMIT
    score = num_codes * (2 * dim * r * LIMIT + dim * LIMIT * LIMIT) + num_codes
    merge = dim * ((num_stages + 1) * LIMIT) ** 2 * max(beam, 1) ** 2 + max(beam, 1) ** 2
    if max(score, merge) >= _EXACT:
        raise ValueError(f"a residual VQ of {num_stages} stages x {num_codes} codes x {dim} dims (beam {beam}) is "
                         "too large for the exact search; use the float search (exact=False)")


def _screen_fits(dim: int, num_codes: int, num_stages: int, beam: int) -> bool:
    """Whether `_stage_screened` applies to these shapes: residuals (|r| <= (num_stages + 1) * LIMIT) are
    exact in float32, the screen's sums are short enough for its bound ((dim + 2) 2^-24 <= 1e-3), the
    re-ranking keys error * beam * K + pair (int64) do not overflow, and float32 matmuls run in IEEE float32
    (torch's float32 matmul precision "highest")."""
    largest = (num_stages + 1) * LIMIT
    keys = (dim * largest * largest + 1) * max(beam, 1) * num_codes
    return (largest < _EXACT32 and (dim + 2) * 2.0**-24 <= 1e-3 and keys < 2**63
            and torch.get_float32_matmul_precision() == "highest")


@dataclass(frozen=True)
class _Book:
    """One stage's snapped codebook in the forms the search reads. codes (K, D) float64 integers; keys
    (D + 1, K) float64 with r @ keys[:-1] + keys[-1] = K * (||c||^2 - 2 r.c) + k; extended (K, D + 2)
    [c, 0, 0] in the residuals' dtype, what a code takes from an extended residual row (`_take`); screen
    (D + 2, K) float32 [-2 C^T; fl32(||c||^2); 1], which an extended row [r, 1, fl32(||r||^2)] multiplies
    into its float32 errors with every code (`_stage_screened`); norm_max: the largest ||c||."""

    codes: torch.Tensor
    keys: torch.Tensor
    extended: torch.Tensor
    screen: torch.Tensor
    norm_max: float


def _book(code: torch.Tensor, dtype: torch.dtype = torch.float64) -> _Book:
    """Snapped codebook (K, D) float64 -> its `_Book`, for residuals of `dtype`."""
    k = code.shape[0]
    sq = (code * code).sum(1)
    bias = k * sq + torch.arange(k, dtype=torch.float64, device=code.device)
    keys = torch.cat([code.T * (-2.0 * k), bias[None]], dim=0)
    extended = torch.cat([code, code.new_zeros(k, 2)], dim=1).to(dtype)
    screen = torch.cat([code.T * -2.0, sq[None], torch.ones_like(sq)[None]], dim=0).float().contiguous()
    return _Book(code, keys, extended, screen, float(sq.max()) ** 0.5)


def _extend(residual: torch.Tensor, r_sq: torch.Tensor) -> torch.Tensor:
    """Residuals (n, b, D) and their exact squared norms (n, b) float64 -> extended rows (n, b, D + 2)
    [r, 1, ||r||^2] in residual's dtype (the norm rounded to it)."""
    return torch.cat([residual, torch.ones_like(residual[..., :1]), r_sq[..., None].to(residual.dtype)], dim=2)


def _take(rows: torch.Tensor, parent: torch.Tensor, code: torch.Tensor,
          extended: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Extended rows (n, b, D + 2) [r, 1, ||r||^2] (float integers), parents and codes (n, j) int64 ->
    the rows of r[parent] - c[code] (n, j, D + 2), extended the same way, and their exact squared norms
    (n, j) float64. extended: the stage's `_Book.extended` (rows' dtype)."""
    n, b, w = rows.shape
    j = parent.shape[1]
    at = (parent + torch.arange(n, device=rows.device)[:, None] * b).reshape(-1)
    out = rows.reshape(n * b, w).index_select(0, at).sub_(extended.index_select(0, code.reshape(-1)))
    r = out[:, : w - 2].double()
    r_sq = (r * r).sum(1)  # exact: integers below 2^53
    out[:, w - 1] = r_sq
    return out.view(n, j, w), r_sq.view(n, j)


def _stage_exact(residual: torch.Tensor, book: _Book, width: int, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One beam step, exactly. residual (n, b, D) float64 integers, best candidate first -> (parent, code),
    each (n, keep) int64: the `keep` least-error (candidate, code) pairs of the row, in the order least
    ||r - c||^2, then earlier candidate, then smaller code (`width` codes per candidate considered)."""
    n, b, d = residual.shape
    k = book.codes.shape[0]
    flat = residual.reshape(n * b, d)
    keys = torch.addmm(book.keys[-1], flat, book.keys[:-1])  # (n*b, K) = K * (||c||^2 - 2 r.c) + k, exact
    best, code = keys.topk(width, dim=1, largest=False)  # ascending; unique keys: one answer
    err = (best - code.double()) / k + (flat * flat).sum(1, keepdim=True)  # exact ||r - c||^2, (n*b, width)
    m = b * width
    merged = err.reshape(n, m) * m + torch.arange(m, dtype=torch.float64, device=residual.device)
    _, pick = merged.topk(keep, dim=1, largest=False)
    return pick // width, torch.gather(code.reshape(n, m), 1, pick)


def _least(scores: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The t least scores of each row of (n, m) float32, ascending -> (values (n, t), columns (n, t) int64),
    as `topk` finds them (the same values; among equal values, any columns).

    Two levels where m has enough `_BLOCK`-long blocks: the t blocks of least minimum, then the t least of
    their t * _BLOCK scores. Exact: if some score among the t least lay in another block, each of the t
    chosen blocks would hold a score (its minimum) not above it, so the t least scores of the chosen blocks
    are, value for value, at most the row's t least, hence equal to them."""
    n, m = scores.shape
    blocks = m // _BLOCK
    if m % _BLOCK or blocks < 4 * t:
        return scores.topk(t, dim=1, largest=False)
    _, block = scores.view(n, blocks, _BLOCK).amin(2).topk(t, dim=1, largest=False)  # (n, t)
    at = (block + torch.arange(n, device=scores.device)[:, None] * blocks).reshape(-1)
    values, j = scores.view(n * blocks, _BLOCK).index_select(0, at).view(n, t * _BLOCK).topk(t, dim=1, largest=False)
    return values, torch.gather(block, 1, j // _BLOCK) * _BLOCK + j % _BLOCK


def _slack(r_sq: torch.Tensor, book: _Book, dim: int) -> torch.Tensor:
    """Bound on |float32 screen error - exact error| over a row's pairs: exact squared norms r_sq (n, b)
    float64 -> (n,) float64 grid units (`_stage_screened` derives it)."""
    return 1.01 * (dim + 3) * 2.0**-24 * (r_sq.amax(1).sqrt() + book.norm_max) ** 2 + 1.0


def _rerank(rows: torch.Tensor, scores: torch.Tensor, slack: torch.Tensor, book: _Book, width: int,
            keep: int) -> torch.Tensor:
    """`_stage_exact`'s answer as pair columns (candidate * K + code, (n, keep) int64) for rows whose screen
    did not settle it: extended rows (n, b, D + 2) float32, their screen scores (n, b * K) and slack (n,).

    The exact errors of the t = keep + `_RERANK` least-scored pairs are ranked by the key error * b * K +
    column (unique; the exact order: error, then candidate, then code). That is the answer when the t-th
    least score exceeds the keep-th by more than 2 slack: every pair not read scores at least the t-th, so
    its exact error exceeds the keep-th least score + slack, which bounds the exact errors of `keep` pairs
    read. Rows where it does not go through `_stage_exact`."""
    n, b, w = rows.shape
    k, m = book.codes.shape[0], scores.shape[1]
    t = min(keep + _RERANK, m)
    values, col = scores.topk(t, dim=1, largest=False)
    _, err = _take(rows, col // k, col % k, book.extended)
    _, pick = (err.to(torch.int64) * m + col).topk(keep, dim=1, largest=False)
    out = torch.gather(col, 1, pick)
    if t < m:
        v = values.double()
        unsure = (v[:, t - 1] - v[:, keep - 1] <= 2.0 * slack).nonzero()[:, 0]
        if len(unsure):
            parent, code = _stage_exact(rows[unsure, :, : w - 2].double(), book, width, keep)
            out[unsure] = parent * k + code
    return out


def _stage_screened(rows: torch.Tensor, r_sq: torch.Tensor, book: _Book, width: int, keep: int,
                    scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`_stage_exact`'s answer from float32 scores, for CPU tensors (IEEE float32 BLAS). rows: extended
    residuals (n, b, D + 2) float32 [r, 1, fl32(||r||^2)], r integers below 2^24; r_sq (n, b) float64
    their exact squared norms; scores: a float32 buffer of at least n * b * K elements.

    One matmul rows @ `_Book.screen` gives every pair's error e~ = fl(sum of the D + 2 products r_i (-2 c_i),
    fl32(||c||^2) * 1, 1 * fl32(||r||^2)), within E = 1.01 (D + 3) 2^-24 (||r|| + max||c||)^2 + 1 of the
    exact e = ||r - c||^2 whatever the summation order (FMA or not): its entries are exact in float32, a
    float sum of m = D + 2 products errs by at most gamma_m = m u / (1 - m u) (u = 2^-24) times the sum of
    their magnitudes, 2 sum|r_i c_i| + (||c||^2 + ||r||^2)(1 + u) <= (||r|| + ||c||)^2 (1 + u), the two
    squared norms round by u (||r||^2 + ||c||^2) at most, and 1.01 and + 1 cover gamma's denominator (m u
    <= 1e-3, `_screen_fits`) and the float64 arithmetic of the bound. `_slack` takes E per row (the
    largest over its candidates).

    Of the keep + 1 least e~ of the row's b * K pairs (`_least`), when consecutive ones are more than 2 E
    apart the first `keep` pairs, in order, are the exact answer: their exact errors are in the same strict
    order, and any other pair scores at least the (keep + 1)-th, so its exact error exceeds the keep-th's.
    (`_stage_exact` keeps `width` codes per candidate before merging, but keep <= width or all K codes are
    kept, so the merge's `keep` least pairs are the row's.) Other rows go through `_rerank`."""
    n, b, w = rows.shape
    k = book.codes.shape[0]
    m = b * k
    approx = torch.mm(rows.view(n * b, w), book.screen, out=scores[: n * m].view(n * b, k)).view(n, m)
    values, col = _least(approx, min(keep + 1, m))
    slack = _slack(r_sq, book, w - 2)
    v = values.double()
    sure = (v[:, 1:] - v[:, :-1] > 2.0 * slack[:, None]).all(1)
    col = col[:, :keep]
    unsure = (~sure).nonzero()[:, 0]
    if len(unsure):
        col[unsure] = _rerank(rows[unsure], approx[unsure], slack[unsure], book, width, keep)
    return col // k, col % k


def _search_chunk(x: torch.Tensor, books: list[_Book], beam: int, screened: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`prefix_search_exact` on one chunk of snapped rows x (n, D) float64; screened: decide by
    `_stage_screened` (residuals in float32), else by `_stage_exact` (float64); books made for that dtype."""
    n, d = x.shape
    s = len(books)
    dtype = torch.float32 if screened else torch.float64
    paths_out = torch.full((n, s, s), -1, dtype=torch.int64, device=x.device)
    errors_out = torch.empty((n, s), dtype=torch.int64, device=x.device)
    r_sq = (x * x).sum(1)[:, None]  # (n, b) exact squared norms, b candidates per row, best first
    rows = _extend(x.to(dtype)[:, None, :], r_sq)  # (n, b, D + 2)
    paths = torch.empty((n, 1, 0), dtype=torch.int64, device=x.device)
    scores = torch.empty(n * beam * max(b.codes.shape[0] for b in books), device=x.device) if screened else None
    for stage, book in enumerate(books):
        width = 1 if stage == 0 else min(beam, book.codes.shape[0])  # stage 1 stays greedy
        keep = min(beam, rows.shape[1] * width)
        if screened:
            parent, code = _stage_screened(rows, r_sq, book, width, keep, scores)
        else:
            parent, code = _stage_exact(rows[..., :d].double(), book, width, keep)
        rows, r_sq = _take(rows, parent, code, book.extended)
        paths = torch.cat([torch.gather(paths, 1, parent[..., None].expand(-1, -1, paths.shape[2])),
                           code[..., None]], dim=2)
        paths_out[:, stage, : stage + 1] = paths[:, 0]
        errors_out[:, stage] = r_sq[:, 0].to(torch.int64)  # exact
    return paths_out, errors_out


@torch.no_grad()
def prefix_search_exact(x: torch.Tensor, codebooks: list[torch.Tensor], beam: int = 1, rows: int = _ROWS,
                        map_chunks: ChunkMap = map, parts: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The best path at every depth by beam search, decided exactly on the snapped grid.

    x: (N, D) float latents; codebooks: the S stages' (K, D) float codebooks to search (S >= 1).
    Returns paths (N, S, S) int64, row d-1 the best d-stage path found (ABSENT -1 past d), and errors (N, S)
    int64, that path's squared distance on the grid (`UNIT` latent units each). Stage 1 is greedy (the
    nearest code), later stages keep the `beam` least-error partial paths per row (beam 1: greedy).
    Each row's result depends only on that row, so any split into chunks gives the same answer, and
    `map_chunks` may run the chunks anywhere (e.g. a thread pool; called with a function of one chunk (n, D)
    float64 and the list of chunks, it returns their results in order, under torch.no_grad()). The chunks
    are near-equal, of at most `rows` rows, and as many as a multiple of `parts` (the chunks `map_chunks`
    runs at once) where there are enough rows.
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    n, d = x.shape
    k = max(c.shape[0] for c in codebooks)
    check_exact(d, k, len(codebooks), beam)
    screened = x.device.type == "cpu" and _screen_fits(d, k, len(codebooks), beam)
    books = [_book(snap(c).to(x.device), torch.float32 if screened else torch.float64) for c in codebooks]
    s = len(books)
    if n == 0:
        return (torch.empty((0, s, s), dtype=torch.int64, device=x.device),
                torch.empty((0, s), dtype=torch.int64, device=x.device))
    chunks = -(-n // max(1, rows))
    chunks = min(n, -(-chunks // max(1, parts)) * max(1, parts))
    out = list(map_chunks(lambda chunk: _search_chunk(chunk, books, beam, screened), snap(x).tensor_split(chunks)))
    return torch.cat([p for p, _ in out]), torch.cat([e for _, e in out])
