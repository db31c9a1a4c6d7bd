"""Per-position depth coding of 2-D residual-VQ index maps: STOP symbols and a raw mode per layer.

An encoder that spends bits unevenly stops each latent position after its own number of stages (its
*depth*, 1..L). The index maps then hold `ABSENT` (-1) past each position's depth:

    indices (L, h, w) int64, stage 1 present everywhere; indices[k, r, c] == ABSENT implies
    indices[k + 1, r, c] == ABSENT (a position that stopped stays stopped).

One range-coded stream per stage (= quality layer) still, so a file cut to its first N layers decodes
to min(depth, N) stages per position. Stream of stage k:

    mode      one symbol, 2-way, equal frequencies: 0 = indices under the prior, 1 = raw (uniform over
              the K codes). The encoder keeps the shorter stream, so no stage ever costs more than raw
              indices plus a bit (the prior can be miscalibrated on an image; raw bounds the damage). It
              range-codes the prior mode while it computes the exact coded bits of both modes
              (`entropy.coded_bits`), then raw mode only if it can win (`MODE_CHOICE_MARGIN_BITS`).
    stage 1   all h*w positions, in the prior's coding groups (raw: raster order).
    stage k>1 two passes over the positions present at stage k-1 (checkerboard, He et al. 2021):
              pass A = (r + c) even, pass B = (r + c) odd, raster order within a pass. Each position
              codes one symbol of K + 1: its stage-k index, or STOP (= K) when its depth is k - 1.
              The STOP probability depends on a context c:
                pass A: c = number of 4-neighbours absent at stage k-1            (0..4)
                pass B: c = 5 + number of 4-neighbours absent at stage k, known   (5..9)
                        after pass A (every 4-neighbour of an odd position is even)
              Before each pass's symbols, for every context that occurs among the pass's positions
              (ascending), one 16-way uniform symbol: the level l of P(STOP) = STOP_FREQ[l] / 2^16,
              chosen by the encoder from the pass's actual counts (forward adaptation: 4 bits per
              context used). A position's row is [code frequencies scaled to 2^24 - stop - K, stop]
              (`_stop_rows`), exact integers (a float64 division shown exact there), so both sides
              build the same rows.

Exactness: every frequency here is an integer computed by integer numpy operations from integers the
decoder already has (the prior's integer frequencies, the levels, the absent maps).

Memory: frequency rows are made for at most `CODING_ROWS` positions at a time (the prior's
`frequency_rows` gives them for any positions), whatever the map's size; with a prefetch thread, one
more call's rows are in flight. The symbols reach the range coder in the order above, only cut into
more calls, which does not change the stream.

Threads (`encode_depth_stages`): given the index maps, each stage's stream depends on nothing else, so
the encoder codes stages on several threads at once; on large maps, and when decoding, a second thread
computes the next call's rows instead. Neither changes a byte.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from typing import Callable, Iterator, NamedTuple, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np
import torch

from vqcodec.bitstream import IndexDecoder, IndexEncoder, VQFormatError
from vqcodec.bitstream.entropy import MAX_ROW_SUM, coded_bits, coded_bits_of_rows, max_symbols
from vqcodec.integer.ops import torch_threads

from .stages import Progress, StagePrior, check_stream_lengths, min_bits_per_index

__all__ = ["ABSENT", "STOP_FREQ", "DepthStagePrior", "encode_depth_stages", "decode_depth_stages", "depths_of",
           "check_depth_indices", "stream_mode"]

ABSENT = -1
"""Index value of a stage a position does not have (it stopped earlier)."""

STOP_FREQ = (720, 1300, 2331, 4127, 7150, 11955, 18943, 27889, 37647, 46593, 53581, 58386, 61409, 63205,
             64236, 64816)
"""P(STOP) levels out of 2^16: round(2^16 * sigmoid(-4.5 + 0.6 l)), l = 0..15 (fixed constants of the
format, written out so no floating-point function is involved)."""

CODING_ROWS = 1 << 13
"""Most positions whose frequency rows (n, K + 1) exist at once in the coders (about 34 MB for K = 512)."""

PARALLEL_MAX_POSITIONS = 1 << 16
"""Maps of at most this many positions (a 4.2 MP image, where the nets stop running whole) code their
stages on several threads by default (`encode_depth_stages`); larger maps on one. Measured at 8000x8000
(1M positions): two workers raised the encoder's peak RSS from 1.91 to 2.46 GiB (each stage in flight holds
its (h*w, C) features, and each thread's allocations stay in its own malloc arena)."""

