"""Quantized image prior with exact integer inference, incremental stage-1 decoding and a fixed coding order.

`IntegerImagePrior` is built from a trained float `ImagePrior` by post-training quantization
(`from_float`) and shipped as plain integer tensors (`state_dict` / `from_state_dict`). Every number it
produces is an integer computed by codec/integer_ops.py, so the encoder's and the decoder's frequencies are
equal bit for bit on any machine, thread count and batch composition.

Fixed-point formats (see `FORMAT`):
* residual streams (stage-1 horizontal stack and embeddings, the conditional net's x and depthwise
  outputs): int in [-32767, 32767] with a per-tensor scale chosen from calibration maxima (x 1.5 margin);
* tanh/sigmoid inputs: int u, value u / 2^10, clamped to [-8, 8] (the float model clamps identically);
* tanh/sigmoid/gate outputs: int, value / 2^12 (tables shipped with the weights);
* weights: signed 12-bit per output channel; biases int32; requantization multipliers M with up to
  24 significant bits (fewer when the exactness bound below requires it);
* logits: int, value / 2^6 nats; frequencies EXP_LUT[max - logit] in [1, 2^15], row sum <= 2^24.

All integers are held in float64 tensors (BLAS dgemm is the fast exact integer matmul on CPU).
Exactness bound (checked for every layer when a model is built or loaded, `_check_bounds`): an
accumulator is sum_k W[k] x[k] + B with |W| <= 2047, |x| <= 32767 and K <= (kernel taps) * 2C, so for
C = 64: |acc| <= 384 * 2047 * 32767 + |B| < 2^35 << 2^53; every partial sum of any summation order is
then an exactly representable integer, so dgemm's result does not depend on blocking, SIMD width or
threads. Requantization floor((acc + B) * M / 2^sh + 1/2) is done as floor(acc * (M/2^sh) +
(B*M + 2^(sh-1))/2^sh): both operations are exact because |acc*M| + |B*M| + 2^sh < 2^53 (M's width is
chosen per layer from the analytic accumulator bound), so the result equals integer arithmetic
(`integer_ops.requantize`, tested).

Coding order (stage 1): the map is cut into tiles (`tile_boxes`, config tile_h x tile_w); inside a tile
positions are coded by wavefronts t = c + a * r (a = 1 + the rightward reach of the receptive field per
row above, derived from the network), each group holding one wavefront of every tile. Decoding computes
each layer's activation at a position exactly once, at the first step at which all its inputs are
known (Ramachandran et al. 2017). Stages >= 2: one group with all positions.

Measured (synthetic structured maps, 64 x 96 x 8 stages, default PriorConfig, one core of the shared
2-core CPU, benchmarks/prior_speed.py): encoder frequencies for all 8 stages 0.65 s, decoding all 8
stages 0.66 s (stage 1: 0.29 s in 189 groups); quantization penalty (integer vs float bits) < 0.01 %;
32-row tiles cost 0.6 % of stage-1 bits against no tiles.

Stage numbers in this API are 1-based (stage 1 is the first index map), as in the codec's format.

Use by the codec (encoder and decoder must use the same groups in the same order):
    prior = load_integer_prior(path)                       # below
    # encoder, per stage s = 1..S:
    f = prior.frequencies(indices, s)                      # (H*W, K) int64, raster order
    for g in prior.coding_groups(s, H, W):                 # int64 arrays of flat positions
        encoder.encode(indices[s-1].reshape(-1)[g], f[g])
    # decoder, per stage s = 1..S:
    x_s = prior.decode_stage(s, earlier_maps, H, W, decoder.decode)   # decode_fn(freqs) -> symbols
"""
from __future__ import annotations

import logging
from pathlib import Path
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vqcodec.integer import ops as iops
from vqcodec.image.prior import ImagePrior, PriorConfig, tile_boxes
from vqcodec.weights.io import save_safetensors

log = logging.getLogger(__name__)

__all__ = ["IntegerImagePrior", "FORMAT", "DecodeFn", "export_integer_prior", "load_integer_prior"]

DecodeFn = Callable[[np.ndarray], np.ndarray]
"""decode_fn(freqs (n, K) int64) -> symbols (n,) integer array, in the row order of freqs."""

FORMAT: dict[str, int] = {
    "weight_bits": 12,
    "lut_in_frac": 10,
    "lut_in_max": 8,
    "act_frac": 12,
    "stream_max": 32767,
    "logit_frac": 6,
    "exp_top_bits": 15,
    "mult_bits": 24,
}
CALIBRATION_MARGIN = 1.5


@contextmanager
def _torch_threads(n: int | None):
    """Temporarily set torch's intra-op thread count (None: unchanged)."""
    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------------------------- layers
