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

Memory. Every cache has a row per position. The encoder's pass runs one tile at a time (`tile_outputs`:
tiles are independent grids), freeing each cache after its last reader. The decoder runs all tiles in
lockstep, but a cache value is read only within a few wavefronts of where it is written, so a decode plan
keeps for each line along the last dimension a window of T slots (position p in slot p_last mod T), with
T the smallest power of two for which no two positions sharing a slot are ever live at once (`_window`
checks this on the schedule itself; T = 8 or 16 for the image prior, whose 32-row tiles then need 32 x T
rows each instead of 32 x the width). The plan's own index arrays still grow with the grid (about 200
bytes per position).

Exactness: the scheduler only gathers, copies and orders rows; every arithmetic operation is a node's
`fn`, which must be exact integer arithmetic (`vqcodec.integer.layers`). A node's result at a position
then does not depend on how many other positions are computed in the same call, so the whole-grid
pass (`full_logits`) and group-by-group decoding (`decode`) give identical integers.
"""
from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
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


MAX_CACHED_PLAN = 1 << 17
"""Plans of grids with more positions than this are built for each call and not kept (a decode plan holds
about 200 bytes of indices per position)."""


@dataclass
class Plan:
    """Precomputed schedule for one grid shape (see `IncrementalScheduler.plan`): either a decode plan
    (`steps`, group by group) or a pass plan (`full`, node by node over the whole grid).

    Cache rows, full layout (pass plans, and decode plans without a window): tile b, local position p ->
    b * prod(padded) + flat index of (p + pad_lo) in the padded tile; rows outside a tile stay zero (the
    zero padding). Windowed layout (decode plans with `window` > 0): the positions of a line along the
    last dimension share `window` slots (last coordinate mod window), so the caches hold
    tiles x lines x window rows, plus one last row that is never written and stands for everything outside
    the tiles (`IncrementalScheduler._window`).
    """

    shape: tuple[int, ...]
    n_cache: int  # rows of every cache
    group_pos: torch.Tensor  # grid positions (flat raster index) of all groups, in decode order (n,) int64
    group_rows: torch.Tensor  # their cache rows (n,) int64
    group_bounds: np.ndarray  # group s is entries group_bounds[s]:group_bounds[s + 1] (n_groups + 1,)
    node_steps: list[tuple[int, torch.Tensor, list[tuple[torch.Tensor, int]], np.ndarray]]
    """Decode plans, per node: (node, rows of all its steps, [(flat gather indices, offsets per row)], step
    bounds (n_groups + 1,)). Each group's slices are taken when it runs (`step_ops`), so building a plan
    costs per node, not per group: a tiny file declaring a long grid is refused before it buys much."""
    full: list[tuple[int, torch.Tensor, list[torch.Tensor]]]  # whole-grid pass, node by node
    raster_cache: torch.Tensor  # cache row of every grid position in raster order (prod(shape),)
    window: int = 0  # slots per line of the windowed layout (0: the full layout)

    @property
    def n_groups(self) -> int:
        return len(self.group_bounds) - 1

    def group(self, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Group s: (grid positions, cache rows), int64 tensors."""
        a, z = int(self.group_bounds[s]), int(self.group_bounds[s + 1])
        return self.group_pos[a:z], self.group_rows[a:z]

    def step_ops(self, s: int) -> list[tuple[int, torch.Tensor, list[torch.Tensor]]]:
        """What runs before group s's logits: (node, cache rows it writes, gather indices per input)."""
        ops = []
        for i, rows, gathers, bounds in self.node_steps:
            a, z = int(bounds[s]), int(bounds[s + 1])
            if z > a:
                ops.append((i, rows[a:z], [t[a * k:z * k] for t, k in gathers]))
        return ops


