"""Post-training quantization: float layers -> integer layers (`vqcodec.integer.layers`).

A float network is run on calibration data to find max |activation| of every residual stream (the
network records these itself, e.g. `ImagePrior.calibrate`); each stream then gets one scale
(`stream_scale`: calibration max x CALIBRATION_MARGIN maps to stream_max) and every layer is quantized
between the scales of what feeds it and what it feeds:

    float layer   y = W x_float + b,   x_float = in_scale * x_int,   y ~ out_scale * y_int
    integer layer y_int = requant(sum_k Wq[k] x_int[k] + Bq) with Wq per-output-channel `bits`-bit,
                  Bq = round(b / s), and requant = * M / 2^sh ~ * s / out_scale.

The multiplier width is chosen from the analytic accumulator bound (inputs bounded by in_max), so every
layer this module returns satisfies the exactness condition of `vqcodec.integer.layers` (M * bound +
2^sh < 2^53); `ops.choose_multipliers` raises if it cannot. All inputs are float tensors; all outputs
are int64 tensors / integer layers. Quantization runs once, when a prior is exported: decoding only
ever loads the integers it produced.
"""
from __future__ import annotations

import torch

from vqcodec.integer import ops as iops
from vqcodec.integer.layers import IntDepthwiseConv2d, IntLinear

__all__ = ["CALIBRATION_MARGIN", "stream_scale", "quantize_table", "quantize_linear_layer",
           "quantize_depthwise_conv2d"]

CALIBRATION_MARGIN = 1.5
"""Headroom over the largest calibration activation of a stream (values beyond it are clamped)."""


def stream_scale(max_abs: float, stream_max: int, margin: float = CALIBRATION_MARGIN) -> float:
    """Scale (float value of one integer unit) of a residual stream whose calibration max |value| is
    max_abs: max_abs * margin maps to stream_max."""
    return max(max_abs, 1e-6) * margin / stream_max


def quantize_table(table: torch.Tensor, scale: float, stream_max: int) -> torch.Tensor:
    """Embedding table (any shape, float) -> int64 round(table / scale) clamped to [-stream_max, stream_max]."""
    return torch.round(table.detach().double() / scale).clamp(-stream_max, stream_max).to(torch.int64)


def quantize_linear_layer(w: torch.Tensor, b: torch.Tensor | None, in_scale, in_max, out_scale: float,
                          bits: int, mult_bits: int) -> IntLinear:
    """Float linear map w (M, K) (+ b (M,)) acting on x_float = in_scale * x_int, |x_int| <= in_max
    (in_scale, in_max: scalars or (K,)), with output in out_scale units -> `IntLinear`."""
    wq, bq, s = iops.quantize_linear(w, in_scale, bits, b)
    k = wq.shape[0]
    in_max = torch.as_tensor(in_max, dtype=torch.int64).reshape(-1).expand(k).clone()
    bound = iops.accumulator_bound(wq, in_max, bq)
    m, sh = iops.choose_multipliers(s / out_scale, bound, mult_bits)
    return IntLinear(wq, bq, m, sh, in_max)


def quantize_depthwise_conv2d(weight: torch.Tensor, bias: torch.Tensor | None, in_scale: float, in_max: int,
                              out_scale: float, bits: int, mult_bits: int) -> IntDepthwiseConv2d:
    """Float depthwise conv weight (C, 1, k, k) (+ bias (C,)) on x_float = in_scale * x_int, |x_int| <=
    in_max, output in out_scale units -> `IntDepthwiseConv2d`."""
    c = weight.shape[0]
    taps = weight.detach().reshape(c, -1)  # (C, k*k): each channel is a linear map of its k*k taps
    wq, bq, s = iops.quantize_linear(taps, in_scale, bits, bias)
    layer = IntDepthwiseConv2d(wq, bq, torch.zeros_like(bq), torch.zeros_like(bq), in_max)
    m, sh = iops.choose_multipliers(s / out_scale, layer.bound(), mult_bits)
    return IntDepthwiseConv2d(wq, bq, m, sh, in_max)
