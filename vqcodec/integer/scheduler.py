"""Incremental decoding of a causal network over an N-d grid of symbols (N = 2 for images, 1 for sequences).

The network is described, not run, by a `CausalGraph`: named caches (one row of C channels per grid
position) and `Node`s, each of which reads caches at fixed relative offsets and writes caches at its own
position. This description is the receptive field: from it the scheduler derives, without running the
network, the coding order and, for every node and position, the first decoding step at which all the
node's inputs are known. Decoding then computes each node's activation at each position exactly once,
at that step (Ramachandran et al. 2017, "Fast generation for convolutional autoregressive models");
the encoder computes the same activations in one pass over the whole grid.

Coding order. The grid is cut into tiles (`tile`, per dimension; 0 = the whole extent), each tile an
independent grid with zero padding (zero = the cache value outside the grid). Inside a tile, position p
belongs to wavefront t(p) = sum_i a_i p_i, groups are the distinct wavefronts in increasing order, and
group g holds the positions of wavefront g of every tile (tile-major, then raster order inside the
tile; this order is part of the coded format). The coefficients a (`wavefront`) come from the receptive
field R of the output: every offset o in R must be lexicographically negative (causal), and a is the
smallest positive integer vector with t(o) < 0 for all o in R (a_{N-1} = 1, then outward: a_i =
max(1, max over o with first nonzero coordinate i of floor(sum_{j>i} a_j o_j / -o_i) + 1)).
* 2-D (PixelCNN over rows r, columns c): a = (slope, 1), t = c + slope * r, slope = 1 + the rightward
  reach of the context per row above.
* 1-D (a causal sequence model such as a WaveNet: causal dilated convolutions, gated units, residual and
  skip connections): a = (1,), so every position is its own group (one decoding step per time step,
  per tile). A WaveNet layer l with kernel k and dilation d is a node reading the previous residual
  stream at offsets ((-(k-1)d,), ..., (-d,), (0,)) (and its own residual / skip inputs at (0,)); the
  first layer reads the embedded input at strictly negative offsets (e.g. ((-k,), ..., (-1,))), which
  makes the whole net causal; the head reads the final skip sum. `tile=(L,)` restarts the context every L
  steps (independent segments, decoded in lockstep).

Exactness: the scheduler only gathers, copies and orders rows; every arithmetic operation is a node's
`fn`, which must be exact integer arithmetic (`vqcodec.integer.layers`). A node's result at a position
then does not depend on how many other positions are computed in the same call, so the whole-grid
pass (`full_logits`) and group-by-group decoding (`decode`) give identical integers.
"""
from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = ["Offset", "Node", "CausalGraph", "Plan", "IncrementalScheduler", "tile_grid"]

Offset = tuple[int, ...]
"""Relative grid position (one entry per dimension), e.g. (dr, dc) for images, (dt,) for sequences."""


@dataclass
class Node:
    """One computation of the network at a set of positions.

    inputs: (cache name, offsets); for n positions the cache rows at position + offset are gathered
    into (n, len(offsets) * C) float64, offset-major and channel-minor (the row order of
    `ops.conv_weight_to_matrix`), and passed to fn in the order of `inputs`.
    outputs: cache names written at the node's own positions, in the order `fn` returns them.
    fn(*gathered) -> tuple of (n, C_out) float64-held integer tensors.
    """

    name: str
    inputs: list[tuple[str, tuple[Offset, ...]]]
    outputs: list[str]
    fn: Callable[..., tuple[torch.Tensor, ...]]


@dataclass
class CausalGraph:
    """A causal network over an N-d grid, as the scheduler sees it.

    ndim: N. channels: width C of every cache (the input cache included). nodes: in an order where
    every node's input caches are written by earlier nodes (or are the input cache).
    embed: (K, C_input) float64-held ints, the input cache's row for each symbol (written at a position
    once its symbol is known). head(rows (n, C_output) float64) -> logits (n, K) float64-held ints.
    """

    ndim: int
    channels: dict[str, int]
    nodes: list[Node]
    embed: torch.Tensor
    head: Callable[[torch.Tensor], torch.Tensor]
    input: str = "E"
    output: str = ""

    def offsets(self) -> list[Offset]:
        return [o for n in self.nodes for _, os_ in n.inputs for o in os_]


