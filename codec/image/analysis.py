"""The image encoder's analysis, reproducible: the same candidates whatever the thread count or batch mode.

Where a float encoder loses reproducibility: a BLAS or conv library may split and order its sums by the
number of threads, so latents differ in their last bits (measured on the shipped model, 768x512 Kodak
image, torch 2.13 CPU: the 1x1 convolutions of the encoder differ by up to 1e-5 between 1 and 2 threads),
and near-ties in the code search then flip (4 of 6144 positions of kodim23, a 4-byte larger file). So:

    partition: the latent grid is cut into `tiling.analysis_tiles` (full-width strips of at most
               `tiling.STRIP_ROWS` rows; above `tiling.TILE_ABOVE_PIXELS` pixels, `tiling.TILE`-square
               tiles), each read with the encoder's halo, a function of the image size only;
    threads:   every tile runs on one torch thread, in a pool of as many workers as the caller's torch
               threads (a batch worker with one thread: one worker); a tile's latents depend on the tile
               alone, not on the pool;
    search:    the exact residual-VQ search (vqcodec.quantization.exact_search): integer distances on
               latents and codebooks snapped to a 2^-10 grid, ties broken by index, so its answer does not
               depend on threads or chunking: for an image in strips, one search over the whole grid
               (after the strips' latents are in), its chunks of rows on the pool's one-thread workers; in
               tiles, per tile (bounded memory);
    weights:   effort 3's pixel weights from decoder tiles run the same way (`tiling.decoder_halo`),
               normalised by an exactly rounded sum (`rate_control.block_weights`).

What stays machine dependent: the encoder net's float arithmetic on one thread (another CPU or library
version may round differently); everything after the latents is exact or elementwise IEEE arithmetic.

Shapes: rgb (H, W, 3) uint8; latent grid (h, w) = (ceil(H/8), ceil(W/8)); candidates as
`rate_control.BlockCandidates`: paths (h*w, S, S) int16, errors (h*w, S) float32 latent units.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from vqcodec.image.rate_control import BlockCandidates, Effort, block_weights
from vqcodec.image.tiling import Tile, analysis_tiles, decoder_halo, encoder_halo, image_tile, needs_tiles
from vqcodec.quantization.exact_search import UNIT, prefix_search_exact

__all__ = ["analyse_image", "map_one_thread_each"]

_T = TypeVar("_T")
_R = TypeVar("_R")


@contextmanager
def _one_thread_pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A thread pool whose threads run torch on one intra-op thread (OpenMP builds: per thread). Where
    torch's thread count is per process, the caller's count is restored afterwards."""
    caller = torch.get_num_threads()
    pool = ThreadPoolExecutor(max(1, workers), initializer=torch.set_num_threads, initargs=(1,))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if torch.get_num_threads() != caller:
            torch.set_num_threads(caller)


def map_one_thread_each(fn: Callable[[_T], _R], items: Sequence[_T], workers: int | None = None) -> Iterator[_R]:
    """fn(item) for each item, in order, each call on one torch thread under torch.no_grad(), `workers` calls
    at once (default: the caller's torch thread count). The results do not depend on `workers`. A generator:
    the pool lives while it is iterated, and each result can be stored and dropped as it comes."""
    def one(item: _T) -> _R:
        with torch.no_grad():
            return fn(item)

    n = torch.get_num_threads() if workers is None else workers
    with _one_thread_pool(min(max(1, n), max(1, len(items)))) as pool:
        yield from pool.map(one, items)


def _tile_latents(model, rgb: np.ndarray, tile: Tile) -> torch.Tensor:
    """Encoder net over the tile's input box -> the latents of its output positions (n, D) float32, row-major."""
    z = model.encoder(image_tile(rgb, tile.inp, model.factor))[0]  # (D, rows, cols) of tile.inp
    rows, cols = tile.crop
    return z[:, rows, cols].permute(1, 2, 0).reshape(-1, z.shape[0])


