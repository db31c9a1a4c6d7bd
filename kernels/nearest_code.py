"""Nearest-codebook search: backend dispatch (`nearest_code`).

The two implementations sit beside it: `nearest_code_torch` (blocked addmm + min, the CPU path)
and `nearest_code_triton` (one fused kernel, the GPU path); `reference.nearest_code_reference` is
the float64 definition both are tested against. The Triton module is imported lazily, so this
package imports without triton, and importing it does not pay for triton on CPU-only runs.
"""
from __future__ import annotations

import importlib.util
import logging

import torch

from .nearest_code_torch import nearest_code_torch
from .reference import check_inputs

__all__ = ["BACKENDS", "nearest_code", "triton_importable"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "triton")


def triton_importable() -> bool:
    """True if the optional `triton` package is installed (checked without importing it)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):  # a broken or stubbed-out module entry
        return False


def _resolve_backend(backend: str, x: torch.Tensor) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if x.is_cuda and triton_importable():
        from . import nearest_code_triton as triton_mod  # lazy: optional dependency

        if triton_mod.TRITON_AVAILABLE:
            return "triton"
    return "torch"


def nearest_code(
    x: torch.Tensor, codebook: torch.Tensor, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of, and squared L2 distance to, the nearest codebook row for every row of `x`.

    Args:
        x: (N, D) floating tensor (fp16/bf16/fp32/fp64; computed in float32). Gradients are not
            tracked: the search runs under torch.no_grad() and indices are not differentiable.
        codebook: (K, D) floating tensor on the same device, K >= 1.
        backend: "torch" (blocked addmm + min, peak extra memory one ~4 MiB block, any device),
            "triton" (fused kernel: CUDA tensors, or CPU tensors when TRITON_INTERPRET=1 was set
            before the kernel module was imported), or "auto" (triton for CUDA tensors when
            triton imports, torch otherwise).
    Returns:
        indices: (N,) int64 on x's device, argmin_k ||x_n - e_k||^2. The score compared is
            ||e_k||^2 - 2 x_n.e_k in float32, and exact score ties go to the smallest index (as
            torch.argmin); near-ties closer than float32 rounding of that score may pick either.
        sq_dist: (N,) float32, max(||x_n||^2 + min score, 0): the squared distance to the chosen
            code, with absolute error of a few float32 ulps of ||x_n||^2 + ||e_k||^2.

    Non-finite input (same on both backends, no host-device synchronisation):
        * A row of x containing NaN gets index 0 and sq_dist NaN; a row containing +-inf (and no
          NaN), or whose float32 squared norm overflows (|x| > ~1.8e19), gets index 0 and
          sq_dist +inf. Other rows are unaffected.
        * A code containing NaN or +-inf (or whose squared norm overflows) is never chosen: it
          counts as infinitely far. If every code is like that, rows get index 0 and sq_dist inf.
    N = 0 returns empty (0,) int64 and (0,) float32 tensors.

    Raises:
        ValueError: wrong ranks, non-float dtypes, D mismatch, D = 0, K = 0, different devices,
            or an unknown backend.
        RuntimeError: backend="triton" without triton, or with CPU tensors and no interpreter.
    """
    check_inputs(x, codebook)
    chosen = _resolve_backend(backend, x)
    logger.debug("nearest_code: backend=%s (asked %s), N=%d K=%d D=%d, %s",
                 chosen, backend, x.shape[0], codebook.shape[0], x.shape[1], x.device)
    if chosen == "triton":
        from .nearest_code_triton import nearest_code_triton  # lazy: optional dependency

        return nearest_code_triton(x, codebook)
    return nearest_code_torch(x, codebook)