def tile_grid(shape: Sequence[int], tile: Sequence[int]) -> list[tuple[Offset, Offset]]:
    """Tiles of a grid as (origin, size), row-major over the tile grid (the last dimension fastest).

    tile[i] <= 0 means no split in dimension i; edge tiles may be smaller. For 2-D this is
    `vqcodec.image.prior.tile_boxes` as ((r0, c0), (rows, cols)).
    """
    ts = [n if t <= 0 else min(t, n) for n, t in zip(shape, tile)]
    starts = [range(0, n, t) for n, t in zip(shape, ts)]
    return [(tuple(o), tuple(min(t, n - s) for s, t, n in zip(o, ts, shape))) for o in itertools.product(*starts)]


@dataclass
class Plan:
    """Precomputed schedule for one grid shape (see `IncrementalScheduler.plan`).

    Cache rows: tile b, local position p -> b * prod(padded) + flat index of (p + pad_lo) in the padded
    tile; rows outside a tile stay zero (the zero padding).
    """

    shape: tuple[int, ...]
    n_cache: int  # rows of every cache
    groups: list[np.ndarray]  # grid positions (flat, raster order index) of each group, in decode order
    group_cache: list[torch.Tensor]  # cache rows of each group (same order)
    steps: list[list[tuple[int, torch.Tensor, list[torch.Tensor]]]]  # per group: (node, rows, gathers)
    full: list[tuple[int, torch.Tensor, list[torch.Tensor]]]  # whole-grid pass, node by node
    raster_cache: torch.Tensor  # cache row of every grid position in raster order (prod(shape),)
    groups_t: list[torch.Tensor] = field(default_factory=list)  # `groups` as tensors

    def __post_init__(self) -> None:
        self.groups_t = [torch.from_numpy(g) for g in self.groups]