class _IntLinear:
    """y = clamp(requant(x @ W + B)) on integer-valued float64 rows x (N, K).

    Stored as integers (W (K, M), B, M, sh (M,)); in_max (K,) bounds |x| for the exactness proof.
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
        if bool((self.sh < 0).any()) or bool((self.sh > 62).any()) or bool((self.m < 0).any()):
            raise ValueError("requantization shifts must lie in [0, 62] and multipliers be >= 0")
        self.wf = self.w.to(torch.float64)
        self.mf, self.off = iops.requant_terms(self.b, self.m, self.sh)

    def bound(self) -> int:
        return iops.accumulator_bound(self.w, self.in_max, self.b)

    def expect(self, outputs: int, name: str) -> "_IntLinear":
        if self.w.shape[1] != outputs:
            raise ValueError(f"{name}: {self.w.shape[1]} outputs, the config needs {outputs}")
        return self

    def requant_bound(self) -> int:
        return self.bound() * int(self.m.max()) + int((1 << self.sh.max().item()))

    def __call__(self, x: torch.Tensor, lo: float | None = None, hi: float | None = None) -> torch.Tensor:
        return iops.requantize_(iops.exact_matmul(x, self.wf), self.mf, self.off, lo, hi)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        if int(self.w.abs().max()) >= 2**15:
            raise ValueError(f"{prefix}: weights do not fit int16")
        for name, t in (("b", self.b), ("m", self.m)):
            if int(t.abs().max()) >= 2**31:
                raise ValueError(f"{prefix}.{name} does not fit int32; retrain with smaller biases")
        return {f"{prefix}.w": self.w.to(torch.int16), f"{prefix}.b": self.b.to(torch.int32),
                f"{prefix}.m": self.m.to(torch.int32), f"{prefix}.sh": self.sh.to(torch.int32)}

    @classmethod
    def load(cls, t: dict[str, torch.Tensor], prefix: str, in_max: torch.Tensor) -> "_IntLinear":
        try:
            return cls(t[f"{prefix}.w"], t[f"{prefix}.b"], t[f"{prefix}.m"], t[f"{prefix}.sh"], in_max)
        except KeyError as e:
            raise KeyError(f"integer prior weights lack tensor {e}; the file is not an IntegerImagePrior "
                           "export or is from an incompatible version") from None

    @classmethod
    def from_float(cls, w: torch.Tensor, b: torch.Tensor | None, in_scale, in_max, out_scale: float,
                   bits: int, mult_bits: int) -> "_IntLinear":
        """w (M, K) float acting on x_float = in_scale * x_int (|x_int| <= in_max); output units out_scale."""
        wq, bq, s = iops.quantize_linear(w, in_scale, bits, b)
        k = wq.shape[0]
        in_max = torch.as_tensor(in_max, dtype=torch.int64).reshape(-1).expand(k).clone()
        bound = iops.accumulator_bound(wq, in_max, bq)
        m, sh = iops.choose_multipliers(s / out_scale, bound, mult_bits)
        return cls(wq, bq, m, sh, in_max)


def _vec(value: float | int, n: int, dtype=torch.float64) -> torch.Tensor:
    return torch.full((n,), value, dtype=dtype)


class _Luts:
    """tanh and sigmoid tables on the LUT input grid (ints), kept as one float64 table for a single gather."""

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

    @classmethod
    def build(cls, fmt: dict[str, int]) -> "_Luts":
        t = iops.make_lut(np.tanh, fmt["lut_in_frac"], fmt["lut_in_max"], fmt["act_frac"])
        s = iops.make_lut(lambda u: 1.0 / (1.0 + np.exp(-u)), fmt["lut_in_frac"], fmt["lut_in_max"], fmt["act_frac"])
        return cls(t, s, fmt)

    def gate(self, u: torch.Tensor) -> torch.Tensor:
        """u (N, 2C) clamped LUT-grid ints (float64) -> round(tanh(u_a) * sigmoid(u_b)) (N, C) float64,
        in 2^-act_frac units."""
        n, c2 = u.shape
        off = self._offsets.get(c2)
        if off is None:
            c = c2 // 2
            off = torch.cat([_vec(self.u_max, c, torch.int64), _vec(3 * self.u_max + 1, c, torch.int64)])
            self._offsets[c2] = off
        idx = u.to(torch.int64).add_(off)
        y = self.both.index_select(0, idx.view(-1)).view(n, c2)
        c = c2 // 2
        return iops.gate_product(y[:, :c], y[:, c:], self.act_frac)


# ------------------------------------------------------------------------------------- stage-1 network
@dataclass
class _Node:
    """One computation of the stage-1 graph at a set of positions.

    inputs: (cache name, offsets [(dr, dc), ...]); the gathered rows are (N, len(offsets) * C) in
    offset-major order. outputs: cache names written, in the order `fn` returns them.
    """

    name: str
    inputs: list[tuple[str, tuple[tuple[int, int], ...]]]
    outputs: list[str]
    fn: Callable[..., tuple[torch.Tensor, ...]]


class _IntPixelCNN:
    """Integer gated PixelCNN (mirror of prior_image.GatedPixelCNN) as a graph of `_Node`s."""

    def __init__(self, cfg: PriorConfig, fmt: dict[str, int], luts: _Luts, embed: torch.Tensor,
                 layers: list[dict[str, _IntLinear]], head: _IntLinear) -> None:
        self.cfg, self.fmt, self.luts = cfg, fmt, luts
        self.embed = embed.to(torch.int64)
        self.embed_f = self.embed.to(torch.float64)
        self.layers, self.head = layers, head
        self.c = cfg.ar_channels
        p = cfg.ar_kernel // 2
        self.v_offsets = [tuple((ky - p, kx - p) for ky in range(p + 1)
                                for kx in range(cfg.ar_kernel if cfg.up_right(l) else p + 1))
                          for l in range(cfg.ar_layers)]
        self.u_max = luts.u_max
        self.smax = fmt["stream_max"]
        self.nodes: list[_Node] = []
        for l in range(cfg.ar_layers):
            src = "E" if l == 0 else f"V{l - 1}"
            hsrc = "E" if l == 0 else f"H{l - 1}"
            h_off = tuple((0, dc) for dc in range(-p, 0 if l == 0 else 1))
            self.nodes.append(_Node(f"v{l}", [(src, self.v_offsets[l])], [f"VC{l}", f"V{l}"], self._v_fn(l)))
            self.nodes.append(_Node(f"h{l}", [(hsrc, h_off), (f"VC{l}", ((-1, 0),))], [f"H{l}"], self._h_fn(l)))
        self.out_cache = f"H{cfg.ar_layers - 1}"
        self.channels = {"E": self.c}
        for l in range(cfg.ar_layers):
            self.channels.update({f"VC{l}": 2 * self.c, f"V{l}": self.c, f"H{l}": self.c})

    def _v_fn(self, l: int):
        lin = self.layers[l]["v"]
        u_max = float(self.u_max)

        def fn(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            u = lin(g, -u_max, u_max)
            return u, self.luts.gate(u)
        return fn

    def _h_fn(self, l: int):
        lin_h, lin_r = self.layers[l]["h"], self.layers[l]["r"]
        first, c = l == 0, self.c
        u_max, smax = float(self.u_max), float(self.smax)

        def fn(gh: torch.Tensor, gv: torch.Tensor) -> tuple[torch.Tensor]:
            u = lin_h(torch.cat([gh, gv], dim=1), -u_max, u_max)
            r = lin_r(self.luts.gate(u))
            if not first:
                r.add_(gh[:, -c:])
            return (r.clamp_(-smax, smax),)
        return fn

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Output head on H_L rows (N, C) float64 -> integer logits (N, K) float64 (not clamped: the
        bound |logit| <= requant bound < 2^52 is checked at load)."""
        return self.head(h.clamp(min=0))

    def linears(self) -> list[tuple[str, _IntLinear]]:
        out = []
        for l, d in enumerate(self.layers):
            out += [(f"ar.{l}.{k}", v) for k, v in d.items()]
        return out + [("ar.head", self.head)]


