"""Residual-VQ path search in exact arithmetic: the same choices on any thread count and any machine.

A float search decides by float distances whose rounding depends on how a BLAS splits and orders its sums
(thread count, CPU, library version); where two candidates are within that rounding, the choice can flip.
Here every quantity a decision reads is an integer computed exactly:

    latents and codebooks are snapped to the grid 2^-GRID_BITS (`snap`: round half to even, clamped to
    |value| <= LIMIT grid steps), held as float64 integers;
    a residual after s codes is a difference of such integers (|r| <= (s + 1) * LIMIT);
    scores come from one float64 matmul whose every partial sum is an integer below 2^53, so the result
    is exact whatever order or blocking the BLAS uses (FMA included).

The code index is folded into the score (key = K * (||c||^2 - 2 r.c) + k), so keys are unique and a top-k
over them has one answer: ties go to the smaller code, then (in the beam merge) to the earlier candidate.
`check_exact` verifies the 2^53 bound from the shapes before a search runs.

Units: errors are int64 squared distances in grid units (latent units x 2^(2 * GRID_BITS)).
Shapes: x (N, D) float; codebooks S tensors (K, D) float; paths (N, s, s) int64 (ABSENT = -1 past each
row's depth); errors (N, s) int64.
"""
from __future__ import annotations

from dataclasses import dataclass

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
_ROWS = 4096  # rows per chunk: (ROWS * beam, K) float32 screen scores, 32 MiB at beam 4, K 512


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


@dataclass(frozen=True)
class _Book:
    """One stage's snapped codebook in the forms the search reads. codes (K, D) float64 integers; sq (K,)
    float64 ||c||^2; keys (D + 1, K) float64 with r @ keys[:-1] + keys[-1] = K * (||c||^2 - 2 r.c) + k;
    minus2_t (D, K) = -2 C^T and sq32 (K,) float32 copies for the float screen (-2 C^T is exact in float32);
    norm_max, sq_max: the largest ||c|| and ||c||^2."""

    codes: torch.Tensor
    sq: torch.Tensor
    keys: torch.Tensor
    minus2_t: torch.Tensor
    sq32: torch.Tensor
    norm_max: float
    sq_max: float


def _book(code: torch.Tensor) -> _Book:
    """Snapped codebook (K, D) float64 -> its `_Book`."""
    k = code.shape[0]
    sq = (code * code).sum(1)
    bias = k * sq + torch.arange(k, dtype=torch.float64, device=code.device)
    keys = torch.cat([code.T * (-2.0 * k), bias[None]], dim=0)
    sq_max = float(sq.max())
    return _Book(code, sq, keys, (code.T * -2.0).float().contiguous(), sq.float(), sq_max ** 0.5, sq_max)


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