class IncrementalScheduler:
    """Runs a `CausalGraph` over a tiled grid: whole-grid pass (encoder) or group by group (decoder).

    graph: the network. tile: tile size per dimension (<= 0: whole extent). Plans are cached per shape.
    """

    def __init__(self, graph: CausalGraph, tile: Sequence[int]) -> None:
        if len(tile) != graph.ndim:
            raise ValueError(f"tile {tuple(tile)} has {len(tile)} entries for a {graph.ndim}-d graph")
        for o in graph.offsets():
            if len(o) != graph.ndim:
                raise ValueError(f"offset {o} does not have {graph.ndim} entries")
        self.graph = graph
        self.tile = tuple(int(t) for t in tile)
        self.wavefront = self._wavefront()
        self._plans: dict[tuple[int, ...], Plan] = {}

    # -- receptive field and order
    def receptive_field(self) -> set[Offset]:
        """Offsets of the input positions that the logits at the origin depend on."""
        g = self.graph
        rf: dict[str, set[Offset]] = {g.input: {(0,) * g.ndim}}
        for node in g.nodes:
            s: set[Offset] = set()
            for src, offs in node.inputs:
                s |= {tuple(a + b for a, b in zip(o, q)) for o in offs for q in rf[src]}
            for o in node.outputs:
                rf[o] = s
        return rf[g.output]

    def _wavefront(self) -> tuple[int, ...]:
        nd = self.graph.ndim
        rf = self.receptive_field()
        lead: list[tuple[int, Offset]] = []
        for o in rf:
            i = next((j for j, v in enumerate(o) if v != 0), None)
            if i is None or o[i] > 0:
                raise AssertionError(f"network is not causal: its output depends on offset {o}")
            lead.append((i, o))
        a = [1] * nd
        for i in range(nd - 2, -1, -1):
            for j, o in lead:
                if j == i:
                    s = sum(a[q] * o[q] for q in range(i + 1, nd))
                    a[i] = max(a[i], s // (-o[i]) + 1)
        return tuple(a)

    def tile_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(n if t <= 0 else min(t, n) for n, t in zip(shape, self.tile))

    def local_order(self, tile_shape: Sequence[int]) -> np.ndarray:
        """Group id of each position of a tile (array of shape tile_shape): dense rank of the wavefront."""
        coords = np.meshgrid(*[np.arange(n) for n in tile_shape], indexing="ij")
        t = sum(a * c for a, c in zip(self.wavefront, coords))
        _, g = np.unique(t, return_inverse=True)
        return g.reshape(tuple(tile_shape))

    def _check_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(n) for n in shape)
        if len(shape) != self.graph.ndim or min(shape) < 1:
            raise ValueError(f"grid shape must be {self.graph.ndim} positive sizes, got {shape}")
        return shape

    def plan(self, shape: Sequence[int]) -> Plan:
        key = self._check_shape(shape)
        if key not in self._plans:
            if len(self._plans) > 8:
                self._plans.clear()
            self._plans[key] = self._build_plan(key)
        return self._plans[key]

    def groups(self, shape: Sequence[int]) -> list[np.ndarray]:
        """Coding order: int64 arrays of flat (raster) grid positions, one per group, in decode order."""
        return [g.copy() for g in self.plan(shape).groups]

    def _build_plan(self, shape: tuple[int, ...]) -> Plan:
        g_ = self.graph
        nd = g_.ndim
        ts = self.tile_shape(shape)
        boxes = tile_grid(shape, self.tile)
        offs = g_.offsets()
        lo = [max([0] + [-o[i] for o in offs]) for i in range(nd)]
        hi = [max([0] + [o[i] for o in offs]) for i in range(nd)]
        ps = tuple(ts[i] + lo[i] + hi[i] for i in range(nd))
        inner = tuple(slice(lo[i], lo[i] + ts[i]) for i in range(nd))
        nt = len(boxes)
        n_local = math.prod(ts)
        g = self.local_order(ts)
        n_groups = int(g.max()) + 1

        def padded(a: np.ndarray, fill: int = 0) -> np.ndarray:
            out = np.full(ps, fill, dtype=a.dtype)
            out[inner] = a
            return out

        def shifted(a_pad: np.ndarray, o: Offset) -> np.ndarray:
            return a_pad[tuple(slice(lo[i] + o[i], lo[i] + o[i] + ts[i]) for i in range(nd))]

        zero = (0,) * nd
        # ready step of every cache at every local position (out-of-tile = zero padding = ready at 0)
        ready: dict[str, np.ndarray] = {g_.input: padded(g + 1)}
        node_ready = []
        for node in g_.nodes:
            r = np.zeros(ts, dtype=np.int64)
            for src, os_ in node.inputs:
                for o in os_:
                    r = np.maximum(r, shifted(ready[src], o))
            node_ready.append(r)
            for o in node.outputs:
                ready[o] = padded(r)
        if (shifted(ready[g_.output], zero) > g).any():
            raise AssertionError("coding order violates causality of the network")
        # which node outputs are needed by some logits (backwards)
        need: dict[str, np.ndarray] = {k: np.zeros(ps, dtype=bool) for k in ready}
        need[g_.output][inner] = True
        node_need: list[np.ndarray] = [np.zeros(ts, dtype=bool)] * len(g_.nodes)
        for i in range(len(g_.nodes) - 1, -1, -1):
            node = g_.nodes[i]
            nn_ = np.zeros(ts, dtype=bool)
            for o in node.outputs:
                nn_ |= shifted(need[o], zero)
            node_need[i] = nn_
            for src, os_ in node.inputs:
                for o in os_:
                    shifted(need[src], o)[...] |= nn_
        # cache rows: tile b, local position p -> b * prod(ps) + ravel(p + lo) in the padded tile
        coords = [c.reshape(-1) for c in np.meshgrid(*[np.arange(n) for n in ts], indexing="ij")]
        local_row = np.ravel_multi_index(tuple(c + l for c, l in zip(coords, lo)), ps).astype(np.int64)
        strides = [math.prod(ps[i + 1:]) for i in range(nd)]
        valid = np.zeros((nt, n_local), dtype=bool)
        map_pos = np.full((nt, n_local), -1, dtype=np.int64)
        for b, (origin, size) in enumerate(boxes):
            vm = np.ones(n_local, dtype=bool)
            for c, s in zip(coords, size):
                vm &= c < s
            valid[b] = vm
            gpos = tuple(np.where(vm, c + o, 0) for c, o in zip(coords, origin))
            map_pos[b] = np.where(vm, np.ravel_multi_index(gpos, shape), -1)
        cache_row = np.arange(nt)[:, None] * math.prod(ps) + local_row[None, :]  # (nt, n_local)

        def sched(key_local: np.ndarray, sel_local: np.ndarray):
            """valid rows with sel, sorted by key (stable: tile-major, then raster) -> (keys, rows)."""
            sel = valid & sel_local.reshape(1, -1)
            keys = np.broadcast_to(key_local.reshape(1, -1), sel.shape)[sel]
            rows = cache_row[sel]
            order = np.argsort(keys, kind="stable")
            return keys[order], rows[order], order, sel

        steps: list[list] = [[] for _ in range(n_groups)]
        full = []
        for i, node in enumerate(g_.nodes):
            keys, rows, _, _ = sched(node_ready[i], node_need[i])
            deltas = [np.array([sum(a * s for a, s in zip(o, strides)) for o in os_], dtype=np.int64)
                      for _, os_ in node.inputs]
            # flat gather indices, offset-major per row: rows a..z of a step are entries a*k..z*k
            gath = [(torch.from_numpy((rows[:, None] + d[None, :]).reshape(-1).astype(np.int64)), d.size)
                    for d in deltas]
            rows_t = torch.from_numpy(rows.astype(np.int64))
            if rows.size:
                full.append((i, rows_t, [t for t, _ in gath]))
            bounds = np.searchsorted(keys, np.arange(n_groups + 1), side="left")
            for s in range(n_groups):
                a, z = int(bounds[s]), int(bounds[s + 1])
                if z > a:
                    steps[s].append((i, rows_t[a:z], [t[a * k:z * k] for t, k in gath]))
        gkeys, grows, order, sel = sched(g, np.ones(ts, dtype=bool))
        gmap = map_pos[sel][order]
        gb = np.searchsorted(gkeys, np.arange(n_groups + 1), side="left")
        groups = [gmap[gb[s]:gb[s + 1]].copy() for s in range(n_groups)]
        group_cache = [torch.from_numpy(grows[gb[s]:gb[s + 1]].astype(np.int64)) for s in range(n_groups)]
        raster = np.empty(math.prod(shape), dtype=np.int64)
        raster[map_pos[valid]] = cache_row[valid]
        log.debug("plan for grid %s: %d tiles, %d groups", shape, nt, n_groups)
        return Plan(shape, nt * math.prod(ps), groups, group_cache, steps, full, torch.from_numpy(raster))

    # -- execution
    def _new_caches(self, plan: Plan) -> dict[str, torch.Tensor]:
        return {k: torch.zeros((plan.n_cache, c), dtype=torch.float64) for k, c in self.graph.channels.items()}

    def _run(self, caches: dict[str, torch.Tensor], ops) -> None:
        nodes = self.graph.nodes
        for i, rows, gathers in ops:
            node = nodes[i]
            n = rows.numel()
            if n == 0:  # nothing of this layer is computable in this step (tiny grids)
                continue
            args = [caches[src].index_select(0, gi).view(n, -1) for (src, _), gi in zip(node.inputs, gathers)]
            for name, val in zip(node.outputs, node.fn(*args)):
                caches[name].index_copy_(0, rows, val)

    def full_logits(self, x: torch.Tensor, chunk: int = 1024) -> Iterator[torch.Tensor]:
        """Encoder pass: symbols x (grid shape) int64 -> generator of integer logits (float64, (<= chunk, K))
        for the grid positions in raster order (chunks keep the (n, K) temporaries in cache)."""
        plan = self.plan(tuple(x.shape))
        caches = self._new_caches(plan)
        caches[self.graph.input].index_copy_(0, plan.raster_cache, self.graph.embed.index_select(0, x.reshape(-1)))
        self._run(caches, plan.full)
        out = caches[self.graph.output]
        n = plan.raster_cache.numel()
        for i in range(0, n, chunk):
            yield self.graph.head(out.index_select(0, plan.raster_cache[i:i + chunk]))

    def decode(self, shape: Sequence[int], step_fn: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Decoder pass. step_fn(group, logits (n, K) float64) -> symbols (n,) int64 tensor, called once
        per group in order. Returns the symbols, int64 of the grid shape."""
        plan = self.plan(shape)
        caches = self._new_caches(plan)
        out = torch.empty(plan.raster_cache.numel(), dtype=torch.int64)
        hl, e = caches[self.graph.output], caches[self.graph.input]
        embed, head = self.graph.embed, self.graph.head
        for s, ops in enumerate(plan.steps):
            self._run(caches, ops)
            rows = plan.group_cache[s]
            sym = step_fn(s, head(hl.index_select(0, rows)))
            e.index_copy_(0, rows, embed.index_select(0, sym))
            out[plan.groups_t[s]] = sym
        return out.reshape(plan.shape)
