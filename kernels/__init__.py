"""Fast kernels: nearest-codebook search for the residual VQ.

Public API:
    nearest_code(x, codebook, backend="auto") -> (indices int64 (N,), sq_dist float32 (N,))
    nearest_code_torch(x, codebook, *, block_rows=None)   CPU path (blocked addmm + min)
    nearest_code_reference(x, codebook)                   float64 reference, for tests
The Triton backend lives in `vqcodec.kernels.nearest_code_triton` and is imported only on use.
"""
if __name__ != "vqcodec.kernels":  # the repository's kernels/ folder imported as a top-level package
    raise ImportError(f"the repository's kernels/ folder is installed as vqcodec.kernels; import vqcodec.kernels, not "
                      f"{__name__} (as two names it would load twice)")

from .nearest_code import BACKENDS, nearest_code, triton_importable
from .nearest_code_torch import nearest_code_torch
from .reference import nearest_code_reference

__all__ = ["BACKENDS", "nearest_code", "nearest_code_reference", "nearest_code_torch",
           "triton_importable"]