_LEVEL_SHIFT = 8  # STOP_FREQ (out of 2^16) -> frequency out of 2^24
_CONTEXTS_PER_PASS = 5
_MODE_FREQS = np.ones((1, 2), dtype=np.int64)
_LEVEL_FREQS = np.ones((1, len(STOP_FREQ)), dtype=np.int64)
MODE_PRIOR, MODE_RAW = 0, 1


@runtime_checkable
class DepthStagePrior(StagePrior, Protocol):
    """A `StagePrior` over (h, w) maps whose stages >= 2 accept ABSENT entries in the earlier stages."""

    def conditional_frequencies(self, earlier: torch.Tensor, stage: int) -> np.ndarray:
        """earlier (stage-1, h, w) int64 (ABSENT allowed) -> frequencies (h*w, K) int64 of `stage` >= 2
        at every position, raster order. Non-causal within the stage (one pass)."""
        ...

    def frequency_rows(self, indices: torch.Tensor, stage: int) -> Callable[[np.ndarray], np.ndarray]:
        """The rows of `frequencies` (stage 1, given the stage-1 map) or `conditional_frequencies` (stage
        >= 2, given at least the earlier stages) as rows(positions (n,) int64) -> (n, K) int64, for any
        positions at a time (the coders ask for at most `CODING_ROWS`)."""
        ...


def stream_mode(stream: bytes) -> int:
    """The coding mode a stage's stream starts with: MODE_PRIOR (0) or MODE_RAW (1)."""
    return int(IndexDecoder(stream, verify=False).decode(_MODE_FREQS)[0])


def depths_of(indices: torch.Tensor) -> torch.Tensor:
    """(L, h, w) int64 with ABSENT suffixes -> (h, w) int64 depth (number of present stages)."""
    return (indices >= 0).sum(0)


def check_depth_indices(indices: torch.Tensor, k: int) -> torch.Tensor:
    """Validate (L, h, w) int64 indices with ABSENT suffixes (codes in [0, k)); returns them as int64."""
    x = torch.as_tensor(indices, dtype=torch.int64)
    if x.dim() != 3 or min(x.shape) < 1:
        raise ValueError(f"indices must be (stages, h, w) with every size >= 1, got {tuple(x.shape)}")
    if int(x.max()) >= k or int(x.min()) < ABSENT:
        raise ValueError(f"indices must lie in [0, {k}) or be ABSENT (-1)")
    if bool((x[0] < 0).any()):
        raise ValueError("every position must have stage 1 (no ABSENT in stage 1)")
    present = x >= 0
    if bool((present[1:] & ~present[:-1]).any()):
        raise ValueError("a position that stopped (ABSENT) must stay stopped in later stages")
    return x


# ------------------------------------------------------------------------------------------- helpers
def _absent_neighbours(absent: np.ndarray) -> np.ndarray:
    """(h, w) bool -> (h, w) int64 count of 4-neighbours that are absent (outside the map: not absent)."""
    a = absent.astype(np.int64)
    out = np.zeros_like(a)
    out[1:] += a[:-1]
    out[:-1] += a[1:]
    out[:, 1:] += a[:, :-1]
    out[:, :-1] += a[:, 1:]
    return out


def _pass_positions(present_before: np.ndarray, parity: int) -> np.ndarray:
    """Flat raster positions with (r + c) % 2 == parity that are present at the previous stage."""
    h, w = present_before.shape
    r, c = np.indices((h, w))
    mask = present_before & (((r + c) & 1) == parity)
    return np.flatnonzero(mask.reshape(-1))


def _pass_contexts(pos: np.ndarray, before: np.ndarray, absent_after_a: np.ndarray, parity: int) -> np.ndarray:
    """STOP contexts of pass `parity` (0 = A, 1 = B) at its positions `pos` (`_pass_positions`): pass A
    counts the 4-neighbours absent at the previous stage (`before` is False there), pass B those absent at
    this stage after pass A (`absent_after_a`), offset by 5."""
    if parity == 0:
        return _absent_neighbours(~before).reshape(-1)[pos]
    return _CONTEXTS_PER_PASS + _absent_neighbours(absent_after_a).reshape(-1)[pos]


