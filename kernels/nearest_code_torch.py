"""CPU nearest-codebook search: blocked addmm + a grouped argmin, never forming the N x K matrix.

For a block of rows x_b (N_b, D), one `torch.addmm` writes the scores

    s[n, k] = ||e_k||^2 - 2 x_n . e_k          (N_b, K) float32, into one reused buffer

(BLAS does the -2 scaling and the broadcast add of ||e||^2), and the block's minimum and argmin
are written straight into the output slices; ||x_n||^2 is then added to the block's N_b minima
only. Peak extra memory beyond the (N,) outputs is one (N_b, K) float32 buffer (about
`DEFAULT_BLOCK_BYTES`) plus O(N_b * (D + K/16)) temporaries, independent of N.

Why a grouped argmin: torch's min-with-index along a row costs ~1 ns per element on one core
(as much as half the matmul that produced the row), while the value-only `amin` vectorises
(~0.07 ns). So for K >= 64 the codes are split in groups of 16 consecutive codes, and the
codebook rows are permuted so that the block buffer reads as (N_b, 16, M), M = K/16: buffer
column g*M + m holds code m*16 + g. Then, per block,
  1. colmin = amin over the 16 -> (N_b, M), the minimum of every group      (vectorised pass)
  2. torch.min(colmin, dim=1): the minimum and the first group holding it   (N_b x M work)
  3. torch.argmin over that group's 16 gathered scores: first code at it    (N_b x 16 work)
The first group holding the minimum contains the smallest code index attaining it, so exact ties
still go to the smallest index, as with torch.argmin. Measured single-threaded on this machine's
EPYC, 2048-row blocks, K = 512: ~0.5 ms instead of ~1.0 ms of reduction per block, next to ~1.9 ms
of matmul. K is padded to a multiple of 16 with zero codes whose ||e||^2 is +inf.

Everything runs in float32 under torch.no_grad(); the code is plain torch and also runs on CUDA
tensors, but the fused Triton kernel is the GPU path.
"""
from __future__ import annotations

import torch

from .reference import check_inputs

__all__ = ["DEFAULT_BLOCK_BYTES", "GROUP", "default_block_rows", "prepare_codebook", "score_columns",
           "nearest_code_torch"]

DEFAULT_BLOCK_BYTES = 4 << 20  # 4 MiB score buffer: 2048 rows at K = 512
GROUP = 16  # codes per group of the grouped argmin
_MIN_GROUPED_K = 64  # below this a plain torch.min over the row is as fast
_MIN_BLOCK_ROWS = 16
_MAX_BLOCK_ROWS = 1 << 16  # bounds the (N_b, D) temporaries when K is tiny


