"""Coding with memory bounded by the image's indices, not its (h*w, K) frequency tables: the prior's
`frequency_rows` (stage 1 tile by tile, stages >= 2 in bands of rows), the scheduler's windowed decode
caches and per-tile passes, and the depth coder's chunks. Everything must equal the whole-map computation
bit for bit, and the streams must not change with the chunk sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vqcodec.coding import depth
from vqcodec.coding.depth import ABSENT, decode_depth_stages, encode_depth_stages
from vqcodec.image import prior_integer
from vqcodec.image.prior import ImagePrior, PriorConfig
from vqcodec.image.prior_integer import IntegerImagePrior, load_integer_prior
from vqcodec.weights.io import WEIGHTS_DIR

K = 64


def _prior(**kw) -> IntegerImagePrior:
    cfg = PriorConfig(**{**dict(num_stages=3, codebook_size=K, ar_channels=12, ar_layers=3, cond_channels=12,
                                cond_blocks=2, tile_h=6, tile_w=0), **kw})
    model = ImagePrior(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.35)
    maps = [torch.randint(0, K, (3, 13, 17), generator=g) for _ in range(2)]
    return IntegerImagePrior.from_float(model.eval(), maps)


def _maps(shape, seed=0, stages=3) -> torch.Tensor:
    """Random codes (stages, h, w) with ABSENT past random depths."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, K, (stages, *shape), generator=g)
    depths = torch.randint(1, stages + 1, shape, generator=g)
    for s in range(1, stages):
        x[s][depths <= s] = ABSENT
    return x


def _reference(ip: IntegerImagePrior, x: torch.Tensor, stage: int) -> np.ndarray:
    """Frequencies from one whole-map pass of the nets (memory grows with the map)."""
    if stage == 1:
        chunks = ip.engine.full_logits(x[0])
    else:
        chunks = ip.cond.logits(x[: stage - 1])
    return ip.exp.of_chunks(chunks, x.shape[1] * x.shape[2])


@pytest.mark.parametrize("tiles", [(6, 0), (4, 5), (0, 0)])
def test_frequency_rows_equal_the_whole_map_pass(tiles, monkeypatch):
    ip = _prior(tile_h=tiles[0], tile_w=tiles[1])
    monkeypatch.setattr(prior_integer, "BAND_POSITIONS", 2 * 19)  # bands of 2 rows: halo 2 crosses several
    x = _maps((23, 19), seed=sum(tiles))
    x[0] = x[0].clamp(min=0)
    perm = np.random.default_rng(0).permutation(23 * 19)
    for stage in (1, 2, 3):
        ref = _reference(ip, x, stage)
        rows = ip.frequency_rows(x, stage)
        assert np.array_equal(rows(np.arange(23 * 19)), ref)
        got = np.concatenate([rows(part) for part in np.array_split(perm, 7)])  # any positions, any grouping
        assert np.array_equal(got, ref[perm])
        whole = ip.frequencies(x[:1], 1) if stage == 1 else ip.conditional_frequencies(x[: stage - 1], stage)
        assert np.array_equal(whole, ref)


def test_tile_passes_equal_the_whole_grid_pass():
    ip = _prior(tile_h=4, tile_w=5)
    x = torch.randint(0, K, (11, 13), generator=torch.Generator().manual_seed(1))
    _, whole = ip.engine._pass(x)
    plan = ip.engine.plan(x.shape, decode=False)
    whole = whole.index_select(0, plan.raster_cache).view(11, 13, -1)
    seen = torch.zeros(11, 13, dtype=torch.bool)
    for (rows, cols), out in ip.engine.tile_outputs(x):
        assert torch.equal(out.view(rows.stop - rows.start, cols.stop - cols.start, -1), whole[rows, cols])
        seen[rows, cols] = True
    assert seen.all()