def _stop_rows(code_freqs: np.ndarray | None, stop_freq: np.ndarray, k: int) -> np.ndarray:
    """Rows over K + 1 symbols: code frequencies (n, K) int64 (row sums <= 2^24; None: raw mode, all 1)
    scaled to the budget the STOP frequency (n,) int64 (out of 2^24) leaves, each >= 1, then STOP:
    row[i] = max(code[i] * budget // sum(code), 1), budget = 2^24 - stop - K. Row sums <= 2^24.

    The floor division runs in float64 and is exact: code * budget < 2^48 is an exact product, and a
    quotient q = m + r/t (t = sum(code) <= 2^24, 0 < r < t) lies at least 1/t from m + 1 while its
    rounding error is below q * 2^-53 < 2^48 / t * 2^-53 < 1/t, so floor(fl(q)) = m.
    """
    n = stop_freq.shape[0]
    budget = torch.from_numpy((MAX_ROW_SUM - stop_freq - k).astype(np.float64))[:, None]
    # torch on contiguous (n, K) tensors, not numpy's strided out= views: the same IEEE-754 float64
    # operations (exact casts, correctly rounded products and quotients, floor), measured 1.7x faster
    if code_freqs is None:  # sum(code) = K, every code 1
        q = torch.floor(budget / k).clamp_(min=1.0).expand(n, k)
    else:
        code = torch.from_numpy(np.ascontiguousarray(code_freqs, dtype=np.int64))
        total = code.sum(dim=1, keepdim=True).to(torch.float64)
        q = code.to(torch.float64).mul_(budget).div_(total).floor_().clamp_(min=1.0)
    rows = np.empty((n, k + 1), dtype=np.int64)
    torch.from_numpy(rows)[:, :k].copy_(q)
    rows[:, k] = stop_freq
    return rows


def _best_level(stops: int, continues: int) -> int:
    """The STOP level with the fewest bits for these counts (encoder only; any choice decodes)."""
    best, best_bits = 0, math.inf
    for level, f in enumerate(STOP_FREQ):
        p = f / 65536.0
        bits = -stops * math.log2(p) - continues * math.log2(1.0 - p)
        if bits < best_bits:
            best, best_bits = level, bits
    return best


def _uniform(n: int, k: int) -> np.ndarray:
    return np.ones((n, k), dtype=np.int64)


def _chunks(n: int, size: int = CODING_ROWS) -> list[slice]:
    """0..n in consecutive slices of at most `size`."""
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


_T = TypeVar("_T")
_R = TypeVar("_R")


class _Work(NamedTuple):
    """How one stage's encoder spends memory and threads (neither changes its stream)."""

    rows_per_call: int  # positions whose frequency rows are asked for at once
    prefetch: bool  # compute the next call's rows on a second thread while this one is coded


def _prefetched(fn: Callable[[_T], _R], items: Sequence[_T], prefetch: bool) -> Iterator[_R]:
    """fn(item) for each item, in order. With prefetch, fn of the next item runs on a second thread (torch
    on one thread) while the caller uses the current result: one result more in memory."""
    if not prefetch or len(items) < 2:
        yield from map(fn, items)
        return
    with _one_torch_thread_pool(1) as pool:
        ahead = pool.submit(fn, items[0])
        for item in items[1:]:
            current = ahead.result()
            ahead = pool.submit(fn, item)
            yield current
        yield ahead.result()