@dataclass
class _Geometry:
    """Where the positions of a tiled grid live (`IncrementalScheduler._geometry`). Local positions are
    those of one tile (tile shape `ts`, raster order); every tile has the same local schedule."""

    shape: tuple[int, ...]
    ts: tuple[int, ...]  # tile shape
    lo: list[int]  # zero padding of a tile before / after it, per dimension (the reach of the offsets)
    hi: list[int]
    ps: tuple[int, ...]  # padded tile shape
    nt: int  # tiles
    order: np.ndarray  # group of each local position, shape ts
    n_groups: int
    coords: list[np.ndarray]  # local coordinates per dimension, (n_local,) each
    valid: np.ndarray  # (nt, n_local) bool: the local position exists in tile b (edge tiles are smaller)
    map_pos: np.ndarray  # (nt, n_local) flat grid position, -1 where not valid
    cache_row: np.ndarray  # (nt, n_local) full-layout cache row

    @property
    def inner(self) -> tuple[slice, ...]:
        return tuple(slice(l, l + t) for l, t in zip(self.lo, self.ts))

    def padded(self, a: np.ndarray, fill: int = 0) -> np.ndarray:
        out = np.full(self.ps, fill, dtype=a.dtype)
        out[self.inner] = a
        return out

    def shifted(self, a_pad: np.ndarray, o: Offset) -> np.ndarray:
        """The view of a padded array at every local position + o."""
        return a_pad[tuple(slice(l + d, l + d + t) for l, d, t in zip(self.lo, o, self.ts))]