def _search(model, latents: torch.Tensor, beam: int, stages: int,
            pooled: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact search of latents (n, D) over the first `stages` stages -> (paths (n, S, S) int16, errors (n, S) int64
    grid units), S = stages; its chunks of rows in turn on the caller's threads, or (pooled) on one thread
    each, as many at once as the caller's torch threads (`map_one_thread_each`)."""
    codebooks = [vq.codebook for vq in model.quantizer.stages[:stages]]
    if pooled:
        paths, errors = prefix_search_exact(latents, codebooks, beam, map_chunks=map_one_thread_each,
                                            parts=torch.get_num_threads())
    else:
        paths, errors = prefix_search_exact(latents, codebooks, beam)
    return paths.to(torch.int16), errors


def _search_tile(model, rgb: np.ndarray, tile: Tile, beam: int, stages: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`_tile_latents`, then `_search` of the tile's output positions -> (paths, errors, latents (n, D))."""
    z = _tile_latents(model, rgb, tile)
    return (*_search(model, z, beam, stages), z)


def _shallow_block_errors(model, rgb: np.ndarray, shallow: torch.Tensor, tile: Tile) -> torch.Tensor:
    """Squared pixel error of the depth-1 decode (decoder net over the tile's input box of `shallow`,
    (1, 1, h, w) int64) summed over each 8x8 block of the tile's output -> (rows, cols) float32."""
    f = model.factor
    r0, r1, c0, c1 = tile.inp
    rec = model.decode_indices(shallow[:, :, r0:r1, c0:c1])[0]
    rows, cols = tile.crop
    rec = rec[:, rows.start * f:rows.stop * f, cols.start * f:cols.stop * f]
    x = image_tile(rgb, tile.out, f)[0]
    n_r, n_c = rows.stop - rows.start, cols.stop - cols.start
    return ((rec - x) ** 2).sum(0).reshape(n_r, f, n_c, f).sum((1, 3))


def analyse_image(model, rgb: np.ndarray, effort: Effort, keep_latents: bool = False,
                  stages: int | None = None) -> BlockCandidates:
    """(H, W, 3) uint8 -> the candidate paths of every latent position at every depth and their errors
    (`rate_control.BlockCandidates`), reproducibly (module docstring). model: the ImageVQVAE (eval mode);
    effort: its beam and whether to weigh errors by their effect on the pixels; keep_latents: also return the
    latents (h*w, D) float32 (what refinement layers code; 512 MB at 64 MP and 128 dimensions); stages: the first stages to search (default all:
    a codec whose prior has fewer stages codes only those)."""
    f, s = model.factor, stages or model.cfg.num_stages
    height, width = rgb.shape[:2]
    h, w = -(-height // f), -(-width // f)
    parts = analysis_tiles(height, width, encoder_halo(model), f)
    if needs_tiles(height, width):  # net and search per tile: memory bounded by the tile (and the kept latents)
        paths = torch.empty((h, w, s, s), dtype=torch.int16)
        grid_errors = torch.empty((h, w, s), dtype=torch.int64)
        latents = torch.empty((h, w, model.cfg.latent_dim)) if keep_latents else None
        with closing(map_one_thread_each(lambda t: _search_tile(model, rgb, t, effort.beam, s), parts)) as found:
            for t, (p, e, z) in zip(parts, found):
                r0, r1, c0, c1 = t.out
                paths[r0:r1, c0:c1] = p.view(r1 - r0, c1 - c0, s, s)
                grid_errors[r0:r1, c0:c1] = e.view(r1 - r0, c1 - c0, s)
                if latents is not None:
                    latents[r0:r1, c0:c1] = z.view(r1 - r0, c1 - c0, -1)
        paths, grid_errors = paths.view(h * w, s, s), grid_errors.view(h * w, s)
    else:  # strips through the net on one thread each, then one search, its chunks on one thread each
        latents = torch.empty((h, w, model.cfg.latent_dim))
        with closing(map_one_thread_each(lambda t: _tile_latents(model, rgb, t), parts)) as found:
            for t, z in zip(parts, found):
                r0, r1, c0, c1 = t.out
                latents[r0:r1, c0:c1] = z.view(r1 - r0, c1 - c0, -1)
        paths, grid_errors = _search(model, latents.view(h * w, -1), effort.beam, s, pooled=True)
    errors = (grid_errors.double() * UNIT).float()
    if effort.pixel_weights:
        shallow = paths[:, 0, :1].to(torch.int64).reshape(1, 1, h, w)  # every position's best 1-stage path
        dec_parts = analysis_tiles(height, width, decoder_halo(model), f)
        per_block = torch.empty((h, w))
        with closing(map_one_thread_each(lambda t: _shallow_block_errors(model, rgb, shallow, t), dec_parts)) as blocks:
            for t, b in zip(dec_parts, blocks):
                r0, r1, c0, c1 = t.out
                per_block[r0:r1, c0:c1] = b
        errors = errors * block_weights(per_block.reshape(-1), errors[:, 0])[:, None]
    kept = latents.view(h * w, -1) if keep_latents else None
    return BlockCandidates(paths, errors, h, w, kept)
