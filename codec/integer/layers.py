"""Integer layers for bit-exact network inference: linear (1x1 conv / conv over gathered taps), depthwise
2-D conv, gated tanh x sigmoid units through lookup tables, and logits -> frequencies.

Nothing here is image-specific. A 2-D PixelCNN and a 1-D causal dilated WaveNet are both built from
`IntLinear` (a convolution is an `IntLinear` applied to the input rows gathered at the kernel's tap
offsets, offset-major and channel-minor: see `vqcodec.integer.scheduler`), `GateLuts.gate` (the gated
unit tanh(a) * sigmoid(b)), elementwise residual / skip additions with a clamp to the stream range, and
`ExpFreqs` at the output.

Representation. Every activation is an integer held in a float64 tensor (BLAS dgemm is the fast exact
integer matmul on CPU). The fixed-point meaning of each integer is fixed by a format dict
(`FIXED_POINT_FORMAT`, stored with every prior):

* residual streams (embeddings, residual / skip sums, depthwise outputs): int in [-stream_max,
  stream_max] = [-32767, 32767], value = int * (per-tensor scale chosen at quantization time);
* tanh/sigmoid inputs: int u, value u / 2^lut_in_frac, clamped to +-lut_in_max (so u in [-8192, 8192]);
* tanh/sigmoid/gate outputs: int, value / 2^act_frac (tables shipped with the weights);
* weights: signed `weight_bits` (12) per output channel; biases int32; requantization multipliers M
  with up to `mult_bits` (24) significant bits, fewer when the exactness bound below requires it;
* logits: int, value / 2^logit_frac nats; frequencies EXP_LUT[max - logit] in [1, 2^exp_top_bits].

Exactness (why a result never depends on the machine, BLAS, threads or batch composition). A layer
computes acc = sum_k W[k] x[k] (+ B) with integer W, x. Each layer stores in_max (K,), a bound on |x[k]|
that follows from the clamp or lookup table producing x, so |acc| <= `bound()` = max_m sum_k |W[k, m]|
in_max[k] + |B[m]| (for C = 64 channels and a 3x3 PixelCNN kernel: 384 * 2047 * 32767 + |B| < 2^35).
Every partial sum of any summation order is then an integer of magnitude < 2^53, exactly representable,
so dgemm's result is the exact integer whatever its blocking, SIMD width or thread split. Requantization
floor((acc + B) * M / 2^sh + 1/2) is done as floor(acc * (M/2^sh) + (B*M + 2^(sh-1))/2^sh); both float
operations are exact because |acc*M| + |B*M| + 2^sh < 2^53 (`requant_bound()`; M's width is chosen per
layer from the accumulator bound by `ops.choose_multipliers`), so the result equals integer arithmetic
(`ops.requantize`). A prior checks `requant_bound() < 2^53` for every layer when it is built or loaded.

Serialization: each layer writes its integers under a name prefix (`tensors(prefix)`: weights int16,
bias / multiplier / shift int32) and is rebuilt from such tensors (`load`), with in_max supplied by the
network that knows what feeds the layer.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vqcodec.integer import ops as iops

__all__ = ["FIXED_POINT_FORMAT", "IntLinear", "IntDepthwiseConv2d", "GateLuts", "ExpFreqs", "layer_tensors"]

FIXED_POINT_FORMAT: dict[str, int] = {
    "weight_bits": 12,
    "lut_in_frac": 10,
    "lut_in_max": 8,
    "act_frac": 12,
    "stream_max": 32767,
    "logit_frac": 6,
    "exp_top_bits": 15,
    "mult_bits": 24,
}
"""Default fixed-point format (see the module docstring); a prior stores the one it was built with."""


def layer_tensors(prefix: str, w: torch.Tensor, b: torch.Tensor, m: torch.Tensor, sh: torch.Tensor
                  ) -> dict[str, torch.Tensor]:
    """The stored form of one requantized layer: {prefix.w: int16, prefix.b / .m / .sh: int32}."""
    if w.numel() and int(w.abs().max()) >= 2**15:
        raise ValueError(f"{prefix}: weights do not fit int16")
    for name, t in (("b", b), ("m", m)):
        if t.numel() and int(t.abs().max()) >= 2**31:
            raise ValueError(f"{prefix}.{name} does not fit int32; retrain with smaller biases")
    return {f"{prefix}.w": w.to(torch.int16), f"{prefix}.b": b.to(torch.int32),
            f"{prefix}.m": m.to(torch.int32), f"{prefix}.sh": sh.to(torch.int32)}


def _load_terms(t: dict[str, torch.Tensor], prefix: str) -> tuple[torch.Tensor, ...]:
    try:
        return t[f"{prefix}.w"], t[f"{prefix}.b"], t[f"{prefix}.m"], t[f"{prefix}.sh"]
    except KeyError as e:
        raise KeyError(f"integer prior weights lack tensor {e}; the file is not an export of this prior "
                       "or is from an incompatible version") from None


def _check_requant(m: torch.Tensor, sh: torch.Tensor, what: str) -> None:
    if bool((sh < 0).any()) or bool((sh > 62).any()) or bool((m < 0).any()):
        raise ValueError(f"{what} requantization shifts must lie in [0, 62] and multipliers be >= 0")


class IntLinear:
    """y = clamp(requant(x @ W + B)) on integer-valued float64 rows.

    Stored as integers: W (K, M), B (M,), M (M,) multipliers, sh (M,) shifts (all int64 here).
    in_max (K,) int64 bounds |x[:, k]| for the exactness proof (module docstring).
    Call: x (N, K) float64-held ints -> (N, M) float64-held ints (x is not modified).
    """

    def __init__(self, w: torch.Tensor, b: torch.Tensor, m: torch.Tensor, sh: torch.Tensor,
                 in_max: torch.Tensor) -> None:
        self.w = w.to(torch.int64).contiguous()
        self.b, self.m, self.sh = (t.to(torch.int64).contiguous() for t in (b, m, sh))
        self.in_max = torch.as_tensor(in_max, dtype=torch.int64).reshape(-1)
        if self.w.dim() != 2 or self.in_max.numel() != self.w.shape[0]:
            raise ValueError(f"weights of shape {tuple(self.w.shape)} do not match {self.in_max.numel()} inputs")
        if not (self.b.shape == self.m.shape == self.sh.shape == (self.w.shape[1],)):
            raise ValueError("bias / multiplier / shift shapes do not match the weights")
        _check_requant(self.m, self.sh, "linear")
        self.wf = self.w.to(torch.float64)
        self.mf, self.off = iops.requant_terms(self.b, self.m, self.sh)

    @property
    def in_features(self) -> int:
        return self.w.shape[0]

    @property
    def out_features(self) -> int:
        return self.w.shape[1]

    def bound(self) -> int:
        """max |acc + B| over all admissible inputs (Python int, exact)."""
        return iops.accumulator_bound(self.w, self.in_max, self.b)

    def requant_bound(self) -> int:
        """Largest float64 numerator in the requantization; must stay < 2^53."""
        return self.bound() * int(self.m.max()) + int((1 << self.sh.max().item()))

    def expect(self, outputs: int, name: str) -> "IntLinear":
        """Check the output width against a network config; returns self."""
        if self.w.shape[1] != outputs:
            raise ValueError(f"{name}: {self.w.shape[1]} outputs, the config needs {outputs}")
        return self

    def __call__(self, x: torch.Tensor, lo: float | None = None, hi: float | None = None) -> torch.Tensor:
        return iops.requantize_(iops.exact_matmul(x, self.wf), self.mf, self.off, lo, hi)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return layer_tensors(prefix, self.w, self.b, self.m, self.sh)

    @classmethod
    def load(cls, t: dict[str, torch.Tensor], prefix: str, in_max: torch.Tensor) -> "IntLinear":
        return cls(*_load_terms(t, prefix), in_max)


class IntDepthwiseConv2d:
    """Depthwise k x k convolution with 'same' zero padding, requantized and clamped.

    Stored as integers: W (k*k, C) (tap-major: row dy*k+dx), B, M, sh (C,). in_max: bound on |x|
    (one int for all channels). Call: x (H, W, C) float64-held ints -> (H*W, C) float64-held ints.
    Exactness: |acc + B| <= max_c sum_taps |W| * in_max + max |B| (`bound`), same argument as `IntLinear`.
    """

    def __init__(self, w: torch.Tensor, b: torch.Tensor, m: torch.Tensor, sh: torch.Tensor, in_max: int) -> None:
        self.w = w.to(torch.int64).contiguous()
        self.b, self.m, self.sh = (t.to(torch.int64).contiguous() for t in (b, m, sh))
        if self.w.dim() != 2:
            raise ValueError(f"depthwise weights must be (k*k, C), got {tuple(self.w.shape)}")
        self.kernel = int(round(self.w.shape[0] ** 0.5))
        if self.kernel ** 2 != self.w.shape[0]:
            raise ValueError(f"depthwise weights have {self.w.shape[0]} taps, not a square kernel")
        if not (self.b.shape == self.m.shape == self.sh.shape == (self.w.shape[1],)):
            raise ValueError("depthwise bias / multiplier / shift shapes do not match the weights")
        _check_requant(self.m, self.sh, "depthwise")
        self.in_max = int(in_max)
        self.wf = self.w.to(torch.float64)
        self.terms = iops.requant_terms(self.b, self.m, self.sh)

    @property
    def channels(self) -> int:
        return self.w.shape[1]

    def bound(self) -> int:
        """|depthwise accumulator + bias| bound (also the bound its multipliers were chosen for)."""
        return int(self.w.abs().sum(0).max()) * self.in_max + int(self.b.abs().max())

    def requant_bound(self) -> int:
        return self.bound() * int(self.m.max()) + int(1 << int(self.sh.max()))

    def __call__(self, x: torch.Tensor, lo: float | None = None, hi: float | None = None) -> torch.Tensor:
        h, w, c = x.shape
        k, p = self.kernel, self.kernel // 2
        xp = F.pad(x.permute(2, 0, 1), (p, p, p, p)).permute(1, 2, 0)
        acc = torch.zeros((h, w, c), dtype=torch.float64)
        for dy in range(k):
            for dx in range(k):
                acc.addcmul_(xp[dy:dy + h, dx:dx + w, :], self.wf[dy * k + dx])
        return iops.requantize_(acc.view(h * w, c), *self.terms, lo, hi)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return layer_tensors(prefix, self.w, self.b, self.m, self.sh)

    @classmethod
    def load(cls, t: dict[str, torch.Tensor], prefix: str, in_max: int) -> "IntDepthwiseConv2d":
        return cls(*_load_terms(t, prefix), in_max)


class GateLuts:
    """tanh and sigmoid tables on the LUT input grid, and the gated unit built from them.

    tanh_lut, sig_lut: (2U+1,) ints, entry i for input u = i - U (U = lut_in_max << lut_in_frac), values
    in 2^-act_frac units (|tanh| <= 2^act_frac, 0 <= sigmoid <= 2^act_frac). Kept as one float64 table
    so that both halves of a gate are one gather. The tables are shipped with the weights: decoding
    never calls libm.
    """

    def __init__(self, tanh_lut: torch.Tensor, sig_lut: torch.Tensor, fmt: dict[str, int]) -> None:
        self.tanh, self.sig = tanh_lut.to(torch.int64), sig_lut.to(torch.int64)
        self.u_max = fmt["lut_in_max"] << fmt["lut_in_frac"]
        self.act_frac = fmt["act_frac"]
        n = 2 * self.u_max + 1
        if self.tanh.numel() != n or self.sig.numel() != n:
            raise ValueError("lookup tables do not match the stored fixed-point format")
        amax = 1 << self.act_frac
        if int(self.tanh.abs().max()) > amax or int(self.sig.min()) < 0 or int(self.sig.max()) > amax:
            raise ValueError("lookup table entries outside [-2^act_frac, 2^act_frac]")
        self.both = torch.cat([self.tanh, self.sig]).to(torch.float64)
        self._offsets: dict[int, torch.Tensor] = {}

    @property
    def act_max(self) -> int:
        """Largest |gate output| (2^act_frac): the in_max of a layer fed by a gate."""
        return 1 << self.act_frac

    @classmethod
    def build(cls, fmt: dict[str, int]) -> "GateLuts":
        """Tables for a format (at quantization time; a loaded prior uses its stored tables)."""
        t = iops.make_lut(np.tanh, fmt["lut_in_frac"], fmt["lut_in_max"], fmt["act_frac"])
        s = iops.make_lut(lambda u: 1.0 / (1.0 + np.exp(-u)), fmt["lut_in_frac"], fmt["lut_in_max"], fmt["act_frac"])
        return cls(t, s, fmt)

    def gate(self, u: torch.Tensor) -> torch.Tensor:
        """u (N, 2C) LUT-grid ints clamped to [-U, U] (float64) -> round(tanh(u[:, :C]) * sigmoid(u[:, C:]))
        (N, C) float64, in 2^-act_frac units."""
        n, c2 = u.shape
        off = self._offsets.get(c2)
        if off is None:
            c = c2 // 2
            off = torch.cat([torch.full((c,), self.u_max, dtype=torch.int64),
                             torch.full((c,), 3 * self.u_max + 1, dtype=torch.int64)])
            self._offsets[c2] = off
        idx = u.to(torch.int64).add_(off)
        y = self.both.index_select(0, idx.view(-1)).view(n, c2)
        c = c2 // 2
        return iops.gate_product(y[:, :c], y[:, c:], self.act_frac)


class ExpFreqs:
    """Integer logits -> range-coder frequencies through a shipped exp table (`ops.make_exp_lut`).

    exp_lut: (D+1,) int64 with exp_lut[0] the top frequency; codebook_size K. Every frequency is >= 1
    and every row sums to <= K * exp_lut[0], which must be <= 2^24 (the range coder's bound; checked).
    """

    def __init__(self, exp_lut: torch.Tensor, codebook_size: int) -> None:
        self.lut = exp_lut.to(torch.int64)
        self.k = int(codebook_size)
        if self.k * int(self.lut[0]) > 2**24 or int(self.lut.min()) < 1:
            raise ValueError("exp table gives frequencies outside [1, 2^24 / K]")

    def __call__(self, logits: torch.Tensor) -> np.ndarray:
        """logits (n, K) float64-held ints (overwritten) -> frequencies (n, K) int64 numpy."""
        return iops.logits_to_freqs(logits, self.lut, inplace=True).numpy()

    def of_chunks(self, chunks, n: int) -> np.ndarray:
        """Frequencies (n, K) int64 of an iterable of logit chunks (each (n_i, K) float64, overwritten),
        written straight into one array in order."""
        out = np.empty((n, self.k), dtype=np.int64)
        dest = torch.from_numpy(out)
        i = 0
        for lg in chunks:
            iops.logits_to_freqs(lg, self.lut, inplace=True, out=dest[i:i + lg.shape[0]])
            i += lg.shape[0]
        if i != n:
            raise AssertionError(f"produced {i} rows of frequencies for {n} positions")
        return out