def _decode_recording(ip: IntegerImagePrior, x: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    h, w = x.shape[1:]
    groups = iter(ip.coding_groups(1, (h, w)))
    rec = np.full((h * w, ip.codebook_size), -1, dtype=np.int64)

    def fn(freqs):
        g = next(groups)
        rec[g] = freqs
        return x[0].reshape(-1)[torch.from_numpy(g)].numpy()
    return ip.decode_stage(1, None, (h, w), fn), rec


@pytest.mark.parametrize("tiles,up_right", [((6, 0), 2), ((4, 40), -1), ((0, 0), 1)])
def test_windowed_decode_caches_are_small_and_exact(tiles, up_right):
    """A wide map decodes with caches of a few slots per row (not the whole row), to the encoder's
    frequencies bit for bit."""
    ip = _prior(tile_h=tiles[0], tile_w=tiles[1], ar_up_right_layers=up_right)
    x = torch.randint(0, K, (1, 13, 70), generator=torch.Generator().manual_seed(2))
    plan = ip.engine.plan((13, 70))
    full_rows = ip.engine.plan((13, 70), decode=False).n_cache
    assert 0 < plan.window <= 16 and plan.n_cache < full_rows / 3
    out, rec = _decode_recording(ip, x)
    assert torch.equal(out, x[0])
    assert np.array_equal(rec, _reference(ip, x, 1))


def test_the_window_check_is_what_keeps_decoding_exact():
    """Half the slots the check asks for overwrite values that are still to be read: decoding goes wrong."""
    ip = _prior(tile_h=6, tile_w=0, ar_up_right_layers=2)
    eng = ip.engine
    geo = eng._geometry((13, 70))
    ready, need = eng._readiness(geo)
    t_win = eng._window(geo, ready, need)
    assert t_win > 2
    try:
        eng._plans.clear()
        eng._window = lambda *a: t_win // 2
        x = torch.randint(0, K, (1, 13, 70), generator=torch.Generator().manual_seed(3))
        _, rec = _decode_recording(ip, x)
        assert not np.array_equal(rec, _reference(ip, x, 1))
    finally:
        del eng._window
        eng._plans.clear()


@pytest.fixture(scope="module")
def shipped_prior():
    return load_integer_prior(WEIGHTS_DIR / "image_prior.safetensors")


def test_shipped_prior_decode_caches_do_not_grow_with_the_width(shipped_prior):
    """Stage-1 decoding of an 8000-pixel-wide image keeps a few columns of each 32-row tile, not the grid."""
    eng = shipped_prior.engine
    geo = eng._geometry((64, 1000))
    t_win = eng._window(geo, *eng._readiness(geo))
    assert 0 < t_win <= 16
    _, n_cache = eng._window_rows(geo, t_win)
    assert n_cache == 2 * 32 * t_win + 1


def _streams_with_chunks(prior, x, rows: int, band: int, decode_rows: int, monkeypatch) -> list[bytes]:
    monkeypatch.setattr(depth, "CODING_ROWS", rows)
    monkeypatch.setattr(prior_integer, "BAND_POSITIONS", band)
    monkeypatch.setattr(prior_integer, "DECODE_ROWS", decode_rows)
    out = []
    for allow_raw in (True, False):
        streams = encode_depth_stages(prior, x, allow_raw=allow_raw)
        assert torch.equal(decode_depth_stages(prior, streams, x.shape[1:]), x)
        out += streams
    return out


def _random_depth_map(prior, shape: tuple[int, int], seed: int) -> torch.Tensor:
    """Random codes (S, h, w) with a random depth per position (ABSENT past it)."""
    g = torch.Generator().manual_seed(seed)
    k, s = prior.codebook_size, prior.num_stages
    x = torch.randint(0, k, (s, *shape), generator=g)
    depths = torch.randint(1, s + 1, shape, generator=g)
    for t in range(1, s):
        x[t][depths <= t] = ABSENT
    return x


@pytest.mark.parametrize("which", ["tiny", "shipped"])
def test_streams_do_not_depend_on_chunk_sizes(which, tiny_weights, shipped_prior, monkeypatch):
    prior = shipped_prior if which == "shipped" else load_integer_prior(tiny_weights / "image_prior.safetensors")
    k, shape = prior.codebook_size, (37, 45)
    x = _random_depth_map(prior, shape, seed=5)
    smooth = x.clone()  # a map the prior codes well, so prior mode wins, next to the random (raw) one
    smooth[0] = (torch.arange(shape[1]) // 9 % k).expand(shape)
    for m in (x, smooth):
        ref = _streams_with_chunks(prior, m, 1 << 13, 1 << 15, 1 << 14, monkeypatch)
        assert _streams_with_chunks(prior, m, 7, 45 * 3, 11, monkeypatch) == ref


def test_threads_and_prefetch_do_not_change_streams(tiny_weights, monkeypatch):
    """Small chunks, so that every stage makes many calls: one thread, one worker with the next chunk's rows
    prefetched on a second thread (what maps above PARALLEL_MAX_POSITIONS get), and several stage workers
    all write the same streams, which decode with and without prefetched rows."""
    prior = load_integer_prior(tiny_weights / "image_prior.safetensors")
    s, shape = prior.num_stages, (23, 31)
    x = _random_depth_map(prior, shape, seed=8)
    monkeypatch.setattr(depth, "CODING_ROWS", 7)
    prefetching = []
    real = depth._prefetched

    def spy(fn, items, prefetch):
        prefetching.append(prefetch and len(items) > 1)
        return real(fn, items, prefetch)

    monkeypatch.setattr(depth, "_prefetched", spy)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = encode_depth_stages(prior, x)  # one worker, no prefetch
        torch.set_num_threads(2)
        monkeypatch.setattr(depth, "PARALLEL_MAX_POSITIONS", 100)  # this map counts as large: prefetch
        prefetching.clear()
        prefetched = encode_depth_stages(prior, x)
        assert len(prefetching) == s and all(prefetching)
        several = encode_depth_stages(prior, x, workers=3)
        # decoding prefetches too, in prior mode: a map drawn from the prior, cut to random depths
        drawn = torch.where(x >= 0, prior.sample(s, *shape, seed=3), x)
        streams = encode_depth_stages(prior, drawn)
        prefetching.clear()
        assert torch.equal(decode_depth_stages(prior, streams, shape), drawn)
        assert len(prefetching) == s - 1 and all(prefetching)
        torch.set_num_threads(1)
        assert torch.equal(decode_depth_stages(prior, streams, shape), drawn)
        assert torch.equal(decode_depth_stages(prior, single, shape), x)
    finally:
        torch.set_num_threads(before)
    assert prefetched == single and several == single
