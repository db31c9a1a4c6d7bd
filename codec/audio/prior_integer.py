"""The audio prior in exact integer arithmetic: frequencies for range coding, and streaming decoding.

`IntegerAudioPrior` is built from a trained float `AudioPrior` by post-training quantization
(`from_float`, with `vqcodec.integer.quantize`) and shipped as plain integer tensors (`state_dict` /
`from_state_dict`, file format `vqcodec.integer.prior_file`). Every number it produces comes from
`vqcodec.integer.layers` (exact integer matmuls, lookup-table gates, integer exp table), so the
encoder's and the decoder's frequencies are equal bit for bit on any machine, thread count and batch
composition: a row's result never depends on the other rows computed with it.

Stage 1 (WaveNet) is coded frame by frame; the decoder keeps, per layer, a ring buffer of the last
`dilation` inputs of that layer, so one step costs one pass through the layers for one frame of every
segment (no full-sequence pass per step). Segments are independent, so all segments of a sequence are
decoded in lockstep as one batch: coding group t holds frame t of every segment. Stages 2..S are one
parallel pass each.

Per-layer arithmetic (ints in float64 tensors; names as in the float model):
    h0 = embed[x[t-1]] (start vector at a segment's first frame)           stream units s_h
    u  = clamp(conv([h[t-d], h[t]]), +-U)          IntLinear(2C -> 2C)     LUT grid 2^-10
    g  = gate(u)                                    tanh x sigmoid tables   2^-act_frac
    [r, k] = res_skip(g)                            IntLinear(C -> C + Cs)  s_h | s_skip
    h  = clamp(h + r, +-stream_max);  skip = clamp(skip + k, +-stream_max)
    y  = clamp(out1(clamp(skip, 0, max)), 0, max)   IntLinear(Cs -> C)      s_out
    logits = out2(y)                                IntLinear(C -> K)       2^-logit_frac nats
Stages >= 2: x = clamp(sum_{t<s} E_t[x_t] + e_s) (s_x); per block x = clamp(x + pw(gate(conv3(x))));
logits = head(clamp(x, 0, max)).

Shapes: indices (s, T) int64 (one channel's sequence); frequencies (T, K) int64, raster (time) order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vqcodec.audio.prior import AudioPrior, AudioPriorConfig, segment_bounds
from vqcodec.integer import ops as iops
from vqcodec.integer.layers import FIXED_POINT_FORMAT, ExpFreqs, GateLuts, IntLinear
from vqcodec.integer.prior_file import (int_scalars, load_prior_file, read_int_scalars,
                                        save_prior_file)
from vqcodec.integer.quantize import quantize_linear_layer, quantize_table, stream_scale

__all__ = ["IntegerAudioPrior", "AUDIO_PRIOR_FORMAT", "export_integer_audio_prior", "load_integer_audio_prior"]

AUDIO_PRIOR_FORMAT = "vqcodec-integer-audio-prior-v1"
_CHUNK_ROWS = 4096  # rows per exact-matmul call in the parallel passes (bounds temporaries)


def _conv_matrix(weight: torch.Tensor) -> torch.Tensor:
    """Conv1d weight (O, C, k) -> (O, k*C) acting on tap-major, channel-minor gathered rows."""
    o, c, k = weight.shape
    return weight.detach().permute(0, 2, 1).reshape(o, k * c)


class IntegerAudioPrior:
    """Exact integer audio prior over (s, T) index sequences; implements `vqcodec.coding.StagePrior`."""

    def __init__(self, cfg: AudioPriorConfig, fmt: dict[str, int], tensors: dict[str, torch.Tensor]) -> None:
        self.cfg, self.fmt = cfg, dict(fmt)
        t = tensors
        c, cs, k = cfg.ar_channels, cfg.ar_skip_channels, cfg.codebook_size
        self.smax = fmt["stream_max"]
        self.umax = fmt["lut_in_max"] << fmt["lut_in_frac"]
        self.luts = GateLuts(t["lut.tanh"], t["lut.sigmoid"], fmt)
        self.freqs = ExpFreqs(t["lut.exp"], k)
        amax = self.luts.act_max
        smax = torch.full((1,), self.smax, dtype=torch.int64)
        # stage 1
        self.ar_embed = t["ar.embed"].to(torch.float64)
        self.ar_start = t["ar.start"].to(torch.float64)
        self.ar_conv = [IntLinear.load(t, f"ar.l{i}.conv", smax.expand(2 * c)).expect(2 * c, f"ar.l{i}.conv")
                        for i in range(len(cfg.dilations))]
        self.ar_res_skip = [IntLinear.load(t, f"ar.l{i}.res_skip", torch.full((c,), amax)).expect(c + cs, "res_skip")
                            for i in range(len(cfg.dilations))]
        self.ar_out1 = IntLinear.load(t, "ar.out1", smax.expand(cs)).expect(c, "ar.out1")
        self.ar_out2 = IntLinear.load(t, "ar.out2", smax.expand(c)).expect(k, "ar.out2")
        # stages >= 2
        n = max(cfg.num_stages - 1, 1)
        cc = cfg.cond_channels
        self.cond_embed = t["cond.embed"].to(torch.float64).reshape(n, k, cc) if cfg.num_stages > 1 else None
        self.cond_stage = t["cond.stage"].to(torch.float64).reshape(n, cc) if cfg.num_stages > 1 else None
        self.cond_conv = [IntLinear.load(t, f"cond.b{i}.conv", smax.expand(cfg.cond_kernel * cc))
                          .expect(2 * cc, "cond.conv") for i in range(cfg.cond_blocks)]
        self.cond_pw = [IntLinear.load(t, f"cond.b{i}.pw", torch.full((cc,), amax)).expect(cc, "cond.pw")
                        for i in range(cfg.cond_blocks)]
        self.cond_head = IntLinear.load(t, "cond.head", smax.expand(cc)).expect(k, "cond.head")
        self._tensors = dict(t)
        self._check_bounds()

    # ------------------------------------------------------------------------------------------ checks
    def _layers(self) -> list[tuple[str, IntLinear]]:
        named = [(f"ar.l{i}.conv", l) for i, l in enumerate(self.ar_conv)]
        named += [(f"ar.l{i}.res_skip", l) for i, l in enumerate(self.ar_res_skip)]
        named += [("ar.out1", self.ar_out1), ("ar.out2", self.ar_out2), ("cond.head", self.cond_head)]
        named += [(f"cond.b{i}.conv", l) for i, l in enumerate(self.cond_conv)]
        named += [(f"cond.b{i}.pw", l) for i, l in enumerate(self.cond_pw)]
        return named

    def _check_bounds(self) -> None:
        for name, layer in self._layers():
            if layer.requant_bound() >= iops.FLOAT64_EXACT_LIMIT:
                raise ValueError(f"integer audio prior layer {name} could lose exactness (bound "
                                 f"{layer.requant_bound()} >= 2^53); re-export the prior")
        for name, table in (("ar.embed", self.ar_embed), ("ar.start", self.ar_start)):
            if float(table.abs().max()) > self.smax:
                raise ValueError(f"{name} entries exceed the stream range; re-export the prior")

    @property
    def num_stages(self) -> int:
        return self.cfg.num_stages

    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    # ---------------------------------------------------------------------------------------- stage 1
    def _layer_step(self, i: int, h: torch.Tensor, past: torch.Tensor, skip: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One WaveNet layer on rows: h, past (N, C) (past = h[t - d] or zeros) -> (h', skip')."""
        c = self.cfg.ar_channels
        u = self.ar_conv[i](torch.cat([past, h], dim=1), -self.umax, self.umax)
        rs = self.ar_res_skip[i](self.luts.gate(u))
        h = (h + rs[:, :c]).clamp_(-self.smax, self.smax)
        skip = rs[:, c:] if skip is None else (skip + rs[:, c:]).clamp_(-self.smax, self.smax)
        return h, skip

    def _ar_head(self, skip: torch.Tensor) -> torch.Tensor:
        """(N, Cs) skip sums -> (N, K) integer logits."""
        y = self.ar_out1(skip.clamp(0, self.smax), 0, self.smax)
        return self.ar_out2(y)

    def _ar_inputs(self, x1: torch.Tensor) -> torch.Tensor:
        """x1 (T,) int64 -> (T, C) layer-0 inputs: embed[x[t-1]], the start vector at segment starts."""
        t = x1.shape[0]
        pos = torch.arange(t) % self.cfg.segment_frames
        h = self.ar_embed.index_select(0, torch.cat([x1[:1], x1[:-1]]))
        h[pos == 0] = self.ar_start
        return h

    def _ar_logits(self, x1: torch.Tensor) -> torch.Tensor:
        """Teacher-forced stage-1 logits of a whole sequence: x1 (T,) -> (T, K) (what the decoder computes)."""
        t = x1.shape[0]
        pos = torch.arange(t) % self.cfg.segment_frames
        h = self._ar_inputs(x1)
        skip = None
        for i, d in enumerate(self.cfg.dilations):
            past = torch.zeros_like(h)
            has_past = pos >= d
            past[has_past] = h[torch.arange(t)[has_past] - d]
            h, skip = self._layer_step(i, h, past, skip)
        return self._ar_head(skip)

    # ---------------------------------------------------------------------------------------- stages >= 2
    def _cond_logits(self, earlier: torch.Tensor, stage: int) -> torch.Tensor:
        """Stage `stage` >= 2 logits from earlier (>= stage-1, T) -> (T, K), per segment, chunked."""
        t = earlier.shape[1]
        x = self.cond_stage[stage - 2].expand(t, -1).clone()
        for j in range(stage - 1):
            x += self.cond_embed[j].index_select(0, earlier[j])
        x.clamp_(-self.smax, self.smax)
        pad = self.cfg.cond_kernel // 2
        pos = torch.arange(t) % self.cfg.segment_frames
        seg_len = torch.tensor([n for _, n in segment_bounds(t, self.cfg.segment_frames)])
        length = seg_len.repeat_interleave(seg_len)
        for conv, pw in zip(self.cond_conv, self.cond_pw):
            taps = []
            for off in range(-pad, pad + 1):
                tap = torch.zeros_like(x)
                ok = (pos + off >= 0) & (pos + off < length)
                tap[ok] = x[torch.arange(t)[ok] + off]
                taps.append(tap)
            gathered = torch.cat(taps, dim=1)
            g = torch.cat([self.luts.gate(conv(gathered[r:r + _CHUNK_ROWS], -self.umax, self.umax))
                           for r in range(0, t, _CHUNK_ROWS)])
            x = (x + torch.cat([pw(g[r:r + _CHUNK_ROWS]) for r in range(0, t, _CHUNK_ROWS)])).clamp_(-self.smax, self.smax)
        x.clamp_(0, self.smax)
        return torch.cat([self.cond_head(x[r:r + _CHUNK_ROWS]) for r in range(0, t, _CHUNK_ROWS)])

    # ---------------------------------------------------------------------------------------- StagePrior
    def _check(self, stage: int, shape: Sequence[int]) -> int:
        if not 1 <= stage <= self.num_stages:
            raise ValueError(f"stage must be 1..{self.num_stages}, got {stage}")
        if len(shape) != 1 or int(shape[0]) < 1:
            raise ValueError(f"audio index sequences have shape (T,) with T >= 1, got {tuple(shape)}")
        return int(shape[0])

    def coding_groups(self, stage: int, shape: tuple[int, ...]) -> list[np.ndarray]:
        """Stage 1: group t = frame t of every segment (lockstep); stages >= 2: all frames at once."""
        t = self._check(stage, shape)
        if stage > 1:
            return [np.arange(t, dtype=np.int64)]
        seg = self.cfg.segment_frames
        return [np.arange(i, t, seg, dtype=np.int64) for i in range(min(seg, t))]

    def frequencies(self, indices: torch.Tensor, stage: int) -> np.ndarray:
        """Encoder side: indices (s', T) int64, s' >= stage -> (T, K) int64 frequencies of `stage`."""
        x = torch.as_tensor(indices, dtype=torch.int64)
        self._check(stage, x.shape[1:])
        logits = self._ar_logits(x[0]) if stage == 1 else self._cond_logits(x, stage)
        return self.freqs(logits)

    def decode_stage(self, stage: int, earlier: torch.Tensor | None, shape: tuple[int, ...], decode_fn
                     ) -> torch.Tensor:
        """Decoder side: calls decode_fn once per coding group; returns the stage's indices (T,) int64."""
        t = self._check(stage, shape)
        if stage > 1:
            return torch.from_numpy(np.asarray(decode_fn(self.freqs(self._cond_logits(earlier, stage))),
                                               dtype=np.int64))
        return self._decode_stage1(t, decode_fn)

    def _decode_stage1(self, t: int, decode_fn) -> torch.Tensor:
        seg = self.cfg.segment_frames
        nseg = -(-t // seg)
        last = t - (nseg - 1) * seg
        c = self.cfg.ar_channels
        rings = [torch.zeros(nseg, d, c, dtype=torch.float64) for d in self.cfg.dilations]
        out = torch.empty(nseg, seg, dtype=torch.int64)
        prev = None
        for step in range(min(seg, t)):
            n = nseg if step < last else nseg - 1  # the last segment may be shorter
            if prev is None:
                h = self.ar_start.expand(n, -1).clone()
            else:
                h = self.ar_embed.index_select(0, prev[:n])
            skip = None
            for i, d in enumerate(self.cfg.dilations):
                ring = rings[i]
                slot = step % d
                past = ring[:n, slot].clone() if step >= d else torch.zeros(n, c, dtype=torch.float64)
                ring[:n, slot] = h
                h, skip = self._layer_step(i, h, past, skip)
            symbols = torch.as_tensor(np.asarray(decode_fn(self.freqs(self._ar_head(skip))), dtype=np.int64))
            out[:n, step] = symbols
            prev = symbols
        return out.reshape(-1)[:t].clone()

    def sample(self, stages: int, frames: int, seed: int = 0) -> torch.Tensor:
        """Draw (stages, frames) int64 index sequences from the prior (seeded, exact): the paper's generation
        experiment for audio."""
        rng = np.random.default_rng(seed)

        def draw(freqs: np.ndarray) -> np.ndarray:
            p = freqs / freqs.sum(axis=1, keepdims=True)
            return np.array([rng.choice(p.shape[1], p=row) for row in p], dtype=np.int64)

        seqs = [self.decode_stage(1, None, (frames,), draw)]
        for s in range(2, stages + 1):
            seqs.append(self.decode_stage(s, torch.stack(seqs), (frames,), draw))
        return torch.stack(seqs)

    # ---------------------------------------------------------------------------------------- files
    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self._tensors)

    @classmethod
    def from_state_dict(cls, tensors: dict[str, torch.Tensor]) -> "IntegerAudioPrior":
        cfg = AudioPriorConfig.from_dict(read_int_scalars(tensors, "config"))
        fmt = read_int_scalars(tensors, "format")
        return cls(cfg, fmt, tensors)

    @classmethod
    def from_float(cls, model: AudioPrior, calibration: Sequence[torch.Tensor],
                   fmt: dict[str, int] | None = None) -> "IntegerAudioPrior":
        """Post-training quantization of `model` with activation ranges from calibration sequences [(S, T)]."""
        fmt = dict(FIXED_POINT_FORMAT if fmt is None else fmt)
        cfg = model.cfg
        model = model.eval()
        stats = model.calibrate(list(calibration))
        smax, bits, mb = fmt["stream_max"], fmt["weight_bits"], fmt["mult_bits"]
        lut_scale, act_scale = 2.0 ** -fmt["lut_in_frac"], 2.0 ** -fmt["act_frac"]
        logit_scale = 2.0 ** -fmt["logit_frac"]
        amax = 1 << fmt["act_frac"]
        s_h, s_skip = stream_scale(stats["ar.h"], smax), stream_scale(stats["ar.skip"], smax)
        s_out = stream_scale(stats["ar.out"], smax)
        luts = GateLuts.build(fmt)
        t: dict[str, torch.Tensor] = {
            "lut.tanh": luts.tanh.to(torch.int32), "lut.sigmoid": luts.sig.to(torch.int32),
            "lut.exp": iops.make_exp_lut(fmt["logit_frac"], fmt["exp_top_bits"]).to(torch.int32),
        }
        ar = model.ar
        t["ar.embed"] = quantize_table(ar.embed.weight, s_h, smax).to(torch.int16)
        t["ar.start"] = quantize_table(ar.start, s_h, smax).to(torch.int16)
        for i, layer in enumerate(ar.layers):
            conv = quantize_linear_layer(_conv_matrix(layer.conv.weight), layer.conv.bias, s_h, smax, lut_scale, bits, mb)
            w = torch.cat([layer.res.weight[:, :, 0], layer.skip.weight[:, :, 0]])
            b = torch.cat([layer.res.bias, layer.skip.bias])
            # one matmul for residual and skip: per-output-channel requantization gives each its own scale
            out_scale = torch.cat([torch.full((cfg.ar_channels,), s_h), torch.full((cfg.ar_skip_channels,), s_skip)])
            res_skip = _quantize_mixed(w, b, act_scale, amax, out_scale, bits, mb)
            t.update(conv.tensors(f"ar.l{i}.conv"))
            t.update(res_skip.tensors(f"ar.l{i}.res_skip"))
        t.update(quantize_linear_layer(ar.out1.weight[:, :, 0], ar.out1.bias, s_skip, smax, s_out, bits, mb)
                 .tensors("ar.out1"))
        t.update(quantize_linear_layer(ar.out2.weight[:, :, 0], ar.out2.bias, s_out, smax, logit_scale, bits, mb)
                 .tensors("ar.out2"))
        cond = model.cond
        if cond is not None:
            s_x = stream_scale(stats["cond.x"], smax)
            t["cond.embed"] = quantize_table(cond.embed, s_x, smax).reshape(-1, cond.embed.shape[-1]).to(torch.int16)
            t["cond.stage"] = quantize_table(cond.stage_embed, s_x, smax).to(torch.int16)
            for i, blk in enumerate(cond.blocks):
                t.update(quantize_linear_layer(_conv_matrix(blk.conv.weight), blk.conv.bias, s_x, smax, lut_scale,
                                               bits, mb).tensors(f"cond.b{i}.conv"))
                t.update(quantize_linear_layer(blk.pw.weight[:, :, 0], blk.pw.bias, act_scale, amax, s_x, bits, mb)
                         .tensors(f"cond.b{i}.pw"))
            t.update(quantize_linear_layer(cond.head.weight[:, :, 0], cond.head.bias, s_x, smax, logit_scale, bits, mb)
                     .tensors("cond.head"))
        else:  # a one-stage prior still carries (unused) stage>=2 tensors of the right shapes
            raise ValueError("the audio prior needs num_stages >= 2")
        t.update(int_scalars("config", cfg.to_dict()))
        t.update(int_scalars("format", fmt))
        return cls.from_state_dict(t)


