"""Tiled runs of the image nets: memory bounded by the tile, not the image, and the whole-image result up to
float rounding.

A conv net's output at a position depends only on its inputs within the net's receptive field. So the
latent grid (h, w) is cut into tiles of at most `TILE` x `TILE` positions (near-equal sizes, aligned to
the latent grid, i.e. to multiples of 8 pixels); each tile is run with a halo of `halo` positions on every
side (clipped at the image border, where the net's own zero padding applies as in a whole-image run)
and only its own part of the output is kept. With the halo at least the receptive field's radius, a
kept output reads exactly the inputs a whole-image run reads; what differs is float rounding (another
blocking of the convolutions): latents agree to ~1e-6, decoded pixels to 1 LSB.

    halo:   `encoder_halo(model)` / `decoder_halo(model)`, from the nets' layers (`reach`), in latent
            positions (6 and 10 for the shipped model); tests check them against a measured receptive
            field (perturb one input, see which outputs move).
    used:   above `TILE_ABOVE_PIXELS` pixels; smaller images run whole, unchanged bit for bit, when
            decoding. The encoder's analysis (vqcodec.image.analysis) always runs in the fixed partition
            `analysis_tiles` (strips of at most `STRIP_ROWS` latent rows below the threshold, these tiles
            above it), each tile on one torch thread, so its latents do not depend on the thread count.

Measured (shipped model, one core): a 128-position tile (1024 pixels) with its halo peaks at about
0.3 GB in the decoder; the halo costs about 1.3x the decoder net's whole-image arithmetic and 1.2x the
encoder's, a small part of coding time (the prior dominates).

Shapes: rgb (H, W, 3) uint8; latent grids (h, w) = (ceil(H/8), ceil(W/8)); latents (D, rows, cols)
float32; indices (s, h, w) int64 with ABSENT (-1) entries allowed; pixels (H, W, 3) uint8.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from vqcodec.image.rate_control import block_weights

__all__ = ["decode_latents_tiled", "TILE", "TILE_ABOVE_PIXELS", "STRIP_ROWS", "Tile", "reach", "encoder_halo", "decoder_halo",
           "needs_tiles", "spans", "tiles", "analysis_tiles", "image_tile", "encode_tiles", "decode_tiled",
           "tiled_pixel_weights"]

TILE = 128
"""Largest tile side, in latent positions (1024 pixels)."""
TILE_ABOVE_PIXELS = 1 << 22
"""Images with more pixels than this (4.2 MP, 2048 x 2048) run through the nets in tiles."""
STRIP_ROWS = 48
"""Most latent rows of a strip of `analysis_tiles` below `TILE_ABOVE_PIXELS` (384 pixels): 768x512 and
512x768 images are cut in two strips, which two cores run at once."""

_POINTWISE = (nn.SiLU, nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Sequential, nn.ModuleList,
              nn.Embedding)  # the decoder's depth embedding: a lookup per latent position


@dataclass(frozen=True)
class Tile:
    """One tile of an (h, w) latent grid: it outputs rows r0:r1, columns c0:c1 (`out`) and reads its halo
    too (`inp`, clipped to the grid). Boxes are (r0, r1, c0, c1) in latent positions."""

    out: tuple[int, int, int, int]
    inp: tuple[int, int, int, int]

    @property
    def crop(self) -> tuple[slice, slice]:
        """Where `out` lies in an array over `inp` (rows, columns)."""
        r0, r1, c0, c1 = self.out
        return slice(r0 - self.inp[0], r1 - self.inp[0]), slice(c0 - self.inp[2], c1 - self.inp[2])


def reach(net: nn.Module, scale: float = 1.0) -> float:
    """Receptive-field radius of `net`, in units of its input, for nets whose modules are registered in the
    order they run (parallel paths are counted as if in series, so the bound stays safe).

    An output position at scale s (input units per position) reads inputs within s-sized blocks widened by
    the radius on each side. Conv2d (odd kernel k, dilation d, stride t) adds s * (k // 2) * d, then s *= t;
    PixelUnshuffle(r): s *= r; PixelShuffle(r) adds s * (1 - 1/r) (a fine position's block sits anywhere
    in its coarse one), then s /= r. Pointwise modules (and Embedding, looked up per position) add nothing;
    anything else raises ValueError, as this function cannot bound it.
    """
    radius, s = 0.0, float(scale)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            k = max(m.kernel_size)
            radius += s * (k // 2) * max(m.dilation)
            s *= max(m.stride)
        elif isinstance(m, nn.PixelUnshuffle):
            s *= m.downscale_factor
        elif isinstance(m, nn.PixelShuffle):
            radius += s * (1.0 - 1.0 / m.upscale_factor)
            s /= m.upscale_factor
        elif not m._modules and not isinstance(m, _POINTWISE):
            raise ValueError(f"cannot bound the receptive field of a {type(m).__name__} layer")
    return radius


def encoder_halo(model) -> int:
    """Halo of the encoder in latent positions: its radius in pixels (`reach`) over the factor (8), up."""
    return math.ceil(reach(model.encoder) / model.factor)


def decoder_halo(model) -> int:
    """Halo of the decoder in latent positions (`reach` of the decoder, whose input unit is a latent)."""
    return math.ceil(reach(model.decoder))


def needs_tiles(height: int, width: int) -> bool:
    """Whether an image of height x width pixels runs through the nets in tiles."""
    return height * width > TILE_ABOVE_PIXELS


def spans(n: int, tile: int | None = None) -> list[tuple[int, int]]:
    """0..n cut into ceil(n / tile) near-equal consecutive spans [a, b) (tile: default `TILE`)."""
    k = max(1, -(-n // (TILE if tile is None else tile)))
    cuts = [n * i // k for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def tiles(h: int, w: int, halo: int, tile: int | None = None) -> list[Tile]:
    """Tiles of an (h, w) latent grid, row-major, each at most tile x tile (default `TILE`), read with `halo` around."""
    out = []
    for r0, r1 in spans(h, tile):
        for c0, c1 in spans(w, tile):
            out.append(Tile((r0, r1, c0, c1), (max(0, r0 - halo), min(h, r1 + halo), max(0, c0 - halo),
                                               min(w, c1 + halo))))
    return out


def analysis_tiles(height: int, width: int, halo: int, factor: int = 8) -> list[Tile]:
    """The fixed partition the encoder's analysis runs in, a function of the image size (height x width
    pixels) only, over its (ceil(height/factor), ceil(width/factor)) latent grid: full-width strips of at
    most `STRIP_ROWS` rows (near-equal) when `needs_tiles` is false, else `tiles` of at most `TILE` x `TILE`;
    each read with `halo` latent positions around (clipped to the grid), row-major."""
    h, w = -(-height // factor), -(-width // factor)
    if not needs_tiles(height, width):
        return [Tile((r0, r1, 0, w), (max(0, r0 - halo), min(h, r1 + halo), 0, w)) for r0, r1 in spans(h, STRIP_ROWS)]
    return tiles(h, w, halo)


def image_tile(rgb: np.ndarray, box: tuple[int, int, int, int], factor: int = 8) -> torch.Tensor:
    """The pixels of latent box (r0, r1, c0, c1) of `rgb` (H, W, 3) uint8 -> (1, 3, factor*rows,
    factor*cols) float32 in [0, 1], edge-replicated past the bottom/right border as `pad_to_multiple` pads
    the whole image."""
    r0, r1, c0, c1 = box
    h, w = rgb.shape[:2]
    rows = np.minimum(np.arange(r0 * factor, r1 * factor), h - 1)
    cols = np.minimum(np.arange(c0 * factor, c1 * factor), w - 1)
    block = rgb[np.ix_(rows, cols)]  # (rows, cols, 3), a copy of just this tile
    return torch.from_numpy(block).permute(2, 0, 1)[None].float().div_(255.0)


@torch.no_grad()
def encode_tiles(model, rgb: np.ndarray, halo: int | None = None,
                 tile: int | None = None) -> Iterator[tuple[Tile, torch.Tensor]]:
    """Run the encoder over `rgb` (H, W, 3) uint8 tile by tile (the image padded to multiples of 8 as the
    codec pads it). Yields (tile, latents (D, rows, cols) float32 of tile.out). halo: default
    `encoder_halo(model)`."""
    f = model.factor
    h, w = -(-rgb.shape[0] // f), -(-rgb.shape[1] // f)
    halo = encoder_halo(model) if halo is None else halo
    for t in tiles(h, w, halo, tile):
        x = image_tile(rgb, t.inp, f)
        rows, cols = t.crop
        yield t, model.encoder(x)[0, :, rows, cols]


@torch.no_grad()
def decode_tiled(model, indices: torch.Tensor, height: int, width: int, halo: int | None = None,
                 tile: int | None = None) -> np.ndarray:
    """Indices (s, h, w) int64 (ABSENT adds nothing) -> (height, width, 3) uint8 pixels, tile by tile,
    as `ImageCodec.render` computes them whole (decoder net, clamp to [0, 1], x 255, round). halo: default
    `decoder_halo(model)`."""
    def box(r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        return model.decode_indices(indices[None, :, r0:r1, c0:c1])[0]

    return _render_tiles(model, box, indices.shape[1], indices.shape[2], height, width, halo, tile)


@torch.no_grad()
def decode_latents_tiled(model, latents: torch.Tensor, depth: torch.Tensor | None, height: int, width: int,
                         halo: int | None = None, tile: int | None = None) -> np.ndarray:
    """Latents (D, h, w) float32 (e.g. refined ones) and the decoder's depth input (h, w) int64 (None without
    one) -> (height, width, 3) uint8 pixels, tile by tile, as `decode_tiled`."""
    def box(r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        d = None if depth is None else depth[None, r0:r1, c0:c1]
        return model.decode_latents(latents[None, :, r0:r1, c0:c1], d)[0]

    return _render_tiles(model, box, latents.shape[1], latents.shape[2], height, width, halo, tile)


def _render_tiles(model, box: Callable[[int, int, int, int], torch.Tensor], h: int, w: int, height: int, width: int,
                  halo: int | None, tile: int | None) -> np.ndarray:
    """Pixels (height, width, 3) uint8 of an (h, w) latent grid from box(r0, r1, c0, c1) -> (3, 8(r1-r0), 8(c1-c0))
    RGB in [0, 1] of each tile's input box, keeping each tile's output part."""
    f = model.factor
    halo = decoder_halo(model) if halo is None else halo
    out = np.empty((height, width, 3), dtype=np.uint8)
    for t in tiles(h, w, halo, tile):
        x_hat = box(*t.inp)
        rows, cols = t.crop
        y0, x0 = t.out[0] * f, t.out[2] * f
        y1, x1 = min(t.out[1] * f, height), min(t.out[3] * f, width)
        px = x_hat[:, rows.start * f:rows.start * f + y1 - y0, cols.start * f:cols.start * f + x1 - x0]
        out[y0:y1, x0:x1] = (px.permute(1, 2, 0) * 255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


@torch.no_grad()
def tiled_pixel_weights(model, rgb: np.ndarray, paths: torch.Tensor, errors: torch.Tensor, h: int, w: int,
                        low: float = 0.1, high: float = 10.0, tile: int | None = None) -> torch.Tensor:
    """`vqcodec.image.rate_control.pixel_weights` with the depth-1 decode run tile by tile: per-position
    weights (N = h*w,) float32 from rgb (H, W, 3) uint8, paths (N, S, S) and errors (N, S) of `analyse`.
    The same formula (pixel error of each 8x8 block over its depth-1 latent error, normalised to mean 1,
    clipped to [low, high]); the pixels agree with a whole-image decode to float rounding."""
    f = model.factor
    shallow = paths[:, 0, :1].to(torch.int64).reshape(1, h, w)  # every position's best 1-stage path
    per_block = torch.empty((h, w))
    halo = decoder_halo(model)
    for t in tiles(h, w, halo, tile):
        r0, r1, c0, c1 = t.inp
        rec = model.decode_indices(shallow[None, :, r0:r1, c0:c1])[0]
        rows, cols = t.crop
        rec = rec[:, rows.start * f:rows.stop * f, cols.start * f:cols.stop * f]
        x = image_tile(rgb, t.out, f)[0]
        n_r, n_c = rows.stop - rows.start, cols.stop - cols.start
        per_block[t.out[0]:t.out[1], t.out[2]:t.out[3]] = ((rec - x) ** 2).sum(0).reshape(n_r, f, n_c, f).sum((1, 3))
    return block_weights(per_block.reshape(-1), errors[:, 0], low, high)
