"""Building blocks of the audio model, each with the arithmetic of its receptive field.

Every layer here maps a sequence at one rate to a sequence at the same or another rate and can say
which input indices an output index depends on: `input_range(lo, hi) -> (lo', hi')` takes an inclusive
range of output indices and returns the inclusive range of input indices they read (out-of-range
indices are zero padding). Chaining these from the last layer to the first gives the model's exact
receptive field (`AudioVQVAE.encoder_context` / `decoder_context`), which the tests check by
perturbing samples just outside it.

Layouts: frame-rate tensors are channels-last (B, N, C) float; sample-rate tensors of the time-domain
nets are channels-first (B, C, T).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ConvNeXtBlock", "ResUnit", "DownConv", "UpConv", "conv_input_range"]


def conv_input_range(lo: int, hi: int, kernel: int, stride: int = 1, dilation: int = 1,
                     pad_left: int = 0) -> tuple[int, int]:
    """Input indices read by outputs lo..hi of a conv whose output o reads inputs
    o*stride - pad_left + dilation*[0, kernel-1]."""
    return lo * stride - pad_left, hi * stride - pad_left + dilation * (kernel - 1)


class ConvNeXtBlock(nn.Module):
    """1-D ConvNeXt block at frame rate (Liu et al. 2022; Vocos' backbone):
    x + scale * Linear(GELU(Linear(LayerNorm(depthwise_conv(x))))).

    x: (B, N, C) float, N frames. Non-causal: the depthwise conv sees (kernel-1)/2 frames either side;
    causal: kernel-1 frames before, none after.
    """

    def __init__(self, channels: int, kernel: int = 7, mlp_ratio: float = 3.0, layer_scale: float = 0.1,
                 causal: bool = False) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"ConvNeXtBlock needs an odd kernel, got {kernel}")
        self.kernel, self.causal = kernel, causal
        self.pad_left = kernel - 1 if causal else (kernel - 1) // 2
        self.dwconv = nn.Conv1d(channels, channels, kernel, groups=channels)
        self.norm = nn.LayerNorm(channels)
        hidden = int(channels * mlp_ratio)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.scale = nn.Parameter(torch.full((channels,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.pad(x.transpose(1, 2), (self.pad_left, self.kernel - 1 - self.pad_left))
        h = self.dwconv(h).transpose(1, 2)
        h = self.fc2(F.gelu(self.fc1(self.norm(h))))
        return x + self.scale * h

    def input_range(self, lo: int, hi: int) -> tuple[int, int]:
        return conv_input_range(lo, hi, self.kernel, pad_left=self.pad_left)


class ResUnit(nn.Module):
    """SEANet residual unit at sample rate: x + Conv1x1(ELU(Conv_k,dil(ELU(x)))). x: (B, C, T)."""

    def __init__(self, channels: int, kernel: int = 7, dilation: int = 1, causal: bool = False) -> None:
        super().__init__()
        span = dilation * (kernel - 1)
        self.kernel, self.dilation = kernel, dilation
        self.pad = (span, 0) if causal else (span // 2, span - span // 2)
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(F.elu(self.conv(F.pad(F.elu(x), self.pad))))

    def input_range(self, lo: int, hi: int) -> tuple[int, int]:
        return conv_input_range(lo, hi, self.kernel, dilation=self.dilation, pad_left=self.pad[0])


class DownConv(nn.Module):
    """Strided conv, kernel 2r, stride r: (B, C_in, T) -> (B, C_out, T / r) exactly (T a multiple of r).

    Non-causal: padded ceil(r/2) on the left and floor(r/2) on the right; causal: r on the left.
    """

    def __init__(self, c_in: int, c_out: int, ratio: int, causal: bool = False) -> None:
        super().__init__()
        self.ratio = ratio
        self.pad = (ratio, 0) if causal else ((ratio + 1) // 2, ratio // 2)
        self.conv = nn.Conv1d(c_in, c_out, 2 * ratio, stride=ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(F.elu(x), self.pad))

    def input_range(self, lo: int, hi: int) -> tuple[int, int]:
        return conv_input_range(lo, hi, 2 * self.ratio, stride=self.ratio, pad_left=self.pad[0])


class UpConv(nn.Module):
    """Transposed conv, kernel 2r, stride r: (B, C_in, N) -> (B, C_out, N * r) exactly.

    The (N + 1) * r raw outputs are trimmed by `trim` at the start and r - trim at the end
    (non-causal: trim = ceil(r/2); causal: trim = 0, so output t reads inputs up to t // r only).
    """

    def __init__(self, c_in: int, c_out: int, ratio: int, causal: bool = False) -> None:
        super().__init__()
        self.ratio = ratio
        self.trim = 0 if causal else (ratio + 1) // 2
        self.conv = nn.ConvTranspose1d(c_in, c_out, 2 * ratio, stride=ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.elu(x))
        return y[..., self.trim : self.trim + x.shape[-1] * self.ratio]

    def input_range(self, lo: int, hi: int) -> tuple[int, int]:
        r, k = self.ratio, 2 * self.ratio
        # untrimmed output u = t + trim receives input i when i*r <= u <= i*r + k - 1
        return math.ceil((lo + self.trim - k + 1) / r), (hi + self.trim) // r
