"""Fused nearest-codebook search as one Triton kernel (GPU path; CPU only under TRITON_INTERPRET=1).

Each program owns BLOCK_N rows of x. It loads them once (a (BLOCK_N, BLOCK_D) float32 tile, D
zero-padded by masking to a power of two >= 16 as tl.dot needs), computes their squared norms,
then streams the codebook through in (BLOCK_D, BLOCK_K) tiles. For each tile it forms the scores
s = ||e||^2 - 2 x.e with tl.dot(input_precision="ieee") (true fp32 FMA, TF32 off), takes the
tile's row minimum with the left-most index, and folds it into a running (min, argmin) with a
strict `<`, so ties go to the smallest code index as with torch.argmin. Only N int64 indices and
N float32 distances are written: the N x K distance matrix never exists. (For D > 128 the x
tile would not fit in registers, so the rows are re-read in 32-wide D chunks for every codebook
tile instead; those re-reads hit L1/L2, not HBM.) Tile sizes: see `launch_config`.

Roofline on an H100 SXM (3.35 TB/s HBM, ~67 TFLOP/s FP32 FMA, ~495 TFLOP/s TF32 dense), for
N = 2^20 latent vectors, K = 512 codes, D = 64, float32:

  FLOPs (both variants): the x.e products are 2*N*K*D = 2^36 = 68.7 GFLOP; the bias add and
  min-compare add ~2*N*K = 1.1 GFLOP and ||x||^2 0.13 GFLOP: ~70 GFLOP in total.

  Fused (this kernel), HBM traffic:
    read x      N*D*4 = 268.4 MB
    read e      K*D*4 = 0.13 MB (each program re-reads it, but 128 KiB stays in L2)
    write idx   N*8   =   8.4 MB,   write dist N*4 = 4.2 MB
    total             ~ 281 MB  -> 281e6 / 3.35e12   =  0.08 ms memory time
    compute           70e9 / 67e12                    =  1.05 ms (ieee fp32)
    intensity ~250 FLOP/B, far above the FP32 ridge (67e12/3.35e12 = 20 FLOP/B):
    compute-bound, ~1.05 ms; with TF32 (not used, inexact) it would be ~0.14 ms.

  Unfused (GEMM kernel writes the N x K fp32 matrix, then an argmin kernel re-reads it):
    read x 268.4 MB + write N*K*4 = 2147.5 MB + re-read 2147.5 MB + write outputs 12.6 MB
    total ~ 4576 MB -> 1.37 ms of memory traffic alone, plus a 2 GiB temporary.
    GEMM kernel  max(1.05 ms compute, (268 + 2147) MB / 3.35 TB/s = 0.72 ms) = 1.05 ms
    argmin       2147 MB / 3.35 TB/s                                         = 0.64 ms
    intensity 70e9 / 4576e6 = 15 FLOP/B, below the ridge: memory-bound.
    Bound ~ 1.7 ms, so fusion gives ~1.6x in fp32. Even an unfused TF32 GEMM (0.14 ms of math
    hidden behind 1.36 ms of matrix traffic) is slower than the fused fp32 kernel, and the fused
    kernel needs no 2 GiB temporary.

These are bounds, not measurements: a real ieee tl.dot reaches only part of the FMA peak. This
project's machines have no GPU: the kernel runs in the tests under the Triton interpreter (exact
semantics, numpy arithmetic) and is compiled ahead of time for sm_90a there (no spills, no
tensor-core instructions in the PTX), but its tile sizes are untimed on hardware.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .nearest_code_torch import prepare_codebook
from .reference import check_inputs

__all__ = ["TRITON_AVAILABLE", "LaunchConfig", "is_interpreted", "launch_config", "padded_dim",
           "nearest_code_triton"]

try:  # optional dependency: the package must import without triton
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised by a subprocess test
    triton = None
    tl = None

TRITON_AVAILABLE = triton is not None

_MAX_SINGLE_TILE_D = 128  # beyond this the x tile is split into D chunks (register pressure)
_LARGE_N = 128 * 264  # two waves of 128-row programs on a 132-SM H100


def padded_dim(d: int) -> int:
    """Power of two >= max(d, 16): the padded feature width one D chunk of the kernel uses."""
    return max(16, 1 << max(0, int(d) - 1).bit_length())


if TRITON_AVAILABLE:

    @triton.jit
    def _nearest_code_kernel(
        x_ptr, e_ptr, esq_ptr, idx_ptr, dist_ptr,
        N, K, D,
        stride_xn, stride_xd, stride_ek, stride_ed,
        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
        D_CHUNKS: tl.constexpr,
    ):
        pid = tl.program_id(0)
        rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        n_mask = rn < N
        rn64 = rn.to(tl.int64)
        rd = tl.arange(0, BLOCK_D)

        # ||x||^2 of this program's rows (and, for one chunk, the x tile kept for the whole loop).
        if D_CHUNKS == 1:
            xmask = n_mask[:, None] & (rd < D)[None, :]
            x = tl.load(x_ptr + rn64[:, None] * stride_xn + rd[None, :] * stride_xd,
                        mask=xmask, other=0.0).to(tl.float32)
            x_sq = tl.sum(x * x, axis=1)
            ok = x_sq < float("inf")  # False for NaN, inf, or overflowing rows
            x = tl.where(ok[:, None], x, 0.0)
        else:
            x_sq = tl.zeros((BLOCK_N,), dtype=tl.float32)
            for c in range(D_CHUNKS):
                rdc = c * BLOCK_D + rd
                xc = tl.load(x_ptr + rn64[:, None] * stride_xn + rdc[None, :] * stride_xd,
                             mask=n_mask[:, None] & (rdc < D)[None, :], other=0.0).to(tl.float32)
                x_sq += tl.sum(xc * xc, axis=1)
            ok = x_sq < float("inf")

        best = tl.full((BLOCK_N,), float("inf"), dtype=tl.float32)
        best_idx = tl.zeros((BLOCK_N,), dtype=tl.int32)
        for k0 in range(0, K, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            k_mask = rk < K
            rk64 = rk.to(tl.int64)
            if D_CHUNKS == 1:
                e = tl.load(e_ptr + rk64[None, :] * stride_ek + rd[:, None] * stride_ed,
                            mask=k_mask[None, :] & (rd < D)[:, None], other=0.0)
                xe = tl.dot(x, e, input_precision="ieee")
            else:
                xe = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
                for c in range(D_CHUNKS):
                    rdc = c * BLOCK_D + rd
                    xc = tl.load(x_ptr + rn64[:, None] * stride_xn + rdc[None, :] * stride_xd,
                                 mask=n_mask[:, None] & (rdc < D)[None, :], other=0.0).to(tl.float32)
                    xc = tl.where(ok[:, None], xc, 0.0)
                    ec = tl.load(e_ptr + rk64[None, :] * stride_ek + rdc[:, None] * stride_ed,
                                 mask=k_mask[None, :] & (rdc < D)[:, None], other=0.0)
                    xe = tl.dot(xc, ec, xe, input_precision="ieee")
            # Padded codes get ||e||^2 = inf, so their score is inf - 2*0 = inf.
            esq = tl.load(esq_ptr + rk, mask=k_mask, other=float("inf"))
            scores = esq[None, :] - 2.0 * xe
            tile_min, tile_arg = tl.min(scores, axis=1, return_indices=True,
                                        return_indices_tie_break_left=True)
            better = tile_min < best  # strict: an earlier tile keeps exact ties
            best = tl.where(better, tile_min, best)
            best_idx = tl.where(better, tile_arg + k0, best_idx)

        dist = tl.maximum(best + x_sq, 0.0)
        dist = tl.where(ok, dist, x_sq)  # non-finite rows: NaN or inf, as ||x||^2 says
        best_idx = tl.where(ok, best_idx, 0)
        tl.store(idx_ptr + rn64, best_idx.to(tl.int64), mask=n_mask)
        tl.store(dist_ptr + rn64, dist, mask=n_mask)


def is_interpreted() -> bool:
    """True when the kernel was built under TRITON_INTERPRET=1 (runs on CPU tensors, slowly).

    Triton reads TRITON_INTERPRET when this module is first imported, so the variable must be
    set before that import.
    """
    if not TRITON_AVAILABLE:
        return False
    return type(_nearest_code_kernel).__name__ == "InterpretedFunction"


@dataclass(frozen=True)
class LaunchConfig:
    """Tile sizes and launch width of one kernel specialisation."""

    block_n: int  # rows of x per program
    block_k: int  # codes per streamed tile
    block_d: int  # padded feature width of one D chunk (power of two >= 16)
    d_chunks: int  # 1: x tile loaded once and kept; >1: D split in chunks of block_d
    num_warps: int


def launch_config(n: int, d: int) -> LaunchConfig:
    """Default tiles for N rows of width D.

    Chosen so that ptxas (sm_90a, Triton 3.9, ahead-of-time compile without a GPU) reports no
    register spills: tl.dot with input_precision="ieee" lowers to FMAs with both operands held in
    registers, so a (BLOCK_N, BLOCK_D) x tile kept across the loop costs registers per thread.
    Measured: (128, 64, D=64, 8 warps) 212 regs; (32, 32, D=64, 4 warps) 116; (64, 32, D=128,
    8 warps) 118; (64, 32, 8 x 32-wide chunks for D=256, 8 warps) 180; whereas (128, 64, D=64,
    4 warps) and any 128-wide D chunk with D > 128 spill. Not timed on hardware.
    """
    block_d = padded_dim(d)
    if block_d > _MAX_SINGLE_TILE_D:
        block_d = 32
        return LaunchConfig(64, 32, block_d, -(-d // block_d), 8)
    if n < _LARGE_N:  # small N: narrow tiles so that all SMs get programs
        return LaunchConfig(32, 32, block_d, 1, 4)
    if block_d <= 64:
        return LaunchConfig(128, 64, block_d, 1, 8)
    return LaunchConfig(64, 32, block_d, 1, 8)


def nearest_code_triton(
    x: torch.Tensor,
    codebook: torch.Tensor,
    *,
    block_n: int | None = None,
    block_k: int | None = None,
    num_warps: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest code under squared L2 with the fused Triton kernel (see module docstring).

    Args:
        x: (N, D) float (fp16/bf16/fp32/fp64; loaded and computed in float32), CUDA, or CPU when
            the interpreter is on. Any strides.
        codebook: (K, D) float on x's device.
        block_n, block_k: rows of x / codes per tile, powers of two >= 16 (default: heuristic).
        num_warps: Triton launch parameter (ignored by the interpreter).
    Returns:
        indices: (N,) int64, smallest index on exact score ties.
        sq_dist: (N,) float32, max(||x_n||^2 + min_k(||e_k||^2 - 2 x_n.e_k), 0).
    Raises:
        RuntimeError: triton is not installed, or CPU tensors without TRITON_INTERPRET=1.
    Non-finite input behaves as documented in `vqcodec.kernels.nearest_code`.
    """
    check_inputs(x, codebook)
    if not TRITON_AVAILABLE:
        raise RuntimeError(
            "backend='triton' needs the triton package (pip install 'vqcodec[triton]'); "
            "use backend='torch' instead"
        )
    n, d = x.shape
    k = codebook.shape[0]
    cfg = launch_config(n, d)
    if block_n is not None:
        cfg = replace(cfg, block_n=block_n)
    if block_k is not None:
        cfg = replace(cfg, block_k=block_k)
    if num_warps is not None:
        cfg = replace(cfg, num_warps=num_warps)
    for name, value in (("block_n", cfg.block_n), ("block_k", cfg.block_k)):
        if value < 16 or value & (value - 1):
            raise ValueError(f"{name} must be a power of two >= 16 (tl.dot needs it), got {value}")
    if x.device.type == "cpu" and not is_interpreted():
        raise RuntimeError(
            "the Triton kernel got CPU tensors; move them to CUDA, or set TRITON_INTERPRET=1 "
            "before vqcodec.kernels.nearest_code_triton is first imported (slow, for tests)"
        )
    indices = torch.empty(n, dtype=torch.int64, device=x.device)
    sq_dist = torch.empty(n, dtype=torch.float32, device=x.device)
    if n == 0:
        return indices, sq_dist


    with torch.no_grad():
        codes, code_sq = prepare_codebook(codebook)
        xs = x.detach()
        grid = (triton.cdiv(n, cfg.block_n),)
        _nearest_code_kernel[grid](
            xs, codes, code_sq, indices, sq_dist,
            n, k, d,
            xs.stride(0), xs.stride(1), codes.stride(0), codes.stride(1),
            BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, BLOCK_D=cfg.block_d, D_CHUNKS=cfg.d_chunks,
            num_warps=cfg.num_warps, enable_fp_fusion=True,  # explicit: default changes in 3.10
        )
    return indices, sq_dist