def score_columns(num_codes: int) -> int:
    """Buffer columns used for K codes: K itself, or K rounded up to a multiple of GROUP."""
    if num_codes < _MIN_GROUPED_K:
        return num_codes
    return -(-num_codes // GROUP) * GROUP


def default_block_rows(num_codes: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Rows per block so that one (rows, K) float32 score buffer is about `block_bytes`.

    Returns a value in [16, 65536]; e.g. 2048 rows for K = 512 with the default 4 MiB.
    """
    if num_codes < 1:
        raise ValueError(f"num_codes must be >= 1, got {num_codes}")
    rows = block_bytes // (4 * score_columns(num_codes))
    return int(min(_MAX_BLOCK_ROWS, max(_MIN_BLOCK_ROWS, rows)))


def prepare_codebook(codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 codebook with unusable codes neutralised, and its squared norms.

    Args:
        codebook: (K, D) float, any device.
    Returns:
        codes: (K, D) float32 contiguous; rows that contain NaN/inf, or whose squared norm
            overflows float32, are replaced by zeros.
        sq_norms: (K,) float32, ||e_k||^2 as a plain sum of squares (exact on small integers),
            and +inf for the neutralised rows, so that their score ||e_k||^2 - 2 x.e_k =
            inf - 0 is never below a usable code's finite score.
    This is O(K * D) work (128 KiB for K=512, D=64) and needs no host-device synchronisation.
    """
    codes = codebook.detach().to(torch.float32).contiguous()
    sq_norms = (codes * codes).sum(dim=1)
    usable = torch.isfinite(sq_norms)
    zero = torch.zeros((), dtype=codes.dtype, device=codes.device)
    codes = torch.where(usable[:, None], codes, zero)
    sq_norms = torch.where(usable, sq_norms, torch.full_like(zero, float("inf")))
    return codes, sq_norms


def _grouped_layout(codes: torch.Tensor, sq_norms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad K to M*GROUP (zero codes at +inf) and permute: row g*M + m <- code m*GROUP + g."""
    k, d = codes.shape
    k_pad = score_columns(k)
    m = k_pad // GROUP
    if k_pad != k:
        codes = torch.cat([codes, codes.new_zeros(k_pad - k, d)])
        sq_norms = torch.cat([sq_norms, sq_norms.new_full((k_pad - k,), float("inf"))])
    codes = codes.view(m, GROUP, d).transpose(0, 1).reshape(k_pad, d)
    sq_norms = sq_norms.view(m, GROUP).t().reshape(k_pad)
    return codes, sq_norms


def nearest_code_torch(
    x: torch.Tensor, codebook: torch.Tensor, *, block_rows: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest code under squared L2 by blocked matmul + argmin (see module docstring).

    Args:
        x: (N, D) float (any floating dtype and strides; each block is cast to float32).
        codebook: (K, D) float on x's device.
        block_rows: rows of x per block; default `default_block_rows(K)`.
    Returns:
        indices: (N,) int64, smallest index on exact score ties.
        sq_dist: (N,) float32, max(||x_n||^2 + min_k(||e_k||^2 - 2 x_n.e_k), 0).
    Non-finite input behaves as documented in `vqcodec.kernels.nearest_code`.
    """
    check_inputs(x, codebook)
    n = x.shape[0]
    k = codebook.shape[0]
    if block_rows is None:
        block_rows = default_block_rows(k)
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    device = x.device
    indices = torch.empty(n, dtype=torch.int64, device=device)
    sq_dist = torch.empty(n, dtype=torch.float32, device=device)
    if n == 0:
        return indices, sq_dist

    with torch.no_grad():
        codes, code_sq = prepare_codebook(codebook)
        grouped = k >= _MIN_GROUPED_K
        if grouped:
            codes, code_sq = _grouped_layout(codes, code_sq)
        k_pad = codes.shape[0]
        m = k_pad // GROUP
        codes_t = codes.t()  # (D, K_pad) view: BLAS reads it transposed, no copy
        bias = code_sq.unsqueeze(0)  # (1, K_pad), broadcast by addmm over the block's rows
        rows = min(block_rows, n)
        scores = torch.empty((rows, k_pad), dtype=torch.float32, device=device)
        x_sq = torch.empty(rows, dtype=torch.float32, device=device)
        if grouped:
            group_idx = torch.empty(rows, dtype=torch.int64, device=device)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            nb = stop - start
            xb = x[start:stop].detach()
            if xb.dtype != torch.float32:
                xb = xb.to(torch.float32)
            sb = scores[:nb]
            torch.addmm(bias, xb, codes_t, beta=1.0, alpha=-2.0, out=sb)
            vals = sq_dist[start:stop]
            if grouped:
                b3 = sb.view(nb, GROUP, m)
                colmin = torch.amin(b3, dim=1)  # (nb, M): minimum of every group
                grp = group_idx[:nb]
                torch.min(colmin, dim=1, out=(vals, grp))  # first group holding the minimum
                members = torch.gather(b3, 2, grp.view(nb, 1, 1).expand(nb, GROUP, 1))
                pos = torch.argmin(members.view(nb, GROUP), dim=1)  # first member at the min
                torch.add(pos, grp, alpha=GROUP, out=indices[start:stop])
            else:
                torch.min(sb, dim=1, out=(vals, indices[start:stop]))
            xsq = torch.sum(xb * xb, dim=1, out=x_sq[:nb])
            vals.add_(xsq).clamp_(min=0.0)
            # Rows whose squared norm is not finite (NaN/inf entries, or overflow): index 0 and
            # sq_dist = ||x||^2, i.e. NaN if the row has a NaN, else +inf.
            bad = ~(xsq < float("inf"))
            indices[start:stop].masked_fill_(bad, 0)
            torch.where(bad, xsq, vals, out=vals)
    return indices, sq_dist
