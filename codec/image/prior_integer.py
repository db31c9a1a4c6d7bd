"""Quantized image prior with exact integer inference: the two image nets and their assembly.

`IntegerImagePrior` is built from a trained float `ImagePrior` (codec/image/prior.py) by post-training
quantization (`from_float`) and shipped as plain integer tensors (`state_dict` / `from_state_dict`,
files via `export_integer_prior` / `load_integer_prior`). It is assembled from the modality-agnostic
pieces in codec/integer/:

    ops.py         exact matmul, requantization, lookup tables, logits -> frequencies
    layers.py      IntLinear, IntDepthwiseConv2d, GateLuts (tanh x sigmoid), ExpFreqs; the fixed-point
                   format and the exactness argument (every integer < 2^53, so float64 is exact)
    scheduler.py   IncrementalScheduler: coding order and incremental decoding of a causal graph
    quantize.py    float layer -> integer layer, stream scales from calibration maxima
    prior_file.py  the file format (safetensors integers + format tag)

Every number it produces is an integer, so the encoder's and the decoder's frequencies are equal bit for
bit on any machine, thread count and batch composition; the bound that makes this so is checked for
every layer when a prior is built or loaded (`_check_bounds`).

The nets (mirrors of the float ones, same clamps and padding):
* stage 1, `_IntPixelCNN`: gated PixelCNN as a 2-D `CausalGraph`; per layer a vertical node (conv over
  the rows above -> gate) and a horizontal node (conv over the left neighbours + the vertical context
  one row up -> gate -> 1x1 -> residual). Streams: embeddings and the horizontal stack at one scale.
* stages >= 2, `_IntCondNet`: non-causal; input sum_{t<s} E_t[x_t] + e_s, blocks x + pw2(gate(pw1(
  depthwise(x)))), one whole-map pass per stage.

Coding order (stage 1): the map is cut into tiles (config tile_h x tile_w); inside a tile positions are
coded by wavefronts t = c + a * r (a = 1 + the rightward reach of the receptive field per row above,
derived from the network by the scheduler), each group holding one wavefront of every tile. Decoding
computes each layer's activation at a position exactly once, at the first step at which all its inputs
are known (Ramachandran et al. 2017). Stages >= 2: one group with all positions.

Speed, and the bits the integer quantization costs against the float prior: benchmarks/prior_speed.py
(figures in CHANGELOG.md).

Stage numbers are 1-based (stage 1 is the first index map), as in the codec's format. The prior
implements `vqcodec.coding.StagePrior` with grid shape (h, w); the codec codes with
    streams = encode_stages(prior, indices)            # indices (S, h, w) -> one stream per stage
    indices = decode_stages(prior, streams, (h, w))
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from vqcodec.coding.stages import DecodeFn
from vqcodec.image.prior import ImagePrior, PriorConfig
from vqcodec.integer import ops as iops
from vqcodec.integer.layers import FIXED_POINT_FORMAT, ExpFreqs, GateLuts, IntDepthwiseConv2d, IntLinear
from vqcodec.integer.prior_file import (check_stored_dtypes, int_scalars, load_prior_file, read_int_scalars,
                                        save_prior_file)
from vqcodec.integer.quantize import (CALIBRATION_MARGIN, quantize_depthwise_conv2d, quantize_linear_layer,
                                      quantize_table, stream_scale)
from vqcodec.integer.scheduler import CausalGraph, IncrementalScheduler, Node

log = logging.getLogger(__name__)

__all__ = ["IntegerImagePrior", "FORMAT", "DecodeFn", "FrequencyRows", "BAND_POSITIONS", "DECODE_ROWS",
           "INTEGER_PRIOR_FORMAT", "export_integer_prior",
           "load_integer_prior", "CALIBRATION_MARGIN"]

FORMAT: dict[str, int] = FIXED_POINT_FORMAT
"""The fixed-point format new image priors are quantized to (vqcodec.integer.layers)."""

INTEGER_PRIOR_FORMAT = "vqcodec-integer-image-prior-v1"
"""Format tag of an integer image prior file (vqcodec.integer.prior_file)."""

FrequencyRows = Callable[[np.ndarray], np.ndarray]
"""rows(positions (n,) int64, flat raster indices) -> frequencies (n, K) int64 of those positions
(`IntegerImagePrior.frequency_rows`)."""

BAND_POSITIONS = 1 << 15
"""Positions per band of the stage >= 2 net's bounded-memory pass (whole rows; about 0.2 GB of float64
temporaries)."""
DECODE_ROWS = 1 << 14
"""Most positions of a stage >= 2 whose frequency rows (n, K) int64 exist at once when decoding (64 MB)."""
_ROW_CHUNK = 1024  # rows per head matmul: keeps the (n, K) float64 temporaries in cache


def _vec(value: float | int, n: int, dtype=torch.float64) -> torch.Tensor:
    return torch.full((n,), value, dtype=dtype)


# ------------------------------------------------------------------------------------- stage-1 network
class _IntPixelCNN:
    """Integer gated PixelCNN (mirror of image.prior.GatedPixelCNN) as a 2-D `CausalGraph` (`graph`).

    Caches (rows of float64-held ints): E embeddings (C), per layer l: VC{l} vertical pre-activations
    (2C, LUT grid), V{l} vertical stack (C, gate units), H{l} horizontal stack (C, stream units).
    Offsets are (dr, dc).
    """

    def __init__(self, cfg: PriorConfig, fmt: dict[str, int], luts: GateLuts, embed: torch.Tensor,
                 layers: list[dict[str, IntLinear]], head: IntLinear) -> None:
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
        nodes: list[Node] = []
        for l in range(cfg.ar_layers):
            src = "E" if l == 0 else f"V{l - 1}"
            hsrc = "E" if l == 0 else f"H{l - 1}"
            h_off = tuple((0, dc) for dc in range(-p, 0 if l == 0 else 1))
            nodes.append(Node(f"v{l}", [(src, self.v_offsets[l])], [f"VC{l}", f"V{l}"], self._v_fn(l)))
            nodes.append(Node(f"h{l}", [(hsrc, h_off), (f"VC{l}", ((-1, 0),))], [f"H{l}"], self._h_fn(l)))
        channels = {"E": self.c}
        for l in range(cfg.ar_layers):
            channels.update({f"VC{l}": 2 * self.c, f"V{l}": self.c, f"H{l}": self.c})
        self.graph = CausalGraph(ndim=2, channels=channels, nodes=nodes, embed=self.embed_f, head=self.logits,
                                 input="E", output=f"H{cfg.ar_layers - 1}")

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

    def linears(self) -> list[tuple[str, IntLinear]]:
        out = []
        for l, d in enumerate(self.layers):
            out += [(f"ar.{l}.{k}", v) for k, v in d.items()]
        return out + [("ar.head", self.head)]


# ---------------------------------------------------------------------------------- stages >= 2 network
class _IntCondNet:
    """Integer mirror of image.prior.ConditionalStagePrior (non-causal, whole-map passes, float64-held ints).

    blocks: [{"dw": IntDepthwiseConv2d, "pw1": IntLinear (C -> 2C), "pw2": IntLinear (C -> C)}].
    """

    def __init__(self, cfg: PriorConfig, fmt: dict[str, int], luts: GateLuts, embed: torch.Tensor,
                 stage_embed: torch.Tensor, blocks: list[dict], head: IntLinear) -> None:
        self.cfg, self.fmt, self.luts = cfg, fmt, luts
        self.embed = embed.to(torch.int64)  # (S-1, K, C)
        self.stage_embed = stage_embed.to(torch.int64)  # (S-1, C)
        self.embed_f, self.stage_embed_f = self.embed.to(torch.float64), self.stage_embed.to(torch.float64)
        self.blocks = blocks
        self.head = head
        self.smax = fmt["stream_max"]

    def context(self, earlier: torch.Tensor) -> torch.Tensor:
        """earlier (T, H, W) int64 -> stage T+1 input (H, W, C) float64 ints, clamped to the stream range.

        An ABSENT (-1) entry (the position stopped before that stage, vqcodec.coding.depth) adds nothing."""
        t, h, w = earlier.shape
        x = self.stage_embed_f[t - 1].expand(h * w, -1).clone()
        for i in range(t):
            idx = earlier[i].reshape(-1)
            absent = idx < 0
            if bool(absent.any()):
                rows = self.embed_f[i].index_select(0, idx.clamp(min=0))
                rows[absent] = 0.0
                x += rows
            else:
                x += self.embed_f[i].index_select(0, idx)
        return x.clamp_(-self.smax, self.smax).view(h, w, -1)

    def trunk(self, earlier: torch.Tensor) -> torch.Tensor:
        """earlier stages (T, H, W) -> final stream x (H*W, C) float64 ints."""
        x = self.context(earlier)
        h, w, c = x.shape
        u_max, smax = float(self.luts.u_max), float(self.smax)
        for blk in self.blocks:
            d = blk["dw"](x, -smax, smax)
            r = blk["pw2"](self.luts.gate(blk["pw1"](d, -u_max, u_max)))
            x = r.add_(x.view(h * w, c)).clamp_(-smax, smax).view(h, w, c)
        return x.view(h * w, c)

    def logits(self, earlier: torch.Tensor, chunk: int = 1024):
        """Generator of integer logits (float64, (<=chunk, K)) of stage T+1 in raster order."""
        x = self.trunk(earlier)
        for i in range(0, x.shape[0], chunk):
            yield self.head(x[i:i + chunk].clamp(min=0))

    @property
    def halo(self) -> int:
        """Rows above and below a band that its trunk output depends on (each block's depthwise conv
        reaches kernel // 2 rows)."""
        return len(self.blocks) * (self.cfg.cond_kernel // 2)

    def features(self, earlier: torch.Tensor, band_positions: int) -> np.ndarray:
        """The trunk's output clamped at 0, what the head reads: earlier (T, H, W) int64 -> (H*W, C) int16
        (values in 0..stream_max), computed in bands of about `band_positions` positions (whole rows), each
        with `halo` rows of context: the same integers as one whole-map pass."""
        _, h, w = earlier.shape
        out = np.empty((h * w, self.cfg.cond_channels), dtype=np.int16)
        band = max(1, band_positions // w)
        for r0 in range(0, h, band):
            r1 = min(h, r0 + band)
            a, b = max(0, r0 - self.halo), min(h, r1 + self.halo)
            x = self.trunk(earlier[:, a:b])[(r0 - a) * w:(r1 - a) * w]
            out[r0 * w:r1 * w] = x.clamp_(min=0).to(torch.int16).numpy()
        return out

    def layers(self) -> list[tuple[str, IntLinear | IntDepthwiseConv2d]]:
        """All requantized layers with their tensor-name prefixes, in state-dict order."""
        out: list[tuple[str, IntLinear | IntDepthwiseConv2d]] = [
            (f"cond.{i}.dw", blk["dw"]) for i, blk in enumerate(self.blocks)]
        for i, blk in enumerate(self.blocks):
            out += [(f"cond.{i}.pw1", blk["pw1"]), (f"cond.{i}.pw2", blk["pw2"])]
        return out + [("cond.head", self.head)]


# -------------------------------------------------------------------------------------------- the prior
class IntegerImagePrior:
    """Exact integer prior p(x_1..x_S) over (h, w) index maps with the codec's coding order
    (a `vqcodec.coding.StagePrior`). Build with `from_float` or `from_state_dict`; all outputs are
    integers (frequencies as int64 numpy arrays (n, K))."""

    def __init__(self, cfg: PriorConfig, fmt: dict[str, int], luts: GateLuts, exp_lut: torch.Tensor,
                 ar: _IntPixelCNN, cond: _IntCondNet | None) -> None:
        self.cfg, self.fmt, self.luts = cfg, dict(fmt), luts
        self.exp = ExpFreqs(exp_lut, cfg.codebook_size)
        self.exp_lut = self.exp.lut
        self.ar, self.cond = ar, cond
        self.engine = IncrementalScheduler(ar.graph, (cfg.tile_h, cfg.tile_w))
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
        return self.engine.wavefront[0]

    def _check_bounds(self) -> None:
        """Assert that every matmul and requantization stays in float64's exact integer range."""
        lim = iops.FLOAT64_EXACT_LIMIT
        for name, layer in self.ar.linears() + (self.cond.layers() if self.cond else []):
            if layer.requant_bound() >= lim:
                raise ValueError(f"{name}: accumulator/requantization bound >= 2^53; float64 would not be exact")
        if self.cond is not None:
            n_emb = self.num_stages - 1
            if n_emb * (int(self.cond.embed.abs().max()) + int(self.cond.stage_embed.abs().max())) >= lim:
                raise ValueError("cond embeddings too large")

    # -- coding API (vqcodec.coding.StagePrior)
    def _check_stage(self, stage: int) -> None:
        if not 1 <= stage <= self.num_stages:
            raise ValueError(f"stage must be in 1..{self.num_stages} (1-based), got {stage}")

    @staticmethod
    def _grid(shape: Sequence[int]) -> tuple[int, int]:
        shape = tuple(int(v) for v in shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be (h, w) with h, w >= 1, got {shape}")
        return shape

    def coding_groups(self, stage: int, shape: tuple[int, int]) -> list[np.ndarray]:
        """Order of coding for one stage of an (h, w) map: list of int64 arrays of flat positions r*w+c.

        All positions of a group are coded together (their frequencies depend only on earlier groups),
        in the array's order. Stage 1: wavefronts over tiles; stages >= 2: one group, raster order.
        """
        self._check_stage(stage)
        h, w = self._grid(shape)
        if stage == 1:
            return self.engine.groups((h, w))
        return [np.arange(h * w, dtype=np.int64)]

    def freqs_from_logits(self, logits: torch.Tensor) -> np.ndarray:
        """Integer logits (n, K) (float64-held, overwritten) -> frequencies (n, K) int64 numpy
        (every entry >= 1, row sums <= 2^24)."""
        return self.exp(logits)

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

    def _earlier(self, earlier, stage: int) -> torch.Tensor:
        """Validate the earlier stages (stage-1, H, W) of `stage` >= 2 (ABSENT allowed after stage 1)."""
        self._check_stage(stage)
        if stage < 2:
            raise ValueError("conditional_frequencies is for stages >= 2; stage 1 is autoregressive")
        x = torch.as_tensor(earlier, dtype=torch.int64)
        if x.dim() != 3 or x.shape[0] != stage - 1:
            raise ValueError(f"earlier must be ({stage - 1}, H, W), got {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < -1 or int(x.max()) >= self.codebook_size or int(x[0].min()) < 0):
            raise ValueError(f"earlier indices must lie in [0, {self.codebook_size}) or be -1 after stage 1")
        return x

    def logits(self, indices: torch.Tensor, stage: int) -> torch.Tensor:
        """Integer logits (H*W, K) int64 of `stage` (1-based) given indices (S' >= stage, H, W); raster order.
        Units: 2^-logit_frac nats. A whole-map pass (memory grows with the map: a reference for tests)."""
        x = self._indices(indices, stage)
        with self._threads():
            return torch.cat(list(self._logit_chunks(x, stage))).to(torch.int64)

    def frequency_rows(self, indices: torch.Tensor, stage: int) -> FrequencyRows:
        """Frequencies of `stage` at any positions, with memory bounded by the map's indices, not its
        (h*w, K) frequency table: what both coding sides use.

        indices: (S', H, W) int64: for stage 1 the stage-1 map (S' >= 1; each position's row depends only
        on positions before it in coding order), for stage s >= 2 the earlier stages (S' >= s - 1, the
        first s - 1 are used; ABSENT allowed after stage 1). The head's input is computed once, kept as
        int16 (H*W, C) (128 MB at 1M positions), the stage-1 net tile by tile (`IncrementalScheduler.
        tile_outputs`), the stage >= 2 net in bands of rows (`_IntCondNet.features`); rows(positions)
        runs the head and the exp table on just those positions. rows(p) equals frequencies(...)[p] bit
        for bit and is the same for any grouping of the positions.
        """
        if stage == 1:
            x = self._indices(torch.as_tensor(indices)[:1], 1)
            with self._threads():
                feats = self._stage1_features(x[0])
            head = self.ar.head
        else:
            x = self._earlier(torch.as_tensor(indices)[: stage - 1], stage)
            with self._threads():
                feats = self.cond.features(x, BAND_POSITIONS)
            head = self.cond.head

        def rows(positions: np.ndarray) -> np.ndarray:
            pos = np.asarray(positions, dtype=np.int64).reshape(-1)
            with self._threads():
                chunks = (head(torch.from_numpy(feats[pos[i:i + _ROW_CHUNK]]).to(torch.float64))
                          for i in range(0, pos.size, _ROW_CHUNK))
                return self.exp.of_chunks(chunks, pos.size)
        return rows

    def _stage1_features(self, x: torch.Tensor) -> np.ndarray:
        """Stage-1 map (H, W) int64 -> the PixelCNN's last horizontal stack clamped at 0, (H*W, C) int16."""
        h, w = x.shape
        out = np.empty((h, w, self.ar.c), dtype=np.int16)
        for (rows, cols), hl in self.engine.tile_outputs(x):
            out[rows, cols] = hl.clamp_(min=0).to(torch.int16).view(rows.stop - rows.start, cols.stop - cols.start, -1)
        return out.reshape(h * w, -1)

    def frequencies(self, indices: torch.Tensor, stage: int) -> np.ndarray:
        """Encoder side: frequencies (H*W, K) int64 of `stage` (1-based) at every position, raster order.

        indices: (S', H, W) int64 with S' >= stage (stage 1 uses the true stage-1 map as context, stages
        s >= 2 use stages 1..s-1). Equal bit for bit to what `decode_stage` produces group by group.
        The whole table (H*W, K): `frequency_rows` gives it for some positions at a time.
        """
        x = self._indices(indices, stage)
        return self.frequency_rows(x, stage)(np.arange(x.shape[1] * x.shape[2]))

    def conditional_frequencies(self, earlier: torch.Tensor, stage: int) -> np.ndarray:
        """Frequencies (H*W, K) int64 of `stage` >= 2 at every position (raster order) given the earlier
        stages (stage-1, H, W) int64, where ABSENT (-1) marks a position that stopped before that stage
        (vqcodec.coding.depth). Exact like `frequencies`; `frequency_rows` gives some positions at a time."""
        x = self._earlier(earlier, stage)
        return self.frequency_rows(x, stage)(np.arange(x.shape[1] * x.shape[2]))

    def decode_stage(self, stage: int, earlier: torch.Tensor | None, shape: tuple[int, int],
                     decode_fn: DecodeFn) -> torch.Tensor:
        """Decoder side: decode one (h, w) index map of `stage` (1-based).

        earlier: (stage-1, h, w) int64 maps of the earlier stages (for stage 1: empty, or None).
        decode_fn(freqs (n, K) int64 numpy) -> symbols (n,): stage 1: called once per group of
        `coding_groups`, in order; stages >= 2 (one group): called for consecutive runs of at most
        `DECODE_ROWS` positions in raster order. Returns (h, w) int64.
        """
        self._check_stage(stage)
        h, w = self._grid(shape)
        if stage == 1:
            def step(_: int, logits: torch.Tensor) -> torch.Tensor:
                return self._symbols(decode_fn(self.exp(logits)), logits.shape[0])
            # the per-group tensors are tiny: a second thread only adds synchronisation
            with self._threads(1):
                return self.engine.decode((h, w), step)
        earlier = torch.as_tensor(earlier, dtype=torch.int64)
        if tuple(earlier.shape) != (stage - 1, h, w):
            raise ValueError(f"earlier must have shape {(stage - 1, h, w)}, got {tuple(earlier.shape)}")
        rows = self.frequency_rows(earlier, stage)
        out = torch.empty(h * w, dtype=torch.int64)
        for i in range(0, h * w, DECODE_ROWS):
            pos = np.arange(i, min(h * w, i + DECODE_ROWS))
            out[i:i + pos.size] = self._symbols(decode_fn(rows(pos)), pos.size)
        return out.reshape(h, w)

    def _threads(self, n: int | None = None):
        return iops.torch_threads(n if n is not None else self.num_threads)

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

        maps = [self.decode_stage(1, None, (h, w), sampler)]
        for s in range(2, stage_count + 1):
            maps.append(self.decode_stage(s, torch.stack(maps), (h, w), sampler))
        return torch.stack(maps)

    def bits(self, indices: torch.Tensor) -> np.ndarray:
        """Ideal code length in bits per index of each stage of one map (S', H, W) under the integer
        frequencies (what an exact arithmetic coder would spend), over the positions present at that stage
        (ABSENT ones are skipped; STOP symbols are not counted). Returns (S',) float64."""
        x = torch.as_tensor(indices, dtype=torch.int64)
        out = []
        for s in range(1, x.shape[0] + 1):
            f = self.frequencies(x[:1], 1) if s == 1 else self.conditional_frequencies(x[: s - 1], s)
            sym = x[s - 1].reshape(-1).numpy()
            present = sym >= 0  # ABSENT positions (past a block's depth) are not coded
            p = f[np.flatnonzero(present), sym[present]] / f[present].sum(axis=1)
            out.append(float(-np.log2(p).mean()) if p.size else 0.0)
        return np.array(out)

    # -- construction
    @classmethod
    def from_float(cls, prior: ImagePrior, calibration_maps: Sequence[torch.Tensor],
                   weight_bits: int | None = None) -> "IntegerImagePrior":
        """Post-training quantization of a float `ImagePrior` (vqcodec.integer.quantize).

        calibration_maps: index maps (S, H, W) int64 run through the float model to find the range of
        each residual stream (max |value| x CALIBRATION_MARGIN becomes the int16 full scale).
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
        luts = GateLuts.build(fmt)

        # stage 1
        ar = prior.ar
        c = cfg.ar_channels
        s_h = stream_scale(max(stats.get("ar.h", 0.0), float(ar.embed.weight.detach().abs().max())), smax)
        embed = quantize_table(ar.embed.weight, s_h, smax)
        layers = []
        for l, layer in enumerate(ar.layers):
            in_s, in_m = (s_h, smax) if l == 0 else (act_scale, act_max)
            v = quantize_linear_layer(iops.conv_weight_to_matrix(layer.v_conv.weight.detach()).t(),
                                      layer.v_conv.bias, in_s, in_m, lut_scale, bits, mb)
            hw = iops.conv_weight_to_matrix(layer.h_conv.weight.detach()).t()
            n_h = hw.shape[1]
            w_h = torch.cat([hw, layer.v2h.weight.detach()[:, :, 0, 0]], dim=1)
            sc = torch.cat([_vec(s_h, n_h), _vec(lut_scale, 2 * c)])
            mx = torch.cat([_vec(smax, n_h, torch.int64), _vec(u_max, 2 * c, torch.int64)])
            hlin = quantize_linear_layer(w_h, layer.h_conv.bias, sc, mx, lut_scale, bits, mb)
            r = quantize_linear_layer(layer.res.weight.detach()[:, :, 0, 0], layer.res.bias, act_scale, act_max,
                                      s_h, bits, mb)
            layers.append({"v": v, "h": hlin, "r": r})
        head = quantize_linear_layer(ar.head.weight.detach()[:, :, 0, 0], ar.head.bias, s_h, smax, logit_scale,
                                     bits, mb)
        int_ar = _IntPixelCNN(cfg, fmt, luts, embed, layers, head)

        # stages >= 2
        int_cond = None
        if prior.cond is not None:
            cn = prior.cond
            s_x = stream_scale(max(stats.get("cond.x", 0.0), float(cn.embed.detach().abs().max()),
                                   float(cn.stage_embed.detach().abs().max())), smax)
            emb = quantize_table(cn.embed, s_x, smax)
            semb = quantize_table(cn.stage_embed, s_x, smax)
            blocks = []
            for i, blk in enumerate(cn.blocks):
                s_d = stream_scale(stats.get(f"cond.d{i}", 0.0), smax)
                dw = quantize_depthwise_conv2d(blk.dw.weight, blk.dw.bias, s_x, smax, s_d, bits, mb)
                pw1 = quantize_linear_layer(blk.pw1.weight.detach()[:, :, 0, 0], blk.pw1.bias, s_d, smax,
                                            lut_scale, bits, mb)
                pw2 = quantize_linear_layer(blk.pw2.weight.detach()[:, :, 0, 0], blk.pw2.bias, act_scale,
                                            act_max, s_x, bits, mb)
                blocks.append({"dw": dw, "pw1": pw1, "pw2": pw2})
            chead = quantize_linear_layer(cn.head.weight.detach()[:, :, 0, 0], cn.head.bias, s_x, smax,
                                          logit_scale, bits, mb)
            int_cond = _IntCondNet(cfg, fmt, luts, emb, semb, blocks, chead)
        exp_lut = iops.make_exp_lut(fmt["logit_frac"], fmt["exp_top_bits"])
        return cls(cfg, fmt, luts, exp_lut, int_ar, int_cond)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain integer tensors (int16/int32) including config ints ("config.*", "format.*") and the
        lookup tables; what `export_integer_prior` writes (vqcodec.integer.prior_file)."""
        t: dict[str, torch.Tensor] = {}
        t.update(int_scalars("config", self.cfg.to_dict()))
        t.update(int_scalars("format", self.fmt))
        t["lut.tanh"] = self.luts.tanh.to(torch.int16)
        t["lut.sigmoid"] = self.luts.sig.to(torch.int16)
        t["lut.exp"] = self.exp_lut.to(torch.int32)
        t["ar.embed"] = self.ar.embed.to(torch.int16)
        for name, lin in self.ar.linears():
            t.update(lin.tensors(name))
        if self.cond is not None:
            t["cond.embed"] = self.cond.embed.to(torch.int16)
            t["cond.stage_embed"] = self.cond.stage_embed.to(torch.int16)
            for name, layer in self.cond.layers():
                t.update(layer.tensors(name))
        check_stored_dtypes(t)
        return {k: v.contiguous() for k, v in t.items()}

    @classmethod
    def from_state_dict(cls, tensors: dict[str, torch.Tensor]) -> "IntegerImagePrior":
        """Inverse of `state_dict` (e.g. on safetensors.torch.load_file output)."""
        try:
            cfg = PriorConfig.from_dict(read_int_scalars(tensors, "config"))
            fmt = read_int_scalars(tensors, "format")
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"not an integer prior state dict: {e}") from e
        missing = set(FORMAT) - set(fmt)
        if missing:
            raise ValueError(f"integer prior weights lack format entries {sorted(missing)}")
        for key in ("lut.tanh", "lut.sigmoid", "lut.exp", "ar.embed"):
            if key not in tensors:
                raise KeyError(f"integer prior weights lack tensor {key!r}; not an IntegerImagePrior export")
        t = {k: v.to(torch.int64) for k, v in tensors.items()}
        luts = GateLuts(t["lut.tanh"], t["lut.sigmoid"], fmt)
        smax, u_max, act_max = fmt["stream_max"], luts.u_max, luts.act_max
        c = cfg.ar_channels
        p = cfg.ar_kernel // 2
        layers = []
        for l in range(cfg.ar_layers):
            n_v = (p + 1) * (cfg.ar_kernel if cfg.up_right(l) else p + 1) * c
            n_h = (p if l == 0 else p + 1) * c
            layers.append({
                "v": IntLinear.load(t, f"ar.{l}.v", _vec(smax if l == 0 else act_max, n_v, torch.int64)
                                    ).expect(2 * c, f"ar.{l}.v"),
                "h": IntLinear.load(t, f"ar.{l}.h", torch.cat([_vec(smax, n_h, torch.int64),
                                                                _vec(u_max, 2 * c, torch.int64)])
                                    ).expect(2 * c, f"ar.{l}.h"),
                "r": IntLinear.load(t, f"ar.{l}.r", _vec(act_max, c, torch.int64)).expect(c, f"ar.{l}.r"),
            })
        head = IntLinear.load(t, "ar.head", _vec(smax, c, torch.int64)).expect(cfg.codebook_size, "ar.head")
        if tuple(t["ar.embed"].shape) != (cfg.codebook_size, c):
            raise ValueError("ar.embed does not match the config")
        ar = _IntPixelCNN(cfg, fmt, luts, t["ar.embed"], layers, head)
        cond = None
        if "cond.embed" in t:
            cc = cfg.cond_channels
            blocks = []
            for i in range(cfg.cond_blocks):
                dw = IntDepthwiseConv2d.load(t, f"cond.{i}.dw", smax)
                if tuple(dw.w.shape) != (cfg.cond_kernel ** 2, cc):
                    raise ValueError(f"cond.{i}.dw.w does not match the config")
                blocks.append({
                    "dw": dw,
                    "pw1": IntLinear.load(t, f"cond.{i}.pw1", _vec(smax, cc, torch.int64)
                                          ).expect(2 * cc, f"cond.{i}.pw1"),
                    "pw2": IntLinear.load(t, f"cond.{i}.pw2", _vec(act_max, cc, torch.int64)
                                          ).expect(cc, f"cond.{i}.pw2"),
                })
            chead = IntLinear.load(t, "cond.head", _vec(smax, cc, torch.int64)).expect(cfg.codebook_size,
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
def export_integer_prior(model: ImagePrior, calibration_maps: Sequence[torch.Tensor], path: Path,
                         weight_bits: int | None = None) -> IntegerImagePrior:
    """Quantize `model` (post-training, scales from calibration_maps [(S, H, W)]) and write the integer
    prior to `path` (vqcodec.integer.prior_file, tag INTEGER_PRIOR_FORMAT). Returns the IntegerImagePrior
    as loaded back from the file's tensors, so what is returned is exactly what is shipped."""
    model.eval()
    ip = IntegerImagePrior.from_float(model, calibration_maps, weight_bits=weight_bits)
    sd = ip.state_dict()
    save_prior_file(path, sd, INTEGER_PRIOR_FORMAT)
    return IntegerImagePrior.from_state_dict(sd)


def load_integer_prior(path: Path) -> IntegerImagePrior:
    """Load an integer prior written by `export_integer_prior`; a file of another kind raises
    vqcodec.integer.prior_file.PriorFileError (a ValueError) naming what it found."""
    tensors = load_prior_file(path, INTEGER_PRIOR_FORMAT, "export one with export_integer_prior")
    return IntegerImagePrior.from_state_dict(tensors)