@contextmanager
def _one_torch_thread_pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A thread pool whose threads run torch on one intra-op thread. Where torch's thread count is per
    process rather than per thread (builds without OpenMP), the caller's count is restored afterwards.
    Pending work is cancelled and running work waited for on the way out."""
    caller = torch.get_num_threads()
    pool = ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if torch.get_num_threads() != caller:
            torch.set_num_threads(caller)


def _coding_runs(groups: list[np.ndarray], size: int = CODING_ROWS) -> list[np.ndarray]:
    """Consecutive coding groups joined into runs of about `size` positions (same order)."""
    runs, run, run_size = [], [], 0
    for g in groups:
        run.append(g)
        run_size += g.size
        if run_size >= size:
            runs.append(np.concatenate(run))
            run, run_size = [], 0
    if run:
        runs.append(np.concatenate(run))
    return runs


# ------------------------------------------------------------------------------------------ encoding
MODE_CHOICE_MARGIN_BITS = 160.0
"""Modes whose exact coded bits (entropy.coded_bits) are within this of the best are all range-coded and
the shortest stream kept; the others cannot win (a stream holds its bits plus at most two words of seal,
so 160 bits = five words covers the rounding of both streams to words), and are not coded at all."""


def _modes_to_code(bits: dict[int, float]) -> list[int]:
    """Modes (in the order given: the first wins a tie) that could give the shortest stream."""
    best = min(bits.values())
    return [m for m, b in bits.items() if b <= best + MODE_CHOICE_MARGIN_BITS]


def _shortest(encode_mode, modes: list[int]) -> bytes:
    """Range-code each of `modes` with encode_mode(mode) -> bytes; the shortest (the first on a tie)."""
    return min((encode_mode(m) for m in modes), key=len)


def _encode_stage1(prior: DepthStagePrior, x: torch.Tensor, allow_raw: bool, work: _Work) -> bytes:
    h, w = x.shape[1:]
    symbols = x[0].reshape(-1).numpy()
    k = prior.codebook_size
    rows = prior.frequency_rows(x[:1], 1)
    coded = IndexEncoder()  # prior mode, range-coded while its bits are counted
    coded.encode(np.array([MODE_PRIOR]), _MODE_FREQS)
    prior_bits = 0.0
    runs = _coding_runs(prior.coding_groups(1, (h, w)), work.rows_per_call)
    with closing(_prefetched(rows, runs, work.prefetch)) as run_rows:
        for freqs, run in zip(run_rows, runs):
            prior_bits += coded_bits_of_rows(symbols[run], freqs)
            coded.encode(symbols[run], freqs)
    bits = {MODE_PRIOR: prior_bits}
    if allow_raw:
        ones = np.ones_like(symbols)
        bits[MODE_RAW] = coded_bits(symbols, symbols, ones, np.full_like(symbols, k), k)

    def encode(mode: int) -> bytes:
        if mode == MODE_PRIOR:
            return coded.finish()
        enc = IndexEncoder()
        enc.encode(np.array([mode]), _MODE_FREQS)
        for part in _chunks(h * w, work.rows_per_call):
            enc.encode(symbols[part], _uniform(part.stop - part.start, k))
        return enc.finish()

    return _shortest(encode, _modes_to_code(bits))


def _encode_later(prior: DepthStagePrior, x: torch.Tensor, stage: int, allow_raw: bool, work: _Work) -> bytes:
    """Stream of `stage` >= 2 (module docstring): both passes' levels and STOP rows, under the prior or raw."""
    k = prior.codebook_size
    before = (x[stage - 2] >= 0).numpy()
    now = (x[stage - 1] >= 0).numpy()
    symbols_all = np.where(now, x[stage - 1].numpy(), k).reshape(-1)
    absent_after_a = ~before.copy()
    passes = []  # (symbols, level symbols, STOP frequencies, positions)
    for parity in (0, 1):
        pos = _pass_positions(before, parity)
        if pos.size == 0:
            continue
        ctx = _pass_contexts(pos, before, absent_after_a, parity)
        sym = symbols_all[pos]
        levels = {}
        for c in np.unique(ctx):
            stops = int((sym[ctx == c] == k).sum())
            levels[int(c)] = _best_level(stops, int((ctx == c).sum()) - stops)
        stop = np.array(STOP_FREQ, dtype=np.int64)[[levels[int(c)] for c in ctx]] << _LEVEL_SHIFT
        passes.append((sym, np.array([levels[c] for c in sorted(levels)]), stop, pos))
        if parity == 0:
            absent_after_a.reshape(-1)[pos] = sym == k
    rows = prior.frequency_rows(x[: stage - 1], stage) if passes else None
    coded = IndexEncoder()  # prior mode, range-coded while its bits are counted
    coded.encode(np.array([MODE_PRIOR]), _MODE_FREQS)
    prior_bits = 0.0
    calls = [(sym, levels, stop, pos[part], part) for sym, levels, stop, pos in passes
             for part in _chunks(pos.size, work.rows_per_call)]
    with closing(_prefetched(rows, [c[3] for c in calls], work.prefetch)) as code_rows:
        for freqs, (sym, levels, stop, _, part) in zip(code_rows, calls):
            if part.start == 0:  # a pass's levels come before its symbols
                coded.encode(levels, np.repeat(_LEVEL_FREQS, levels.size, axis=0))
            stop_rows = _stop_rows(freqs, stop[part], k)
            prior_bits += coded_bits_of_rows(sym[part], stop_rows)
            coded.encode(sym[part], stop_rows)
    bits = {MODE_PRIOR: prior_bits}
    if allow_raw:
        bits[MODE_RAW] = sum(_raw_bits(sym, stop, k) for sym, _, stop, _ in passes)

    def encode(mode: int) -> bytes:
        if mode == MODE_PRIOR:
            return coded.finish()
        enc = IndexEncoder()
        enc.encode(np.array([mode]), _MODE_FREQS)
        for sym, levels, stop, _ in passes:
            enc.encode(levels, np.repeat(_LEVEL_FREQS, levels.size, axis=0))
            for part in _chunks(sym.size, work.rows_per_call):
                enc.encode(sym[part], _stop_rows(None, stop[part], k))
        return enc.finish()

    return _shortest(encode, _modes_to_code(bits))


