"""Fitting the refinement model of an image model (`vqcodec train refinement`): static tables per layer.

The image codec's refinement layers (`vqcodec.image.refinement`) code each symbol under a frequency table chosen
by the layers before it, the row above and the block's activity (`vqcodec.image.refinement.grid_symbol_contexts`). This module fits those
tables on training crops: each crop's latents (the model's encoder), the reconstruction of its first
`base_stages` VQ stages (the exact search's greedy path, as the codec's effort 1; the default effort's beam
finds paths as good or better, so the residuals it leaves are a little smaller), the symbols of `layers`
refinement layers over it, and per layer `fit_tables` over all crops' (symbol, context) pairs.

Shapes: images (3, H, W) uint8 with H, W multiples of 8; latents (N, D) float32.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path

import torch

from vqcodec.coding.refinement import fit_tables
from vqcodec.image.data import list_images, load_rgb
from vqcodec.image.model import ImageVQVAE, load_image_model
from vqcodec.image.refinement import CONTEXT_COUNT, RefinementModel, grid_symbol_contexts, save_refinement_model
from vqcodec.quantization.exact_search import prefix_search_exact
from vqcodec.quantization.scalar_refinement import layer_alphabet, refine_symbols

__all__ = ["fit_refinement_model", "random_crops", "train_refinement"]

log = logging.getLogger(__name__)


@torch.no_grad()
def _crop_symbols(model: ImageVQVAE, image: torch.Tensor, base_stages: int, first_shift: int, layers: int,
                  max_first: int) -> torch.Tensor:
    """One crop (3, H, W) uint8 -> its refinement symbols (layers, H/8, W/8, D) int64 over `base_stages` stages."""
    z = model.encoder(image[None].float() / 255.0)[0]  # (D, h, w)
    d, h, w = z.shape
    flat = z.permute(1, 2, 0).reshape(-1, d).contiguous()
    codebooks = [vq.codebook for vq in model.quantizer.stages]
    paths, _ = prefix_search_exact(flat, codebooks[:base_stages], 1)
    indices = paths[:, base_stages - 1, :base_stages].to(torch.int64)  # (N, B): the greedy B-stage path
    base = model.quantizer.decode(indices)
    return refine_symbols(flat, base, first_shift, layers, max_first).reshape(layers, h, w, d)


MAX_FIRST = 7
"""Default largest |symbol| of layer 1: at step 0.5 over two stages of the 128-dim pilots, 97.8 % of held-out
symbols are 0 and all within +-5; decoding time grows with the alphabet (15 symbols: 0.23 s for a 768x512
image's first layer against 0.62 s with 63, one thread)."""


def fit_refinement_model(model: ImageVQVAE, images: list[torch.Tensor], base_stages: int, layers: int,
                         first_shift: int, max_first: int = MAX_FIRST, model_id: str = "") -> RefinementModel:
    """Tables of `layers` refinement layers (steps 2^-first_shift, halving) over `base_stages` VQ stages, fitted
    on the crops `images` (3, H, W) uint8 -> RefinementModel."""
    if not 1 <= base_stages <= model.cfg.num_stages:
        raise ValueError(f"base stages must be 1..{model.cfg.num_stages}, got {base_stages}")
    grids = [_crop_symbols(model, im, base_stages, first_shift, layers, max_first) for im in images]
    d = model.cfg.latent_dim
    tables = []
    for j in range(layers):
        lo, hi = layer_alphabet(j + 1, max_first)
        symbols = torch.cat([g[j].reshape(-1, d) for g in grids])
        contexts = torch.cat([grid_symbol_contexts(g, j).reshape(-1, d) for g in grids])
        tables.append(fit_tables(symbols, contexts, CONTEXT_COUNT, lo, hi))
        nonzero = float(symbols.ne(0).float().mean())
        log.info("refinement layer %d (step 2^-%d): %d symbols, %.1f %% non-zero", j + 1, first_shift + j,
                 symbols.numel(), 100 * nonzero)
    return RefinementModel(tuple(tables), base_stages, first_shift, max_first, model_id)


def random_crops(folder: str | Path, count: int, size: int, seed: int = 0,
                 exclude: set[Path] | frozenset = frozenset()) -> list[torch.Tensor]:
    """`count` random images of `folder` (not in `exclude`), a random size x size crop of each (smaller images:
    their largest square, a multiple of 8) -> list of (3, s, s) uint8."""
    rng = random.Random(seed)
    files = [f for f in list_images(folder) if f not in exclude]
    if not files:
        raise ValueError(f"no training images in {folder}")
    crops = []
    for f in rng.sample(files, min(count, len(files))):
        im = load_rgb(f)
        h, w = im.shape[-2:]
        s = min(size, h, w) // 8 * 8
        if s < 8:
            continue
        y, x = rng.randrange(h - s + 1), rng.randrange(w - s + 1)
        crops.append(im[:, y:y + s, x:x + s])
    return crops


def train_refinement(model_path: str | Path, data: str | Path, out: str | Path, base_stages: int, layers: int,
                     first_shift: int, crops: int = 60, crop_size: int = 256, seed: int = 0, model_id: str = "",
                     exclude: set[Path] | frozenset = frozenset(), scale: dict | None = None,
                     max_first: int = MAX_FIRST) -> RefinementModel:
    """Fit the refinement model of the image model at `model_path` on `crops` random crops of `data`'s images
    (`exclude`: files to keep out, e.g. a held-out split) and write it to `out` (safetensors)."""
    model, vq_id = load_image_model(model_path)
    images = random_crops(data, crops, crop_size, seed, exclude)
    fitted = fit_refinement_model(model, images, base_stages, layers, first_shift, max_first,
                                  model_id=model_id or f"{vq_id}-refine-b{base_stages}")
    if scale:
        fitted = RefinementModel(fitted.tables, fitted.base_stages, fitted.first_shift, fitted.max_first,
                                 fitted.model_id, dict(scale))
    save_refinement_model(fitted, out)
    log.info("wrote %s (%d layers over %d stages, %d crops)", out, layers, base_stages, len(images))
    return fitted