class IncrementalScheduler:
    """Runs a `CausalGraph` over a tiled grid: whole-grid pass (encoder) or group by group (decoder).

    graph: the network. tile: tile size per dimension (<= 0: whole extent). Plans are cached per shape
    (small grids only: `MAX_CACHED_PLAN`).
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
        self._plans: dict[tuple, Plan] = {}
        self._orders: dict[tuple[int, ...], list[np.ndarray]] = {}

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

    def plan(self, shape: Sequence[int], decode: bool = True) -> Plan:
        """The decode plan (`decode`, windowed where that saves memory) or the pass plan of a grid shape."""
        key = (self._check_shape(shape), bool(decode))
        if key in self._plans:
            return self._plans[key]
        plan = self._build_plan(key[0], key[1])
        if math.prod(key[0]) <= MAX_CACHED_PLAN:
            if len(self._plans) > 8:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def groups(self, shape: Sequence[int]) -> list[np.ndarray]:
        """Coding order: int64 arrays of flat (raster) grid positions, one per group, in decode order."""
        key = self._check_shape(shape)
        if key not in self._orders:
            if len(self._orders) > 8:
                self._orders.clear()
            self._orders[key] = self._group_order(self._geometry(key))
        return [g.copy() for g in self._orders[key]]

    # -- plan building
    def _geometry(self, shape: tuple[int, ...]) -> _Geometry:
        nd = self.graph.ndim
        ts = self.tile_shape(shape)
        boxes = tile_grid(shape, self.tile)
        offs = self.graph.offsets()
        lo = [max([0] + [-o[i] for o in offs]) for i in range(nd)]
        hi = [max([0] + [o[i] for o in offs]) for i in range(nd)]
        ps = tuple(ts[i] + lo[i] + hi[i] for i in range(nd))
        nt, n_local = len(boxes), math.prod(ts)
        order = self.local_order(ts)
        # cache rows: tile b, local position p -> b * prod(ps) + ravel(p + lo) in the padded tile
        coords = [c.reshape(-1) for c in np.meshgrid(*[np.arange(n) for n in ts], indexing="ij")]
        local_row = np.ravel_multi_index(tuple(c + l for c, l in zip(coords, lo)), ps).astype(np.int64)
        valid = np.zeros((nt, n_local), dtype=bool)
        map_pos = np.full((nt, n_local), -1, dtype=np.int64)
        for b, (origin, size) in enumerate(boxes):
            vm = np.ones(n_local, dtype=bool)
            for c, s in zip(coords, size):
                vm &= c < s
            valid[b] = vm
            gpos = tuple(np.where(vm, c + o, 0) for c, o in zip(coords, origin))
            map_pos[b] = np.where(vm, np.ravel_multi_index(gpos, shape), -1)
        cache_row = np.arange(nt)[:, None] * math.prod(ps) + local_row[None, :]
        return _Geometry(shape, ts, lo, hi, ps, nt, order, int(order.max()) + 1, coords, valid, map_pos, cache_row)

    @staticmethod
    def _sched(geo: _Geometry, key_local: np.ndarray, sel_local: np.ndarray):
        """valid positions with sel, sorted by key (stable: tile-major, then raster) -> (keys, full-layout
        rows, order, selection)."""
        sel = geo.valid & sel_local.reshape(1, -1)
        keys = np.broadcast_to(key_local.reshape(1, -1), sel.shape)[sel]
        rows = geo.cache_row[sel]
        order = np.argsort(keys, kind="stable")
        return keys[order], rows[order], order, sel

    def _group_positions(self, geo: _Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(grid positions of all groups concatenated in decode order, their full-layout cache rows, group
        bounds (n_groups + 1,))."""
        gkeys, grows, order, sel = self._sched(geo, geo.order, np.ones(geo.ts, dtype=bool))
        gmap = geo.map_pos[sel][order]
        return gmap, grows, np.searchsorted(gkeys, np.arange(geo.n_groups + 1), side="left")

    def _group_order(self, geo: _Geometry) -> list[np.ndarray]:
        """Grid positions of each group, in decode order."""
        gmap, _, gb = self._group_positions(geo)
        return [gmap[gb[s]:gb[s + 1]].copy() for s in range(geo.n_groups)]

    def _readiness(self, geo: _Geometry) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per node, over the local positions: the step at which it is computed, and whether some logits
        need it."""
        g_ = self.graph
        zero = (0,) * g_.ndim
        # ready step of every cache at every local position (out-of-tile = zero padding = ready at 0)
        ready: dict[str, np.ndarray] = {g_.input: geo.padded(geo.order + 1)}
        node_ready = []
        for node in g_.nodes:
            r = np.zeros(geo.ts, dtype=np.int64)
            for src, os_ in node.inputs:
                for o in os_:
                    r = np.maximum(r, geo.shifted(ready[src], o))
            node_ready.append(r)
            for o in node.outputs:
                ready[o] = geo.padded(r)
        if (geo.shifted(ready[g_.output], zero) > geo.order).any():
            raise AssertionError("coding order violates causality of the network")
        # which node outputs are needed by some logits (backwards)
        need: dict[str, np.ndarray] = {k: np.zeros(geo.ps, dtype=bool) for k in ready}
        need[g_.output][geo.inner] = True
        node_need: list[np.ndarray] = [np.zeros(geo.ts, dtype=bool)] * len(g_.nodes)
        for i in range(len(g_.nodes) - 1, -1, -1):
            node = g_.nodes[i]
            nn_ = np.zeros(geo.ts, dtype=bool)
            for o in node.outputs:
                nn_ |= geo.shifted(need[o], zero)
            node_need[i] = nn_
            for src, os_ in node.inputs:
                for o in os_:
                    geo.shifted(need[src], o)[...] |= nn_
        return node_ready, node_need

    def _window(self, geo: _Geometry, node_ready: list[np.ndarray], node_need: list[np.ndarray]) -> int:
        """Slots per line for the windowed decode layout: the smallest power of two T < the tile's last extent
        such that positions of a line that share a slot (last coordinates equal mod T) never hold one cache
        at overlapping times; 0 if there is none (then the full layout is used).

        Times: 2 * step while the nodes of a step run, 2 * step + 1 after them (the head reads the output
        cache, the decoded symbol's embedding is written). A position of a cache holds from its write to its
        last read; two positions may share a slot if one's write comes strictly after the other's last read.
        Reads of positions outside a tile go to the never-written last row. Checked on the local schedule,
        which every tile follows (edge tiles hold a subset of its positions)."""
        g = self.graph
        n = geo.ts[-1]
        if n <= 2:
            return 0
        write = {name: np.full(geo.ts, -1, dtype=np.int64) for name in g.channels}
        last = {name: np.full(geo.ps, -1, dtype=np.int64) for name in g.channels}
        write[g.input] = 2 * geo.order + 1
        out_last = last[g.output][geo.inner]
        np.maximum(out_last, 2 * geo.order + 1, out=out_last)
        for i, node in enumerate(g.nodes):
            t = np.where(node_need[i], 2 * node_ready[i], -1)
            for name in node.outputs:
                write[name] = t
            for src, offs in node.inputs:
                for o in offs:
                    v = geo.shifted(last[src], o)
                    np.maximum(v, t, out=v)
        spans = {k: (write[k], np.maximum(last[k][geo.inner], write[k])) for k in g.channels}
        t_win = 2
        while t_win < n:
            if all(self._disjoint(w, l, t_win) for w, l in spans.values()):
                return t_win
            t_win *= 2
        return 0

    @staticmethod
    def _disjoint(write: np.ndarray, last: np.ndarray, t_win: int) -> bool:
        """Whether positions k * t_win apart along the last dimension (k >= 1) that are both written have
        disjoint [write, last] times."""
        # Positions k * t_win apart are those of one residue class mod t_win along the last dimension; the
        # written intervals of a class are pairwise disjoint iff, sorted by start, each starts after the
        # largest end before it. O(n log n), not O(n^2 / t_win): the plan of a long grid declared by a tiny
        # file must stay cheap.
        n = write.shape[-1]
        m = -(-n // t_win)
        pad = ((0, 0), (0, m * t_win - n))
        classes = [np.pad(a.reshape(-1, n), pad, constant_values=-1).reshape(-1, m, t_win).transpose(0, 2, 1)
                   .reshape(-1, m) for a in (write, last)]
        w, l = classes
        never = np.iinfo(np.int64).max
        start = np.where(w >= 0, w, never)
        end = np.where(w >= 0, np.maximum(l, w), -1)
        order = np.argsort(start, axis=1, kind="stable")
        s = np.take_along_axis(start, order, axis=1)
        e = np.maximum.accumulate(np.take_along_axis(end, order, axis=1), axis=1)
        return not bool(((s[:, 1:] <= e[:, :-1]) & (s[:, 1:] != never)).any())

    @staticmethod
    def _window_rows(geo: _Geometry, t_win: int) -> tuple[np.ndarray, int]:
        """Full-layout row -> windowed row (the last row for padding and positions outside edge tiles), and
        the number of windowed rows."""
        per_tile = math.prod(geo.ts[:-1]) * t_win
        outside = geo.nt * per_tile
        local = np.ravel_multi_index((*geo.coords[:-1], geo.coords[-1] % t_win), (*geo.ts[:-1], t_win))
        remap = np.full(geo.nt * math.prod(geo.ps), outside, dtype=np.int64)
        remap[geo.cache_row[geo.valid]] = (np.arange(geo.nt)[:, None] * per_tile + local[None, :])[geo.valid]
        return remap, outside + 1

    def _build_plan(self, shape: tuple[int, ...], decode: bool) -> Plan:
        g_ = self.graph
        geo = self._geometry(shape)
        node_ready, node_need = self._readiness(geo)
        strides = [math.prod(geo.ps[i + 1:]) for i in range(g_.ndim)]
        n_cache, t_win, remap = geo.nt * math.prod(geo.ps), 0, None
        if decode:
            t_win = self._window(geo, node_ready, node_need)
            if t_win:
                remap, n_cache = self._window_rows(geo, t_win)

        def rows_of(full_rows: np.ndarray, dtype=torch.int64) -> torch.Tensor:
            return torch.from_numpy(full_rows if remap is None else remap[full_rows]).to(dtype)

        node_steps: list = []
        full = []
        for i, node in enumerate(g_.nodes):
            keys, rows, _, _ = self._sched(geo, node_ready[i], node_need[i])
            if not rows.size:
                continue
            deltas = [np.array([sum(a * s for a, s in zip(o, strides)) for o in os_], dtype=np.int64)
                      for _, os_ in node.inputs]
            # flat gather indices, offset-major per row: rows a..z of a step are entries a*k..z*k (int32 for
            # memory: index_select takes them as they are)
            gath = [(rows_of((rows[:, None] + d[None, :]).reshape(-1), torch.int32), d.size) for d in deltas]
            rows_t = rows_of(rows)
            if not decode:
                full.append((i, rows_t, [t for t, _ in gath]))
                continue
            node_steps.append((i, rows_t, gath, np.searchsorted(keys, np.arange(geo.n_groups + 1), side="left")))
        gpos, grows, gb = self._group_positions(geo)
        raster = np.empty(math.prod(shape), dtype=np.int64)
        raster[geo.map_pos[geo.valid]] = geo.cache_row[geo.valid]
        log.debug("%s plan for grid %s: %d tiles, %d groups, window %d", "decode" if decode else "pass", shape,
                  geo.nt, geo.n_groups, t_win)
        return Plan(shape, n_cache, torch.from_numpy(gpos), rows_of(grows), gb, node_steps, full, rows_of(raster), t_win)

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

    def _pass(self, x: torch.Tensor) -> tuple[Plan, torch.Tensor]:
        """Whole-grid pass over symbols x: (plan, output cache). Caches no later node reads are freed as the
        pass goes, so the peak is a few layers' caches, not all of them."""
        plan = self.plan(tuple(x.shape), decode=False)
        g = self.graph
        last_use = {g.input: -1, g.output: len(g.nodes)}
        for i, node in enumerate(g.nodes):
            for src, _ in node.inputs:
                last_use[src] = max(last_use.get(src, -1), i)
        caches = self._new_caches(plan)
        caches[g.input].index_copy_(0, plan.raster_cache, g.embed.index_select(0, x.reshape(-1)))
        for op in plan.full:
            self._run(caches, [op])
            for name in [k for k in caches if last_use.get(k, len(g.nodes)) <= op[0]]:
                del caches[name]
        return plan, caches[g.output]

    def full_logits(self, x: torch.Tensor, chunk: int = 1024) -> Iterator[torch.Tensor]:
        """Encoder pass: symbols x (grid shape) int64 -> generator of integer logits (float64, (<= chunk, K))
        for the grid positions in raster order (chunks keep the (n, K) temporaries in cache). Memory grows
        with the grid; `tile_outputs` runs one tile at a time."""
        plan, out = self._pass(x)
        n = plan.raster_cache.numel()
        for i in range(0, n, chunk):
            yield self.graph.head(out.index_select(0, plan.raster_cache[i:i + chunk]))

    def tile_outputs(self, x: torch.Tensor) -> Iterator[tuple[tuple[slice, ...], torch.Tensor]]:
        """Encoder pass one tile at a time (tiles are independent grids, so the result is the whole-grid
        pass's): symbols x (grid shape) int64 -> for each tile of `tile_grid`, (its slices of the grid,
        output cache rows (n_tile, C_output) float64 in the tile's raster order). Memory: one tile's caches."""
        for origin, size in tile_grid(tuple(x.shape), self.tile):
            box = tuple(slice(o, o + s) for o, s in zip(origin, size))
            plan, out = self._pass(x[box])
            yield box, out.index_select(0, plan.raster_cache)

    def decode(self, shape: Sequence[int], step_fn: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Decoder pass. step_fn(group, logits (n, K) float64) -> symbols (n,) int64 tensor, called once
        per group in order. Returns the symbols, int64 of the grid shape. Memory: the caches of the
        windowed layout (`Plan`) where the plan has one, and the plan's indices."""
        plan = self.plan(shape)
        caches = self._new_caches(plan)
        out = torch.empty(math.prod(plan.shape), dtype=torch.int64)
        hl, e = caches[self.graph.output], caches[self.graph.input]
        embed, head = self.graph.embed, self.graph.head
        for s in range(plan.n_groups):
            self._run(caches, plan.step_ops(s))
            pos, rows = plan.group(s)
            sym = step_fn(s, head(hl.index_select(0, rows)))
            e.index_copy_(0, rows, embed.index_select(0, sym))
            out[pos] = sym
        return out.reshape(plan.shape)