def _stage_screened(residual: torch.Tensor, book: _Book, width: int, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`_stage_exact`'s answer from float32 scores, for CPU tensors (IEEE float32 BLAS).

    The float32 scores s~ = fl(fl(-2 r.c) + fl(||c||^2)) of all K codes (a matmul, then one elementwise add)
    are within e = 1.01 2^-24 ((D + 2) 2 ||r|| max||c|| + 2 max||c||^2) + 1 of the exact ones, whatever the
    matmul's summation order: its operands are exact in float32 (integers below 2^24) and its D - 1 sums
    and D products round relative to partial sums bounded by 2 sum|r_i c_i| <= 2 ||r|| ||c|| (gamma_D);
    ||c||^2 rounds once to float32 and the add once more; 1.01 and the + 1 cover the gamma factors and the
    float64 arithmetic of the bound and of s~ + ||r||^2. Per candidate
    the `width + 1` least s~ are taken; over these pairs the `keep + 1` least errors s~ + ||r||^2 (each within
    E = max e + 1 of exact) decide a row when they are more than 2 E apart: then the kept pairs and their
    order are the exact ones (a pair not taken scores at least its candidate's (width + 1)-th, which is not
    above the (keep + 1)-th least since keep <= width or all K codes were taken). Other rows go through
    `_stage_exact`."""
    n, b, d = residual.shape
    k = book.codes.shape[0]
    flat = residual.reshape(n * b, d)
    approx = torch.mm(flat.float(), book.minus2_t).add_(book.sq32)  # (n*b, K) float32, the bias added once
    t = min(width + 1, k)
    near_s, near = approx.topk(t, dim=1, largest=False)
    r_sq = (flat * flat).sum(1)
    slack = 1.01 * 2.0 ** -24 * ((d + 2) * 2.0 * r_sq.sqrt() * book.norm_max + 2.0 * book.sq_max) + 1.0  # (n*b,)
    row_slack = slack.view(n, b).amax(1)
    err = (near_s.double() + r_sq[:, None]).reshape(n, b * t)  # candidate-major: pair j*t + i
    upto = min(keep + 1, b * t)
    order, pick = err.topk(upto, dim=1, largest=False)
    sure = (order[:, 1:] - order[:, :-1] > 2.0 * row_slack[:, None]).all(1)
    pick = pick[:, :keep]
    parent, code = pick // t, torch.gather(near.reshape(n, b * t), 1, pick)
    if not bool(sure.all()):
        redo = (~sure).nonzero()[:, 0]
        parent[redo], code[redo] = _stage_exact(residual[redo], book, width, keep)
    return parent, code


def _search_chunk(x: torch.Tensor, books: list[_Book], beam: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`prefix_search_exact` on one chunk of snapped rows x (n, D) float64."""
    n, d = x.shape
    s = len(books)
    paths_out = torch.full((n, s, s), -1, dtype=torch.int64, device=x.device)
    errors_out = torch.empty((n, s), dtype=torch.int64, device=x.device)
    residual = x[:, None, :]  # (n, b, D): b candidates per row, best first
    paths = torch.empty((n, 1, 0), dtype=torch.int64, device=x.device)
    step = _stage_screened if x.device.type == "cpu" else _stage_exact
    for stage, book in enumerate(books):
        width = 1 if stage == 0 else min(beam, book.codes.shape[0])  # stage 1 stays greedy
        keep = min(beam, residual.shape[1] * width)
        parent, code = step(residual, book, width, keep)
        residual = torch.gather(residual, 1, parent[..., None].expand(-1, -1, d)) - book.codes[code]
        paths = torch.cat([torch.gather(paths, 1, parent[..., None].expand(-1, -1, paths.shape[2])),
                           code[..., None]], dim=2)
        paths_out[:, stage, : stage + 1] = paths[:, 0]
        errors_out[:, stage] = (residual[:, 0] * residual[:, 0]).sum(1).to(torch.int64)  # exact
    return paths_out, errors_out


@torch.no_grad()
def prefix_search_exact(x: torch.Tensor, codebooks: list[torch.Tensor], beam: int = 1,
                        rows: int = _ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """The best path at every depth by beam search, decided exactly on the snapped grid.

    x: (N, D) float latents; codebooks: the S stages' (K, D) float codebooks to search (S >= 1).
    Returns paths (N, S, S) int64, row d-1 the best d-stage path found (ABSENT -1 past d), and errors (N, S)
    int64, that path's squared distance on the grid (`UNIT` latent units each). Stage 1 is greedy (the
    nearest code), later stages keep the `beam` least-error partial paths per row (beam 1: greedy).
    Each row's result depends only on that row, so any split into chunks (`rows`) gives the same answer.
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    n, d = x.shape
    check_exact(d, max(c.shape[0] for c in codebooks), len(codebooks), beam)
    books = [_book(snap(c).to(x.device)) for c in codebooks]
    s = len(books)
    if n == 0:
        return (torch.empty((0, s, s), dtype=torch.int64, device=x.device),
                torch.empty((0, s), dtype=torch.int64, device=x.device))
    out = [_search_chunk(chunk, books, beam) for chunk in snap(x).split(rows)]
    return torch.cat([p for p, _ in out]), torch.cat([e for _, e in out])
