"""The contract of the nearest-codebook search: input checks and a plain float64 reference.

`check_inputs` is shared by every backend so that all of them reject the same inputs with the
same messages. `nearest_code_reference` is the slow, obviously-correct definition the fast paths
are tested against: it forms every difference x_n - e_k explicitly in float64, so it has no
cancellation error, and it breaks ties towards the smallest index (torch.argmin semantics).
"""
from __future__ import annotations

import torch

__all__ = ["check_inputs", "squared_distances_reference", "nearest_code_reference"]

_REFERENCE_CHUNK_ELEMENTS = 1 << 22  # (rows x K x D) float64 elements per chunk: 32 MiB


def check_inputs(x: torch.Tensor, codebook: torch.Tensor) -> None:
    """Raise ValueError unless `x` (N, D) and `codebook` (K, D) are valid search inputs.

    Valid means: both are floating-point torch tensors of rank 2 on the same device, with the same
    number of columns D >= 1, and K >= 1 codes. N = 0 rows is allowed.
    """
    if not isinstance(x, torch.Tensor) or not isinstance(codebook, torch.Tensor):
        raise ValueError(
            f"x and codebook must be torch tensors, got {type(x).__name__} and "
            f"{type(codebook).__name__}; convert with torch.as_tensor(...)"
        )
    if x.dim() != 2:
        raise ValueError(
            f"x must have shape (N, D), got rank {x.dim()} shape {tuple(x.shape)}; "
            "flatten leading dimensions first, e.g. x.reshape(-1, x.shape[-1])"
        )
    if codebook.dim() != 2:
        raise ValueError(
            f"codebook must have shape (K, D), got rank {codebook.dim()} shape {tuple(codebook.shape)}"
        )
    if not x.is_floating_point() or not codebook.is_floating_point():
        raise ValueError(
            f"x and codebook must be floating point, got {x.dtype} and {codebook.dtype}; "
            "cast with .float()"
        )
    if x.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"feature dimension mismatch: x has D={x.shape[1]} columns but codebook has "
            f"D={codebook.shape[1]}; both must be (.., D) with the same D"
        )
    if x.shape[1] == 0:
        raise ValueError("x and codebook have D=0 columns; the feature dimension must be >= 1")
    if codebook.shape[0] == 0:
        raise ValueError("codebook is empty (K=0 codes); it needs at least one code to search")
    if x.device != codebook.device:
        raise ValueError(
            f"x is on {x.device} but codebook is on {codebook.device}; move both to one device"
        )


def squared_distances_reference(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """All squared L2 distances, computed as sum((x_n - e_k)^2) in float64.

    Args:
        x: (N, D) float.
        codebook: (K, D) float.
    Returns:
        (N, K) float64 tensor of ||x_n - e_k||^2 (NaN/inf propagate as IEEE arithmetic says).
    """
    check_inputs(x, codebook)
    x64 = x.detach().to(torch.float64)
    e64 = codebook.detach().to(torch.float64)
    n, d = x64.shape
    k = e64.shape[0]
    out = torch.empty((n, k), dtype=torch.float64, device=x.device)
    rows = max(1, _REFERENCE_CHUNK_ELEMENTS // max(1, k * d))
    for start in range(0, n, rows):
        diff = x64[start:start + rows, None, :] - e64[None, :, :]
        out[start:start + rows] = (diff * diff).sum(dim=2)
    return out


def nearest_code_reference(x: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 reference for `nearest_code`, for tests only (it holds the full N x K matrix).

    Args:
        x: (N, D) float.
        codebook: (K, D) float.
    Returns:
        indices: (N,) int64, argmin over k of ||x_n - e_k||^2, smallest index on ties.
        sq_dist: (N,) float64, the minimum squared distance.
    Note:
        NaN handling is plain torch.min semantics here (a NaN distance wins); the fast backends
        define their own NaN behaviour, see `vqcodec.kernels.nearest_code`.
    """
    dist = squared_distances_reference(x, codebook)
    if dist.shape[0] == 0:
        return (torch.empty(0, dtype=torch.int64, device=x.device),
                torch.empty(0, dtype=torch.float64, device=x.device))
    sq_dist, indices = torch.min(dist, dim=1)
    return indices, sq_dist