def _quantize_mixed(w: torch.Tensor, b: torch.Tensor, in_scale: float, in_max: int, out_scale: torch.Tensor,
                    bits: int, mult_bits: int) -> IntLinear:
    """Like quantize_linear_layer, with a per-output-channel output scale out_scale (M,)."""
    wq, bq, s = iops.quantize_linear(w.detach(), in_scale, bits, b.detach())
    k = wq.shape[0]
    in_max_t = torch.full((k,), int(in_max), dtype=torch.int64)
    bound = iops.accumulator_bound(wq, in_max_t, bq)
    m, sh = iops.choose_multipliers(s / out_scale.to(s.dtype), bound, mult_bits)
    return IntLinear(wq, bq, m, sh, in_max_t)


def export_integer_audio_prior(model: AudioPrior, calibration: Sequence[torch.Tensor], path: str | Path
                               ) -> IntegerAudioPrior:
    """Quantize `model` and write the integer prior to `path`; returns it as loaded back from the file's tensors."""
    prior = IntegerAudioPrior.from_float(model, calibration)
    save_prior_file(path, prior.state_dict(), AUDIO_PRIOR_FORMAT)
    return load_integer_audio_prior(path)


def load_integer_audio_prior(path: str | Path) -> IntegerAudioPrior:
    """Load an integer audio prior written by `export_integer_audio_prior`."""
    tensors = load_prior_file(path, AUDIO_PRIOR_FORMAT, "export one with export_integer_audio_prior")
    return IntegerAudioPrior.from_state_dict(tensors)