@dataclass
class _Plan:
    """Precomputed stage-1 coding schedule for one (H, W) map (see `_IntegerStage1Engine.plan`)."""

    h: int
    w: int
    n_cache: int  # rows of every cache
    groups: list[np.ndarray]  # map positions (flat r*W+c) of each group, in decode order
    group_cache: list[torch.Tensor]  # cache rows of each group (same order)
    steps: list[list[tuple[int, torch.Tensor, list[torch.Tensor]]]]  # per group: (node, rows, gathers)
    full: list[tuple[int, torch.Tensor, list[torch.Tensor]]]  # whole-map pass, node by node
    raster_cache: torch.Tensor  # cache row of every map position in raster order (H*W,)
    groups_t: list[torch.Tensor] = field(default_factory=list)  # `groups` as tensors

    def __post_init__(self) -> None:
        self.groups_t = [torch.from_numpy(g) for g in self.groups]


class _IntegerStage1Engine:
    """Runs `_IntPixelCNN` over a tiled map: whole-map pass (encoder) or group by group (decoder)."""

    def __init__(self, net: _IntPixelCNN) -> None:
        self.net = net
        self.slope = self._wavefront_slope()
        self._plans: dict[tuple[int, int], _Plan] = {}

    # -- receptive field and order
    def receptive_field(self) -> set[tuple[int, int]]:
        """Offsets (dr, dc) of input positions that the logits at (0, 0) depend on."""
        rf: dict[str, set[tuple[int, int]]] = {"E": {(0, 0)}}
        for node in self.net.nodes:
            s: set[tuple[int, int]] = set()
            for src, offs in node.inputs:
                s |= {(dr + a, dc + b) for (dr, dc) in offs for (a, b) in rf[src]}
            for o in node.outputs:
                rf[o] = s
        return rf[self.net.out_cache]

    def _wavefront_slope(self) -> int:
        rf = self.receptive_field()
        a = 1
        for dr, dc in rf:
            if dr > 0 or (dr == 0 and dc >= 0):
                raise AssertionError(f"stage-1 network is not causal: depends on offset {(dr, dc)}")
            if dr < 0:
                a = max(a, dc // (-dr) + 1)
        return a

    def tile_shape(self, h: int, w: int) -> tuple[int, int]:
        cfg = self.net.cfg
        return (h if cfg.tile_h <= 0 else min(cfg.tile_h, h), w if cfg.tile_w <= 0 else min(cfg.tile_w, w))

    def local_order(self, th: int, tw: int) -> np.ndarray:
        """Group id (th, tw) of each position of a tile: dense rank of c + slope * r."""
        r, c = np.meshgrid(np.arange(th), np.arange(tw), indexing="ij")
        t = c + self.slope * r
        _, g = np.unique(t, return_inverse=True)
        return g.reshape(th, tw)

    def plan(self, h: int, w: int) -> _Plan:
        key = (h, w)
        if key not in self._plans:
            if len(self._plans) > 8:
                self._plans.clear()
            self._plans[key] = self._build_plan(h, w)
        return self._plans[key]

    def _build_plan(self, h: int, w: int) -> _Plan:
        net = self.net
        th, tw = self.tile_shape(h, w)
        boxes = tile_boxes(h, w, net.cfg.tile_h, net.cfg.tile_w)
        offs = [o for n in net.nodes for _, os_ in n.inputs for o in os_]
        top = max(0, max(-dr for dr, _ in offs)); bot = max(0, max(dr for dr, _ in offs))
        left = max(0, max(-dc for _, dc in offs)); right = max(0, max(dc for _, dc in offs))
        hp, wp = th + top + bot, tw + left + right
        nt = len(boxes)
        g = self.local_order(th, tw)
        n_groups = int(g.max()) + 1

        def padded(a: np.ndarray, fill: int = 0) -> np.ndarray:
            out = np.full((hp, wp), fill, dtype=a.dtype)
            out[top:top + th, left:left + tw] = a
            return out

        def shifted(a_pad: np.ndarray, dr: int, dc: int) -> np.ndarray:
            return a_pad[top + dr: top + dr + th, left + dc: left + dc + tw]

        # ready step of every cache at every local position (out-of-tile = zero padding = ready at 0)
        ready: dict[str, np.ndarray] = {"E": padded(g + 1)}
        node_ready = []
        for node in net.nodes:
            r = np.zeros((th, tw), dtype=np.int64)
            for src, os_ in node.inputs:
                for dr, dc in os_:
                    r = np.maximum(r, shifted(ready[src], dr, dc))
            node_ready.append(r)
            for o in node.outputs:
                ready[o] = padded(r)
        out_ready = shifted(ready[net.out_cache], 0, 0)
        if (out_ready > g).any():
            raise AssertionError("coding order violates causality of the stage-1 network")
        # which node outputs are needed by some logits (backwards)
        need: dict[str, np.ndarray] = {k: np.zeros((hp, wp), dtype=bool) for k in ready}
        need[net.out_cache][top:top + th, left:left + tw] = True
        node_need = [None] * len(net.nodes)
        for i in range(len(net.nodes) - 1, -1, -1):
            node = net.nodes[i]
            nn_ = np.zeros((th, tw), dtype=bool)
            for o in node.outputs:
                nn_ |= shifted(need[o], 0, 0)
            node_need[i] = nn_
            for src, os_ in node.inputs:
                for dr, dc in os_:
                    shifted(need[src], dr, dc)[...] |= nn_
        # global cache rows: tile b, local (r, c) -> b*hp*wp + (r+top)*wp + (c+left)
        rr, cc = np.meshgrid(np.arange(th), np.arange(tw), indexing="ij")
        local_row = ((rr + top) * wp + (cc + left)).reshape(-1)
        valid = np.zeros((nt, th * tw), dtype=bool)
        map_pos = np.full((nt, th * tw), -1, dtype=np.int64)
        for b, (r0, c0, bh, bw) in enumerate(boxes):
            vm = (rr < bh) & (cc < bw)
            valid[b] = vm.reshape(-1)
            map_pos[b] = np.where(vm, (r0 + rr) * w + (c0 + cc), -1).reshape(-1)
        cache_row = (np.arange(nt)[:, None] * hp * wp + local_row[None, :])  # (nt, th*tw)

        def sched(key_local: np.ndarray, sel_local: np.ndarray):
            """valid rows with sel, sorted by key (stable: tile-major, then raster) -> (keys, rows)."""
            sel = valid & sel_local.reshape(1, -1)
            keys = np.broadcast_to(key_local.reshape(1, -1), sel.shape)[sel]
            rows = cache_row[sel]
            order = np.argsort(keys, kind="stable")
            return keys[order], rows[order], order, sel

        steps: list[list] = [[] for _ in range(n_groups)]
        full = []
        for i, node in enumerate(net.nodes):
            keys, rows, _, _ = sched(node_ready[i], node_need[i])
            deltas = [np.array([dr * wp + dc for dr, dc in os_], dtype=np.int64) for _, os_ in node.inputs]
            # flat gather indices, offset-major per row: rows a..z of a step are entries a*k..z*k
            gath = [(torch.from_numpy((rows[:, None] + d[None, :]).reshape(-1).astype(np.int64)), d.size)
                    for d in deltas]
            rows_t = torch.from_numpy(rows.astype(np.int64))
            if rows.size:
                full.append((i, rows_t, [g_ for g_, _ in gath]))
            bounds = np.searchsorted(keys, np.arange(n_groups + 1), side="left")
            for s in range(n_groups):
                a, z = int(bounds[s]), int(bounds[s + 1])
                if z > a:
                    steps[s].append((i, rows_t[a:z], [g_[a * k:z * k] for g_, k in gath]))
        gkeys, grows, order, sel = sched(g, np.ones((th, tw), dtype=bool))
        gmap = map_pos[sel][order]
        gb = np.searchsorted(gkeys, np.arange(n_groups + 1), side="left")
        groups = [gmap[gb[s]:gb[s + 1]].copy() for s in range(n_groups)]
        group_cache = [torch.from_numpy(grows[gb[s]:gb[s + 1]].astype(np.int64)) for s in range(n_groups)]
        raster = np.empty(h * w, dtype=np.int64)
        raster[map_pos[valid]] = cache_row[valid]
        log.debug("stage-1 plan for %dx%d: %d tiles, %d groups", h, w, nt, n_groups)
        return _Plan(h, w, nt * hp * wp, groups, group_cache, steps, full, torch.from_numpy(raster))

    # -- execution
    def _new_caches(self, plan: _Plan) -> dict[str, torch.Tensor]:
        return {k: torch.zeros((plan.n_cache, c), dtype=torch.float64) for k, c in self.net.channels.items()}

    def _run(self, caches: dict[str, torch.Tensor], ops) -> None:
        nodes = self.net.nodes
        for i, rows, gathers in ops:
            node = nodes[i]
            n = rows.numel()
            if n == 0:  # nothing of this layer is computable in this step (tiny maps)
                continue
            args = [caches[src].index_select(0, gi).view(n, -1) for (src, _), gi in zip(node.inputs, gathers)]
            for name, val in zip(node.outputs, node.fn(*args)):
                caches[name].index_copy_(0, rows, val)

    def full_logits(self, x: torch.Tensor, chunk: int = 1024):
        """Encoder pass: stage-1 map x (H, W) int64 -> generator of integer logits (float64) for the map
        positions in raster order, `chunk` rows at a time (keeps the (n, K) temporaries in cache)."""
        h, w = x.shape
        plan = self.plan(h, w)
        caches = self._new_caches(plan)
        caches["E"].index_copy_(0, plan.raster_cache, self.net.embed_f.index_select(0, x.reshape(-1)))
        self._run(caches, plan.full)
        hl = caches[self.net.out_cache]
        for i in range(0, h * w, chunk):
            yield self.net.logits(hl.index_select(0, plan.raster_cache[i:i + chunk]))

    def decode(self, h: int, w: int, step_fn: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Decoder pass. step_fn(group, logits (n, K) float64) -> symbols (n,) int64. Returns (H, W) int64."""
        plan = self.plan(h, w)
        caches = self._new_caches(plan)
        out = torch.empty(h * w, dtype=torch.int64)
        hl, e = caches[self.net.out_cache], caches["E"]
        for s, ops in enumerate(plan.steps):
            self._run(caches, ops)
            rows = plan.group_cache[s]
            sym = step_fn(s, self.net.logits(hl.index_select(0, rows)))
            e.index_copy_(0, rows, self.net.embed_f.index_select(0, sym))
            out[plan.groups_t[s]] = sym
        return out.reshape(h, w)


# ---------------------------------------------------------------------------------- stages >= 2 network
class _IntCondNet:
    """Integer mirror of prior_image.ConditionalStagePrior (non-causal, whole-map passes, float64-held ints)."""

    def __init__(self, cfg: PriorConfig, fmt: dict[str, int], luts: _Luts, embed: torch.Tensor,
                 stage_embed: torch.Tensor, blocks: list[dict], head: _IntLinear) -> None:
        self.cfg, self.fmt, self.luts = cfg, fmt, luts
        self.embed = embed.to(torch.int64)  # (S-1, K, C)
        self.stage_embed = stage_embed.to(torch.int64)  # (S-1, C)
        self.embed_f, self.stage_embed_f = self.embed.to(torch.float64), self.stage_embed.to(torch.float64)
        self.blocks = blocks  # dicts: dw_w (k*k, C), dw_b, dw_m, dw_sh (C,) int64; pw1, pw2 (_IntLinear)
        for blk in self.blocks:
            if bool((blk["dw_sh"] < 0).any()) or bool((blk["dw_sh"] > 62).any()):
                raise ValueError("depthwise requantization shifts must lie in [0, 62]")
            blk["dw_wf"] = blk["dw_w"].to(torch.float64)
            blk["dw_terms"] = iops.requant_terms(blk["dw_b"], blk["dw_m"], blk["dw_sh"])
        self.head = head
        self.k = cfg.cond_kernel
        self.smax = fmt["stream_max"]

    def dw_bound(self, blk: dict) -> int:
        """|depthwise accumulator + bias| bound (inputs are clamped stream values)."""
        return int(blk["dw_w"].abs().sum(0).max()) * self.smax + int(blk["dw_b"].abs().max())

    def context(self, earlier: torch.Tensor) -> torch.Tensor:
        """earlier (T, H, W) int64 -> stage T+1 input (H, W, C) float64 ints, clamped to the stream range."""
        t, h, w = earlier.shape
        x = self.stage_embed_f[t - 1].expand(h * w, -1).clone()
        for i in range(t):
            x += self.embed_f[i].index_select(0, earlier[i].reshape(-1))
        return x.clamp_(-self.smax, self.smax).view(h, w, -1)

    def trunk(self, earlier: torch.Tensor) -> torch.Tensor:
        """earlier stages (T, H, W) -> final stream x (H*W, C) float64 ints."""
        x = self.context(earlier)
        h, w, c = x.shape
        k, p = self.k, self.k // 2
        u_max, smax = float(self.luts.u_max), float(self.smax)
        for blk in self.blocks:
            xp = F.pad(x.permute(2, 0, 1), (p, p, p, p)).permute(1, 2, 0)
            acc = torch.zeros((h, w, c), dtype=torch.float64)
            wf = blk["dw_wf"]
            for dy in range(k):
                for dx in range(k):
                    acc.addcmul_(xp[dy:dy + h, dx:dx + w, :], wf[dy * k + dx])
            d = iops.requantize_(acc.view(h * w, c), *blk["dw_terms"], -smax, smax)
            r = blk["pw2"](self.luts.gate(blk["pw1"](d, -u_max, u_max)))
            x = r.add_(x.view(h * w, c)).clamp_(-smax, smax).view(h, w, c)
        return x.view(h * w, c)

    def logits(self, earlier: torch.Tensor, chunk: int = 1024):
        """Generator of integer logits (float64, (<=chunk, K)) of stage T+1 in raster order."""
        x = self.trunk(earlier)
        for i in range(0, x.shape[0], chunk):
            yield self.head(x[i:i + chunk].clamp(min=0))

    def linears(self) -> list[tuple[str, _IntLinear]]:
        out = []
        for i, blk in enumerate(self.blocks):
            out += [(f"cond.{i}.pw1", blk["pw1"]), (f"cond.{i}.pw2", blk["pw2"])]
        return out + [("cond.head", self.head)]


# -------------------------------------------------------------------------------------------- the prior
class IntegerImagePrior:
    """Exact integer prior p(x_1..x_S) with the codec's coding order. Build with `from_float` or
    `from_state_dict`; all outputs are integers (frequencies as int64 numpy arrays (n, K))."""

    def __init__(self, cfg: PriorConfig, fmt: dict[str, int], luts: _Luts, exp_lut: torch.Tensor,
                 ar: _IntPixelCNN, cond: _IntCondNet | None) -> None:
        self.cfg, self.fmt, self.luts = cfg, dict(fmt), luts
        self.exp_lut = exp_lut.to(torch.int64)
        self.ar, self.cond = ar, cond
        self.engine = _IntegerStage1Engine(ar)
        self.num_threads: int | None = 1
        """torch intra-op threads for whole-map passes (None: use the process setting); restored after
        each call. The default is 1: on a 2-core machine that is also running other work (training, the
        image decoder), a second OpenMP thread waits for a busy core and made passes ~5x slower in our
        measurements; on an idle machine 2 threads gain < 2x. Stage-1 decoding always runs its per-group
        loop on one thread. Results are bit-identical for any setting."""
        self._check_bounds()

    # -- properties
    @property
    def num_stages(self) -> int:
        return self.cfg.num_stages

    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    @property
    def wavefront_slope(self) -> int:
        """a in the stage-1 wavefront t = c + a * r."""
        return self.engine.slope

    def _check_bounds(self) -> None:
        """Assert that every matmul and requantization stays in float64's exact integer range."""
        lim = iops.FLOAT64_EXACT_LIMIT
        for name, lin in self.ar.linears() + (self.cond.linears() if self.cond else []):
            if lin.requant_bound() >= lim:
                raise ValueError(f"{name}: accumulator/requantization bound >= 2^53; float64 would not be exact")
        if self.cond is not None:
            for i, blk in enumerate(self.cond.blocks):
                b = self.cond.dw_bound(blk) * int(blk["dw_m"].max()) + int(1 << int(blk["dw_sh"].max()))
                if b >= lim:
                    raise ValueError(f"cond.{i}.dw: requantization bound >= 2^53")
            n_emb = self.num_stages - 1
            if n_emb * (int(self.cond.embed.abs().max()) + int(self.cond.stage_embed.abs().max())) >= lim:
                raise ValueError("cond embeddings too large")
        total = self.codebook_size * int(self.exp_lut[0])
        if total > 2**24 or int(self.exp_lut.min()) < 1:
            raise ValueError("exp table gives frequencies outside [1, 2^24 / K]")

    # -- coding API
    def _check_stage(self, stage: int) -> None:
        if not 1 <= stage <= self.num_stages:
            raise ValueError(f"stage must be in 1..{self.num_stages} (1-based), got {stage}")

    def coding_groups(self, stage: int, h: int, w: int) -> list[np.ndarray]:
        """Order of coding for one stage of an (h, w) map: list of int64 arrays of flat positions r*w+c.

        All positions of a group are coded together (their frequencies depend only on earlier groups),
        in the array's order. Stage 1: wavefronts over tiles; stages >= 2: one group, raster order.
        """
        self._check_stage(stage)
        if stage == 1:
            return [g.copy() for g in self.engine.plan(h, w).groups]
        return [np.arange(h * w, dtype=np.int64)]

    def freqs_from_logits(self, logits: torch.Tensor) -> np.ndarray:
        """Integer logits (n, K) (float64-held, overwritten) -> frequencies (n, K) int64 numpy
        (every entry >= 1, row sums <= 2^24)."""
        return iops.logits_to_freqs(logits, self.exp_lut, inplace=True).numpy()

    def _freqs_of_chunks(self, chunks, n: int) -> np.ndarray:
        """Frequencies (n, K) int64 of a stream of logit chunks, written straight into one array."""
        out = np.empty((n, self.codebook_size), dtype=np.int64)
        dest = torch.from_numpy(out)
        i = 0
        for lg in chunks:
            iops.logits_to_freqs(lg, self.exp_lut, inplace=True, out=dest[i:i + lg.shape[0]])
            i += lg.shape[0]
        if i != n:
            raise AssertionError(f"produced {i} rows of frequencies for {n} positions")
        return out

    def _logit_chunks(self, x: torch.Tensor, stage: int):
        if stage == 1:
            return self.engine.full_logits(x[0])
        return self.cond.logits(x[: stage - 1])

    def _indices(self, indices, stage: int) -> torch.Tensor:
        self._check_stage(stage)
        x = torch.as_tensor(indices, dtype=torch.int64)
        if x.dim() != 3 or x.shape[0] < stage:
            raise ValueError(f"indices must be (S, H, W) with S >= {stage}, got {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.codebook_size):
            raise ValueError(f"indices must lie in [0, {self.codebook_size})")
        return x

    def logits(self, indices: torch.Tensor, stage: int) -> torch.Tensor:
        """Integer logits (H*W, K) int64 of `stage` (1-based) given indices (S' >= stage, H, W); raster order.
        Units: 2^-logit_frac nats."""
        x = self._indices(indices, stage)
        with self._threads():
            return torch.cat(list(self._logit_chunks(x, stage))).to(torch.int64)

    def frequencies(self, indices: torch.Tensor, stage: int) -> np.ndarray:
        """Encoder side: frequencies (H*W, K) int64 of `stage` (1-based) at every position, raster order.

        indices: (S', H, W) int64 with S' >= stage (stage 1 uses the true stage-1 map as context, stages
        s >= 2 use stages 1..s-1). Equal bit for bit to what `decode_stage` produces group by group.
        """
        x = self._indices(indices, stage)
        with self._threads():
            return self._freqs_of_chunks(self._logit_chunks(x, stage), x.shape[1] * x.shape[2])

    def decode_stage(self, stage: int, earlier: torch.Tensor | None, h: int, w: int,
                     decode_fn: DecodeFn) -> torch.Tensor:
        """Decoder side: decode one (h, w) index map of `stage` (1-based).

        earlier: (stage-1, h, w) int64 maps of the earlier stages (None or empty for stage 1).
        decode_fn(freqs (n, K) int64 numpy) -> symbols (n,): called once per group of `coding_groups`,
        in order. Returns (h, w) int64.
        """
        self._check_stage(stage)
        if stage == 1:
            def step(_: int, logits: torch.Tensor) -> torch.Tensor:
                return self._symbols(decode_fn(self.freqs_from_logits(logits)), logits.shape[0])
            # the per-group tensors are tiny: a second thread only adds synchronisation
            with self._threads(1):
                return self.engine.decode(h, w, step)
        earlier = torch.as_tensor(earlier, dtype=torch.int64)
        if tuple(earlier.shape) != (stage - 1, h, w):
            raise ValueError(f"earlier must have shape {(stage - 1, h, w)}, got {tuple(earlier.shape)}")
        with self._threads():
            freqs = self._freqs_of_chunks(self.cond.logits(earlier), h * w)
        return self._symbols(decode_fn(freqs), h * w).reshape(h, w)

    def _threads(self, n: int | None = None):
        return _torch_threads(n if n is not None else self.num_threads)

    def _symbols(self, sym, n: int) -> torch.Tensor:
        s = torch.as_tensor(np.asarray(sym), dtype=torch.int64).reshape(-1)
        if s.numel() != n:
            raise ValueError(f"decode_fn returned {s.numel()} symbols for {n} positions")
        if n and (int(s.min()) < 0 or int(s.max()) >= self.codebook_size):
            raise ValueError("decode_fn returned a symbol outside [0, K)")
        return s

    def sample(self, stage_count: int, h: int, w: int, seed: int) -> torch.Tensor:
        """Draw index maps (stage_count, h, w) int64 from the integer prior (seeded, deterministic):
        stage 1 through the same incremental decoder as `decode_stage`, then stages 2.. in order."""
        if not 1 <= stage_count <= self.num_stages:
            raise ValueError(f"stage_count must be in 1..{self.num_stages}")
        rng = np.random.Generator(np.random.PCG64(seed))

        def sampler(freqs: np.ndarray) -> np.ndarray:
            cum = np.cumsum(freqs, axis=1)
            u = rng.integers(0, cum[:, -1])
            return (cum <= u[:, None]).sum(axis=1)

        maps = [self.decode_stage(1, None, h, w, sampler)]
        for s in range(2, stage_count + 1):
            maps.append(self.decode_stage(s, torch.stack(maps), h, w, sampler))
        return torch.stack(maps)

    def bits(self, indices: torch.Tensor) -> np.ndarray:
        """Ideal code length in bits per index of each stage of one map (S', H, W) under the integer
        frequencies (what an exact arithmetic coder would spend). Returns (S',) float64."""
        x = torch.as_tensor(indices, dtype=torch.int64)
        out = []
        for s in range(1, x.shape[0] + 1):
            f = self.frequencies(x, s)
            p = f[np.arange(f.shape[0]), x[s - 1].reshape(-1).numpy()] / f.sum(axis=1)
            out.append(float(-np.log2(p).mean()))
        return np.array(out)

    # -- construction
    @classmethod
    def from_float(cls, prior: ImagePrior, calibration_maps: Sequence[torch.Tensor],
                   weight_bits: int | None = None) -> "IntegerImagePrior":
        """Post-training quantization of a float `ImagePrior`.

        calibration_maps: index maps (S, H, W) int64 run through the float model to find the range of
        each residual stream (max |value| x 1.5 becomes the int16 full scale).
        """
        fmt = dict(FORMAT)
        if weight_bits is not None:
            fmt["weight_bits"] = int(weight_bits)
        if not calibration_maps:
            raise ValueError("from_float needs at least one calibration map")
        cfg = prior.cfg
        stats = prior.calibrate(list(calibration_maps))
        bits, mb, smax = fmt["weight_bits"], fmt["mult_bits"], fmt["stream_max"]
        lut_scale = 2.0 ** -fmt["lut_in_frac"]
        act_scale = 2.0 ** -fmt["act_frac"]
        logit_scale = 2.0 ** -fmt["logit_frac"]
        u_max = fmt["lut_in_max"] << fmt["lut_in_frac"]
        act_max = 1 << fmt["act_frac"]
        luts = _Luts.build(fmt)

        def stream_scale(v: float) -> float:
            return max(v, 1e-6) * CALIBRATION_MARGIN / smax

        # stage 1
        ar = prior.ar
        c = cfg.ar_channels
        s_h = stream_scale(max(stats.get("ar.h", 0.0), float(ar.embed.weight.detach().abs().max())))
        embed = torch.round(ar.embed.weight.detach().double() / s_h).clamp(-smax, smax).to(torch.int64)
        layers = []
        for l, layer in enumerate(ar.layers):
            in_s, in_m = (s_h, smax) if l == 0 else (act_scale, act_max)
            v = _IntLinear.from_float(iops.conv_weight_to_matrix(layer.v_conv.weight.detach()).t(),
                                      layer.v_conv.bias, in_s, in_m, lut_scale, bits, mb)
            hw = iops.conv_weight_to_matrix(layer.h_conv.weight.detach()).t()
            n_h = hw.shape[1]
            w_h = torch.cat([hw, layer.v2h.weight.detach()[:, :, 0, 0]], dim=1)
            sc = torch.cat([_vec(s_h, n_h), _vec(lut_scale, 2 * c)])
            mx = torch.cat([_vec(smax, n_h, torch.int64), _vec(u_max, 2 * c, torch.int64)])
            hlin = _IntLinear.from_float(w_h, layer.h_conv.bias, sc, mx, lut_scale, bits, mb)
            r = _IntLinear.from_float(layer.res.weight.detach()[:, :, 0, 0], layer.res.bias, act_scale, act_max,
                                      s_h, bits, mb)
            layers.append({"v": v, "h": hlin, "r": r})
        head = _IntLinear.from_float(ar.head.weight.detach()[:, :, 0, 0], ar.head.bias, s_h, smax, logit_scale,
                                     bits, mb)
        int_ar = _IntPixelCNN(cfg, fmt, luts, embed, layers, head)

        # stages >= 2
        int_cond = None
        if prior.cond is not None:
            cn = prior.cond
            cc = cfg.cond_channels
            s_x = stream_scale(max(stats.get("cond.x", 0.0), float(cn.embed.detach().abs().max()),
                                   float(cn.stage_embed.detach().abs().max())))
            emb = torch.round(cn.embed.detach().double() / s_x).clamp(-smax, smax).to(torch.int64)
            semb = torch.round(cn.stage_embed.detach().double() / s_x).clamp(-smax, smax).to(torch.int64)
            blocks = []
            for i, blk in enumerate(cn.blocks):
                s_d = stream_scale(stats.get(f"cond.d{i}", 0.0))
                k2 = cfg.cond_kernel ** 2
                dw_w, dw_b, dw_s = iops.quantize_linear(blk.dw.weight.detach().reshape(cc, k2), s_x, bits,
                                                        blk.dw.bias)
                dw_bound = int(dw_w.abs().sum(0).max()) * smax + int(dw_b.abs().max())
                dw_m, dw_sh = iops.choose_multipliers(dw_s / s_d, dw_bound, mb)
                pw1 = _IntLinear.from_float(blk.pw1.weight.detach()[:, :, 0, 0], blk.pw1.bias, s_d, smax,
                                            lut_scale, bits, mb)
                pw2 = _IntLinear.from_float(blk.pw2.weight.detach()[:, :, 0, 0], blk.pw2.bias, act_scale,
                                            act_max, s_x, bits, mb)
                blocks.append({"dw_w": dw_w, "dw_b": dw_b, "dw_m": dw_m, "dw_sh": dw_sh, "pw1": pw1, "pw2": pw2})
            chead = _IntLinear.from_float(cn.head.weight.detach()[:, :, 0, 0], cn.head.bias, s_x, smax,
                                          logit_scale, bits, mb)
            int_cond = _IntCondNet(cfg, fmt, luts, emb, semb, blocks, chead)
        exp_lut = iops.make_exp_lut(fmt["logit_frac"], fmt["exp_top_bits"])
        return cls(cfg, fmt, luts, exp_lut, int_ar, int_cond)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain integer tensors (int16/int32) including config ints ("config.*", "format.*") and the
        lookup tables; save with safetensors.torch.save_file."""
        t: dict[str, torch.Tensor] = {}
        for k, v in self.cfg.to_dict().items():
            t[f"config.{k}"] = torch.tensor(v, dtype=torch.int32)
        for k, v in self.fmt.items():
            t[f"format.{k}"] = torch.tensor(v, dtype=torch.int32)
        t["lut.tanh"] = self.luts.tanh.to(torch.int16)
        t["lut.sigmoid"] = self.luts.sig.to(torch.int16)
        t["lut.exp"] = self.exp_lut.to(torch.int32)
        t["ar.embed"] = self.ar.embed.to(torch.int16)
        for name, lin in self.ar.linears():
            t.update(lin.tensors(name))
        if self.cond is not None:
            t["cond.embed"] = self.cond.embed.to(torch.int16)
            t["cond.stage_embed"] = self.cond.stage_embed.to(torch.int16)
            for i, blk in enumerate(self.cond.blocks):
                t[f"cond.{i}.dw.w"] = blk["dw_w"].to(torch.int16)
                t[f"cond.{i}.dw.b"] = blk["dw_b"].to(torch.int32)
                t[f"cond.{i}.dw.m"] = blk["dw_m"].to(torch.int32)
                t[f"cond.{i}.dw.sh"] = blk["dw_sh"].to(torch.int32)
            for name, lin in self.cond.linears():
                t.update(lin.tensors(name))
        for k, v in t.items():
            if v.dtype not in (torch.int16, torch.int32):
                raise AssertionError(f"{k} is {v.dtype}")
        return {k: v.contiguous() for k, v in t.items()}

    @classmethod
    def from_state_dict(cls, tensors: dict[str, torch.Tensor]) -> "IntegerImagePrior":
        """Inverse of `state_dict` (e.g. on safetensors.torch.load_file output)."""
        try:
            cfg = PriorConfig.from_dict({k[7:]: int(v) for k, v in tensors.items() if k.startswith("config.")})
            fmt = {k[7:]: int(v) for k, v in tensors.items() if k.startswith("format.")}
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"not an integer prior state dict: {e}") from e
        missing = set(FORMAT) - set(fmt)
        if missing:
            raise ValueError(f"integer prior weights lack format entries {sorted(missing)}")
        for key in ("lut.tanh", "lut.sigmoid", "lut.exp", "ar.embed"):
            if key not in tensors:
                raise KeyError(f"integer prior weights lack tensor {key!r}; not an IntegerImagePrior export")
        t = {k: v.to(torch.int64) for k, v in tensors.items()}
        luts = _Luts(t["lut.tanh"], t["lut.sigmoid"], fmt)
        smax, u_max, act_max = fmt["stream_max"], luts.u_max, 1 << fmt["act_frac"]
        c = cfg.ar_channels
        p = cfg.ar_kernel // 2
        layers = []
        for l in range(cfg.ar_layers):
            n_v = (p + 1) * (cfg.ar_kernel if cfg.up_right(l) else p + 1) * c
            n_h = (p if l == 0 else p + 1) * c
            layers.append({
                "v": _IntLinear.load(t, f"ar.{l}.v", _vec(smax if l == 0 else act_max, n_v, torch.int64)
                                     ).expect(2 * c, f"ar.{l}.v"),
                "h": _IntLinear.load(t, f"ar.{l}.h", torch.cat([_vec(smax, n_h, torch.int64),
                                                                 _vec(u_max, 2 * c, torch.int64)])
                                     ).expect(2 * c, f"ar.{l}.h"),
                "r": _IntLinear.load(t, f"ar.{l}.r", _vec(act_max, c, torch.int64)).expect(c, f"ar.{l}.r"),
            })
        head = _IntLinear.load(t, "ar.head", _vec(smax, c, torch.int64)).expect(cfg.codebook_size, "ar.head")
        if tuple(t["ar.embed"].shape) != (cfg.codebook_size, c):
            raise ValueError("ar.embed does not match the config")
        ar = _IntPixelCNN(cfg, fmt, luts, t["ar.embed"], layers, head)
        cond = None
        if "cond.embed" in t:
            cc = cfg.cond_channels
            blocks = []
            for i in range(cfg.cond_blocks):
                blocks.append({
                    "dw_w": t[f"cond.{i}.dw.w"], "dw_b": t[f"cond.{i}.dw.b"], "dw_m": t[f"cond.{i}.dw.m"],
                    "dw_sh": t[f"cond.{i}.dw.sh"],
                    "pw1": _IntLinear.load(t, f"cond.{i}.pw1", _vec(smax, cc, torch.int64)
                                           ).expect(2 * cc, f"cond.{i}.pw1"),
                    "pw2": _IntLinear.load(t, f"cond.{i}.pw2", _vec(act_max, cc, torch.int64)
                                           ).expect(cc, f"cond.{i}.pw2"),
                })
                if tuple(blocks[-1]["dw_w"].shape) != (cfg.cond_kernel ** 2, cc):
                    raise ValueError(f"cond.{i}.dw.w does not match the config")
            chead = _IntLinear.load(t, "cond.head", _vec(smax, cc, torch.int64)).expect(cfg.codebook_size,
                                                                                      "cond.head")
            n_emb = cfg.num_stages - 1
            if (tuple(t["cond.embed"].shape) != (n_emb, cfg.codebook_size, cc)
                    or tuple(t["cond.stage_embed"].shape) != (n_emb, cc)):
                raise ValueError("cond embeddings do not match the config")
            cond = _IntCondNet(cfg, fmt, luts, t["cond.embed"], t["cond.stage_embed"], blocks, chead)
        return cls(cfg, fmt, luts, t["lut.exp"], ar, cond)

    def num_params(self) -> int:
        return sum(v.numel() for k, v in self.state_dict().items() if not k.startswith(("config.", "format.")))


# ----------------------------------------------------------------------------------------------- file
INTEGER_PRIOR_FORMAT = "vqcodec-integer-image-prior-v1"


def export_integer_prior(model: ImagePrior, calibration_maps: Sequence[torch.Tensor], path: Path,
                         weight_bits: int | None = None) -> IntegerImagePrior:
    """Quantize `model` (post-training, scales from calibration_maps [(S, H, W)]) and write the integer
    prior to `path` with safetensors. Returns the IntegerImagePrior (as loaded back from the file's
    tensors, so what is returned is exactly what is shipped)."""
    model.eval()
    ip = IntegerImagePrior.from_float(model, calibration_maps, weight_bits=weight_bits)
    sd = ip.state_dict()
    save_safetensors(path, sd, {"format": INTEGER_PRIOR_FORMAT})
    return IntegerImagePrior.from_state_dict(sd)


def load_integer_prior(path: Path) -> IntegerImagePrior:
    """Load an integer prior written by `export_integer_prior`."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != INTEGER_PRIOR_FORMAT:
        raise ValueError(f"{path} is not an integer image prior ({INTEGER_PRIOR_FORMAT}); "
                         "export one with export_integer_prior")
    return IntegerImagePrior.from_state_dict(load_file(str(path)))
