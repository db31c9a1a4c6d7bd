"""Integer building blocks for bit-exact network inference (Ballé, Johnston, Minnen 2019).

Every function here maps integer tensors to integer tensors with a result that does not depend on the
machine, the BLAS library, the thread count or the batch composition:

* `exact_matmul`: int64 (N, K) @ int (K, M) -> int64 (N, M). Two interchangeable backends:
  - "float64": BLAS dgemm on float64 copies. Every product and every partial sum is an integer of
    magnitude < 2^53 (the caller proves this with `accumulator_bound`), so each floating point add is
    exact and the result is the same in any summation order, blocking or thread split.
  - "int64": torch's native integer matmul; integer addition is associative, so it is order independent
    as long as |sum| < 2^63 (which the same bound implies).
  Both return identical integers; tests check this.
* `requantize`: fixed-point rescaling acc * M[c] / 2^shift[c] with round-half-up by an integer floor
  division, then clamping. No floating point is involved.
* `lut_lookup` over integer lookup tables built once (`make_lut`) and shipped with the model, so a
  libm difference between machines cannot change a table entry.
* `logits_to_freqs`: integer logits -> integer frequencies through an integer exp table.

Plain references sit beside the fast paths (`conv2d_int_reference`, `requantize_reference`) for tests.
`torch_threads` sets the intra-op thread count for a block: a speed knob only, since by the above no
result depends on it.
Shapes are given in the docstrings; all "int" tensors are torch.int64 unless stated.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "FLOAT64_EXACT_LIMIT",
    "INT64_SAFE_LIMIT",
    "MATMUL_BACKEND",
    "accumulator_bound",
    "exact_matmul",
    "quantize_linear",
    "choose_multipliers",
    "requant_terms",
    "requantize_",
    "requantize",
    "requantize_reference",
    "make_lut",
    "lut_lookup",
    "gate_product",
    "make_exp_lut",
    "logits_to_freqs",
    "conv_weight_to_matrix",
    "conv2d_int_unfold",
    "conv2d_int_reference",
    "torch_threads",
]

FLOAT64_EXACT_LIMIT = 2**53
"""Integers of magnitude below this are represented exactly in float64 and so is any sum of two of them
whose magnitude stays below it."""
INT64_SAFE_LIMIT = 2**62
"""Bound used for int64 intermediates (leaves one bit of headroom for a rounding offset)."""

MATMUL_BACKEND = "float64"
"""Default backend of `exact_matmul`; "float64" (BLAS) or "int64" (torch integer kernel)."""


def accumulator_bound(w_int: torch.Tensor, in_max: torch.Tensor | Sequence[int] | int,
                      bias_int: torch.Tensor | None = None) -> int:
    """Largest possible |sum_k w[k, m] * x[k] + b[m]| over all outputs m and all admissible inputs.

    w_int: (K, M) integer weights. in_max: (K,) or scalar, the largest |x[k]| the caller can produce
    (from clamps and lookup table ranges). bias_int: optional (M,).
    Returns a Python int (exact; computed in float64 only after checking it stays exact).
    """
    w = w_int.to(torch.int64).abs()
    k = w.shape[0]
    xm = torch.as_tensor(in_max, dtype=torch.int64).reshape(-1)
    if xm.numel() == 1:
        xm = xm.expand(k)
    if xm.numel() != k:
        raise ValueError(f"in_max has {xm.numel()} entries, weights have {k} rows")
    # Each term < 2^(bits(w)+bits(x)); do the sum with Python ints for exactness.
    col = (w * xm[:, None]).sum(dim=0)  # int64: safe, terms < 2^31 * 2^16 and K < 2^15
    if bias_int is not None:
        col = col + bias_int.to(torch.int64).abs()
    return int(col.max().item()) if col.numel() else 0


def exact_matmul(x: torch.Tensor, w: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """Exact integer product x @ w, returned in x's dtype.

    x: (N, K) integer-valued float64 or int64. w: (K, M) integer-valued, same dtype as x.
    "float64" backend: BLAS dgemm, exact because the caller has checked
    `accumulator_bound(w, max|x|) < 2^53` (not re-checked here: this runs in the decoder's inner loop).
    "int64" backend (reference): torch's integer matmul on int64 copies, converted back to x's dtype.
    """
    backend = backend or MATMUL_BACKEND
    if backend == "float64":
        if x.dtype == torch.float64 and w.dtype == torch.float64:
            return torch.matmul(x, w)
        return torch.matmul(x.to(torch.float64), w.to(torch.float64)).to(x.dtype)
    if backend == "int64":
        return torch.matmul(x.to(torch.int64), w.to(torch.int64)).to(x.dtype)
    raise ValueError(f"unknown matmul backend {backend!r}; use 'float64' or 'int64'")


def quantize_linear(w: torch.Tensor, in_scale: torch.Tensor, bits: int,
                    bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric quantization of a linear map acting on integer inputs.

    The float layer computes y[m] = sum_k w[m, k] * x_float[k] + b[m] with x_float[k] = in_scale[k] *
    x_int[k]. Folding the input scales into the weights, y[m] ~= s[m] * (sum_k W[k, m] x_int[k] + B[m]).

    w: (M, K) float weights. in_scale: (K,) float64 (or scalar). bits: signed weight width (e.g. 12).
    bias: (M,) float or None.
    Returns W (K, M) int64 with |W| <= 2^(bits-1)-1, B (M,) int64, s (M,) float64 output scales.
    """
    wf = w.detach().to(torch.float64)
    sc = torch.as_tensor(in_scale, dtype=torch.float64).reshape(-1)
    if sc.numel() == 1:
        sc = sc.expand(wf.shape[1])
    wf = wf * sc[None, :]
    qmax = 2 ** (bits - 1) - 1
    amax = wf.abs().amax(dim=1)
    s = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    wq = torch.round(wf / s[:, None]).clamp_(-qmax, qmax).to(torch.int64)
    if bias is None:
        bq = torch.zeros(wf.shape[0], dtype=torch.int64)
    else:
        bq = torch.round(bias.detach().to(torch.float64) / s).to(torch.int64)
    return wq.t().contiguous(), bq, s


def choose_multipliers(ratio: torch.Tensor, acc_bound: int, mult_bits: int = 24,
                       limit: int = FLOAT64_EXACT_LIMIT) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-point multipliers M[c] and shifts sh[c] with M[c] / 2^sh[c] ~= ratio[c].

    ratio: (C,) positive float64, the factor from accumulator units to target units. acc_bound: the
    analytic bound on |acc| (bias included). M gets up to `mult_bits` significant bits, fewer if needed so
    that acc_bound * M + 2^sh < limit (2^53: the requantization runs on integers held in float64).
    Returns (M (C,) int64, sh (C,) int64), sh >= 0.
    """
    r = torch.as_tensor(ratio, dtype=torch.float64).reshape(-1)
    if bool((r <= 0).any()) or not bool(torch.isfinite(r).all()):
        raise ValueError("requantization ratios must be positive and finite")
    head = limit.bit_length() - 3 - max(1, int(acc_bound)).bit_length()
    bits = min(mult_bits, head)
    if bits < 10:
        raise ValueError(f"accumulator bound {acc_bound} leaves only {bits} multiplier bits; "
                         "use fewer weight bits or smaller activation ranges")
    e = torch.floor(torch.log2(r)).to(torch.int64)  # r in [2^e, 2^(e+1))
    sh = (bits - 1 - e).clamp_(min=0)
    m = torch.round(r * torch.pow(2.0, sh.to(torch.float64))).to(torch.int64).clamp_(min=1)
    if int(m.max()) * max(1, int(acc_bound)) + int((2 ** sh).max()) >= limit:
        raise ValueError("requantization would leave the exact integer range; ratio too large for the "
                         "accumulator range")
    return m, sh


def requant_terms(bias: torch.Tensor, mult: torch.Tensor, shift: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 constants for `requantize_`: (M / 2^sh, (B*M + 2^(sh-1)) / 2^sh), each (C,).

    Both are dyadic rationals with numerators below 2^53 (bound from `choose_multipliers`, which includes
    the bias), hence exact in float64.
    """
    m = mult.to(torch.int64)
    sh = shift.to(torch.int64)
    half = torch.where(sh > 0, torch.bitwise_left_shift(torch.ones_like(sh), (sh - 1).clamp(min=0)),
                       torch.zeros_like(sh))
    off = bias.to(torch.int64) * m + half
    inv = torch.pow(2.0, -sh.to(torch.float64))
    return m.to(torch.float64) * inv, off.to(torch.float64) * inv


def requantize_(acc: torch.Tensor, mult: torch.Tensor, offset: torch.Tensor,
                lo: float | None = None, hi: float | None = None) -> torch.Tensor:
    """In place: acc <- clamp(floor((acc * M + B * M + 2^(sh-1)) / 2^sh), lo, hi) on integer-valued float64.

    acc: (N, C) float64 accumulator without bias; (mult, offset) = `requant_terms(B, M, sh)`.
    Exactness: acc * (M/2^sh) and the sum with (B*M + 2^(sh-1))/2^sh are multiples of 2^-sh with
    numerators |acc*M| + |B*M| + 2^sh < 2^53 (guaranteed by `choose_multipliers`), so both float64
    operations are exact and floor gives the same integer as `requantize`'s int64 arithmetic.
    Returns acc.
    """
    acc.mul_(mult).add_(offset).floor_()
    if lo is not None:
        acc.clamp_(lo, hi)
    return acc


def requantize(acc: torch.Tensor, mult: torch.Tensor, shift: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """int64 reference: round(acc * mult / 2^shift) per channel (ties up), clamped to [lo, hi].

    acc: (N, C) int64 accumulator including the bias. mult, shift: (C,) int64. Returns (N, C) int64.
    """
    den = torch.bitwise_left_shift(torch.ones_like(shift), shift)
    y = torch.div(acc * mult + (den >> 1), den, rounding_mode="floor")
    return y.clamp_(lo, hi)


def requantize_reference(acc: int, mult: int, shift: int, lo: int, hi: int) -> int:
    """Python-int reference of `requantize` for one value."""
    den = 1 << shift
    y = (acc * mult + den // 2) // den
    return max(lo, min(hi, y))


def make_lut(fn: Callable[[np.ndarray], np.ndarray], in_frac_bits: int, in_max: float,
             out_frac_bits: int) -> torch.Tensor:
    """Integer table of round(fn(u / 2^in_frac_bits) * 2^out_frac_bits) for u in [-U, U].

    U = in_max * 2^in_frac_bits. Returns (2U+1,) int64; entry i belongs to input u = i - U.
    Built once when quantizing a model and then shipped as a tensor: decoding never calls libm.
    """
    u_max = int(round(in_max * 2**in_frac_bits))
    u = np.arange(-u_max, u_max + 1, dtype=np.float64) / 2.0**in_frac_bits
    return torch.from_numpy(np.round(fn(u) * 2.0**out_frac_bits).astype(np.int64))


def lut_lookup(lut: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """lut[u + U] for integer inputs u (any shape, integer-valued float64 or int64) already clamped to
    [-U, U] (U = (len(lut)-1)/2). Returns lut's dtype, u's shape."""
    half = (lut.numel() - 1) // 2
    idx = u.to(torch.int64).reshape(-1) + half
    return lut.index_select(0, idx).view(u.shape)


def gate_product(t: torch.Tensor, s: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """Fixed-point product round(t * s / 2^frac_bits) (ties up) of tanh and sigmoid table outputs.

    t, s: integer-valued float64 (|t * s| < 2^53) or int64. Returns the same dtype.
    """
    if t.dtype == torch.float64:
        return (t * s).add_(float(1 << (frac_bits - 1))).mul_(2.0**-frac_bits).floor_()
    return torch.div(t * s + (1 << (frac_bits - 1)), 1 << frac_bits, rounding_mode="floor")


def make_exp_lut(logit_frac_bits: int, top_bits: int = 15) -> torch.Tensor:
    """EXP_LUT[d] = max(1, round(2^top_bits * exp(-d / 2^logit_frac_bits))) for d = 0 .. D.

    D is the first d at which the entry reaches 1, so clamping larger d to D keeps every symbol codable.
    With 512 symbols and top_bits = 15 a row sums to at most 512 * 2^15 = 2^24. Returns (D+1,) int64.
    """
    step = 2.0**-logit_frac_bits
    d_max = int(math.ceil(math.log(2.0 ** (top_bits + 1)) / step))
    d = np.arange(d_max + 1, dtype=np.float64)
    vals = np.maximum(1, np.round(2.0**top_bits * np.exp(-d * step))).astype(np.int64)
    last = int(np.argmax(vals == 1))
    return torch.from_numpy(vals[: last + 1].copy())


def logits_to_freqs(logits: torch.Tensor, exp_lut: torch.Tensor, inplace: bool = False,
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """Integer logits (N, K) -> frequencies (N, K) int64 in [1, exp_lut[0]].

    logits: integer-valued float64 (|logit| < 2^52) or int64. exp_lut: int64 from `make_exp_lut`.
    freq = EXP_LUT[min(max_k logit - logit, D)]: the most likely symbol gets exp_lut[0], every symbol at
    least 1, and each row sums to at most K * exp_lut[0]. With inplace=True a float64 `logits` is
    overwritten (saves a large allocation); `out`: optional contiguous int64 (N, K) destination.
    """
    mx = logits.amax(dim=1, keepdim=True)
    d = logits if inplace else torch.empty_like(logits)
    torch.sub(mx, logits, out=d).clamp_(max=exp_lut.numel() - 1)
    idx = d.to(torch.int64).view(-1)
    if out is None:
        return exp_lut.index_select(0, idx).view(d.shape)
    torch.index_select(exp_lut, 0, idx, out=out.view(-1))
    return out


def conv_weight_to_matrix(w: torch.Tensor) -> torch.Tensor:
    """Conv weight (O, C, kh, kw) -> (kh*kw*C, O): rows ordered (ky, kx, c), the gather order used by
    `conv2d_int_unfold` and by the prior's offset gathers (offset-major, channel-minor)."""
    o, c, kh, kw = w.shape
    return w.permute(2, 3, 1, 0).reshape(kh * kw * c, o).contiguous()


def conv2d_int_unfold(x: torch.Tensor, w_mat: torch.Tensor, bias: torch.Tensor | None, kernel: tuple[int, int],
                      padding: tuple[int, int, int, int], backend: str | None = None) -> torch.Tensor:
    """Exact integer 2-D convolution (cross-correlation) by zero padding, gathering and `exact_matmul`.

    x: (B, C, H, W) int64. w_mat: (kh*kw*C, O) from `conv_weight_to_matrix`. bias: (O,) int64 or None.
    padding: (left, right, top, bottom) as in F.pad. Returns (B, O, H', W') int64.
    """
    kh, kw = kernel
    xp = F.pad(x, padding)
    b, c, hp, wp = xp.shape
    ho, wo = hp - kh + 1, wp - kw + 1
    # Gather the (ky, kx) shifted views: (B, Ho, Wo, kh*kw, C), offset-major like conv_weight_to_matrix.
    xl = xp.permute(0, 2, 3, 1)
    cols = torch.stack([xl[:, ky:ky + ho, kx:kx + wo, :] for ky in range(kh) for kx in range(kw)], dim=3)
    y = exact_matmul(cols.reshape(b * ho * wo, kh * kw * c), w_mat, backend)
    if bias is not None:
        y = y + bias
    return y.reshape(b, ho, wo, -1).permute(0, 3, 1, 2).contiguous()


def conv2d_int_reference(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None,
                         padding: tuple[int, int, int, int]) -> torch.Tensor:
    """Test reference: torch conv2d in float64 on small integer tensors (exact when all sums < 2^53).

    x: (B, C, H, W) int64, w: (O, C, kh, kw) int64. Only for tests: its algorithm choice is not ours.
    """
    y = F.conv2d(F.pad(x.to(torch.float64), padding), w.to(torch.float64),
                 None if bias is None else bias.to(torch.float64))
    return y.round().to(torch.int64)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (None: unchanged); restored afterwards."""
    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