def _raw_bits(sym: np.ndarray, stop: np.ndarray, k: int) -> float:
    """coded_bits of (n,) symbols in 0..K (K = STOP) under raw-mode rows `_stop_rows(None, stop, k)`."""
    v = np.maximum((MAX_ROW_SUM - stop - k) // k, 1)
    is_stop = sym == k
    return coded_bits(sym, sym * v, np.where(is_stop, stop, v), k * v + stop, k + 1)


def encode_depth_stages(prior: DepthStagePrior, indices: torch.Tensor, progress: Progress | None = None,
                        *, allow_raw: bool = True, first_stream: bytes | None = None,
                        workers: int | None = None) -> list[bytes]:
    """Range-code (L, h, w) int64 indices with ABSENT suffixes -> L streams (module docstring).

    Each stage is coded under the prior and, with allow_raw, also raw; the shorter stream is kept.
    first_stream: stage 1's stream from an earlier call with the same stage-1 map and allow_raw (stage 1
    does not depend on the depths, so an encoder trying several depth choices codes it once).
    workers: threads coding stages at once. Given the maps, each stage's stream depends on nothing
    else, so the streams are the same bytes for any value. None: torch's intra-op thread count of the
    caller (a batch worker set to 1 thread stays on one), and 1 for maps of more than
    `PARALLEL_MAX_POSITIONS` positions (memory). Each worker runs torch on one thread and asks for
    CODING_ROWS / workers frequency rows at a time, so the rows in memory stay within CODING_ROWS. On one
    worker with torch on >= 2 threads, a second thread computes the next chunk's frequency rows while a
    chunk is coded (memory: one chunk more). progress is called from the calling thread, stage by stage in
    order.
    """
    k = prior.codebook_size
    x = check_depth_indices(indices, k)
    if x.shape[0] > prior.num_stages:
        raise ValueError(f"{x.shape[0]} stages given, the prior codes at most {prior.num_stages}")
    stages = x.shape[0]

    if workers is None:
        workers = torch.get_num_threads() if x[0].numel() <= PARALLEL_MAX_POSITIONS else 1
    workers = max(1, min(int(workers), stages))
    # neither the chunking nor the prefetch changes a stream
    work = _Work(max(1, CODING_ROWS // workers), workers == 1 and torch.get_num_threads() >= 2)

    def stream(stage: int) -> bytes:
        # with prefetch there are two threads already: this one's torch ops (STOP rows) stay on one
        with torch_threads(1 if work.prefetch else None):
            if stage == 1:
                return first_stream if first_stream is not None else _encode_stage1(prior, x, allow_raw, work)
            return _encode_later(prior, x, stage, allow_raw, work)

    streams = []
    with ExitStack() as stack:
        if workers == 1:
            results: Iterator[bytes] = map(stream, range(1, stages + 1))
        else:
            pool = stack.enter_context(_one_torch_thread_pool(workers))
            # stage 1 (the longest job: its prior is autoregressive) is submitted first
            futures = [pool.submit(stream, stage) for stage in range(1, stages + 1)]
            results = (f.result() for f in futures)
        for stage, data in enumerate(results, start=1):
            streams.append(data)
            if progress:
                progress(stage, stages)
    return streams


# ------------------------------------------------------------------------------------------ decoding
def _min_bits_later(prior: DepthStagePrior) -> float:
    """A lower bound on the bits of one symbol of a stage >= 2: the likeliest symbol of a row is STOP
    (probability <= STOP_FREQ[-1] / 2^16) or a code, whose probability is at most its probability under
    the prior (`min_bits_per_index`) or 1/K raw; 2^-21 covers constriction's quantisation of the row."""
    stop_bits = -math.log2(min(1.0, STOP_FREQ[-1] / 65536.0 + 2.0**-21))
    return min(stop_bits, min_bits_per_index(prior))


def decode_depth_stages(prior: DepthStagePrior, streams: Sequence[bytes], shape: Sequence[int],
                        progress: Progress | None = None) -> torch.Tensor:
    """Decode len(streams) stages of an (h, w) grid -> (L, h, w) int64 with ABSENT past each depth.

    Damaged data raises VQFormatError; work before a rejection stays proportional to the streams' size
    (stage 1: `check_stream_lengths` before anything is allocated; later stages: the same bound with the
    cheapest symbol a STOP can be, checked against the positions still present).
    """
    h, w = (int(v) for v in shape)
    s, k = len(streams), prior.codebook_size
    if s > prior.num_stages:
        raise ValueError(f"{s} streams given, the prior codes at most {prior.num_stages} stages")
    if s == 0:
        return torch.empty((0, h, w), dtype=torch.int64)
    check_stream_lengths(prior, streams[:1], h * w)
    out = torch.full((s, h, w), ABSENT, dtype=torch.int64)
    # with torch on >= 2 threads, a second thread computes the next chunk's code rows while a chunk is
    # decoded, and this thread's torch ops (STOP rows) stay on one
    prefetch = torch.get_num_threads() >= 2
    with torch_threads(1 if prefetch else None):
        for stage in range(1, s + 1):
            _decode_stage(prior, streams, stage, out, prefetch)
            if progress:
                progress(stage, s)
    return out


def _decode_stage(prior: DepthStagePrior, streams: Sequence[bytes], stage: int, out: torch.Tensor,
                  prefetch: bool) -> None:
    """Decode stage `stage` (1-based) of `streams` into out[stage - 1] (decode_depth_stages)."""
    h, w = out.shape[1:]
    k = prior.codebook_size
    dec = IndexDecoder(streams[stage - 1])
    mode = int(dec.decode(_MODE_FREQS)[0])
    if stage == 1:
        if mode == MODE_RAW:
            plane = torch.from_numpy(np.concatenate(
                [dec.decode(_uniform(part.stop - part.start, k)) for part in _chunks(h * w)])).reshape(h, w)
        else:
            plane = prior.decode_stage(1, out[:0], (h, w), dec.decode)
        out[0] = plane
    else:
        before = (out[stage - 2] >= 0).numpy()
        n_present = int(before.sum())
        cap = max_symbols(len(streams[stage - 1]), _min_bits_later(prior))
        if n_present > cap:
            raise VQFormatError(
                f"stage {stage}'s stream is {len(streams[stage - 1])} bytes, too short for {n_present} "
                "positions: the file is truncated or corrupted")
        rows = prior.frequency_rows(out[: stage - 1], stage) if mode == MODE_PRIOR else None
        _decode_later(dec, out, stage, k, rows, before, prefetch)
    dec.check_finished()


def _decode_later(dec: IndexDecoder, out: torch.Tensor, stage: int, k: int,
                  rows: Callable[[np.ndarray], np.ndarray] | None, before: np.ndarray, prefetch: bool) -> None:
    """Decode stage `stage` >= 2 into out[stage - 1]: both passes, rows from the prior's `frequency_rows`
    (None: raw mode), CODING_ROWS positions at a time. The passes' positions depend only on `before`, so the
    code rows of every chunk are known up front (prefetched on a second thread with `prefetch`)."""
    plane = np.full(before.size, ABSENT, dtype=np.int64)
    absent_after_a = ~before.copy()
    positions = [_pass_positions(before, parity) for parity in (0, 1)]
    chunks = [pos[part] for pos in positions for part in _chunks(pos.size)]
    with closing(_prefetched(rows, chunks if rows is not None else [], prefetch)) as code_rows:
        for parity, pos in enumerate(positions):
            if pos.size == 0:
                continue
            ctx = _pass_contexts(pos, before, absent_after_a, parity)
            used = np.unique(ctx)
            levels = dec.decode(np.repeat(_LEVEL_FREQS, used.size, axis=0))
            level_of = np.zeros(2 * _CONTEXTS_PER_PASS, dtype=np.int64)
            level_of[used] = levels
            stop = np.array(STOP_FREQ, dtype=np.int64)[level_of[ctx]] << _LEVEL_SHIFT
            sym = np.concatenate([dec.decode(_stop_rows(None if rows is None else next(code_rows), stop[part], k))
                                  for part in _chunks(pos.size)])
            plane[pos] = np.where(sym == k, ABSENT, sym)
            if parity == 0:
                absent_after_a.reshape(-1)[pos] = sym == k
    out[stage - 1] = torch.from_numpy(plane.reshape(before.shape))
