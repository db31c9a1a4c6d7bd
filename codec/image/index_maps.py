"""Index maps of a folder of images under a trained (frozen) image model: the prior's training data."""
from __future__ import annotations

import logging

import torch
from tqdm import tqdm

from vqcodec.coding.depth import ABSENT
from vqcodec.image.analysis import analyse_image
from vqcodec.image.model import ENCODER_BEAM, ImageVQVAE, pad_to_multiple
from vqcodec.image.rate_control import EFFORTS, DEFAULT_EFFORT, choose_depths, depth_maps, lagrange_multiplier

__all__ = ["compute_index_maps", "compute_depth_maps"]

log = logging.getLogger(__name__)


@torch.no_grad()
def compute_index_maps(model: ImageVQVAE, images: list[torch.Tensor], flips: bool = True,
                       progress: bool = True, num_stages: int | None = None) -> list[torch.Tensor]:
    """Encode each (3, H, W) uint8 image (and its horizontal mirror when `flips`) with its best path of
    `num_stages` stages (default all), as the codec encodes (beam search of width ENCODER_BEAM).

    Returns a list of (s, ceil(H/8), ceil(W/8)) int64 index maps, two per image with `flips`.
    """
    model.eval()
    maps = []
    for im in tqdm(images, desc="index maps", unit="img", disable=not progress):
        x = im[None].float() / 255.0
        variants = [x, x.flip(-1)] if flips else [x]
        for v in variants:
            maps.append(model.encode_indices(pad_to_multiple(v, model.factor), num_stages, beam=ENCODER_BEAM)[0])
    log.info("computed %d index maps", len(maps))
    return maps


@torch.no_grad()
def compute_depth_maps(model: ImageVQVAE, images: list[torch.Tensor], qualities: list[int], flips: bool = True,
                       progress: bool = True) -> list[torch.Tensor]:
    """The index maps the codec writes (per-block depth, default effort) at each of `qualities`, for each
    (3, H, W) uint8 image (and its mirror with `flips`): the prior's training data for depth-coded files.

    Returns (S, ceil(H/8), ceil(W/8)) int64 maps with ABSENT (-1) past each position's depth (padded with
    ABSENT to all S stages), len(qualities) per image variant.
    """
    model.eval()
    s_max = model.cfg.num_stages
    maps = []
    for im in tqdm(images, desc="depth maps", unit="img", disable=not progress):
        for v in ([im, im.flip(-1)] if flips else [im]):
            # the codec's own analysis (fixed tiles, exact search): the maps are the ones it writes
            c = analyse_image(model, v.permute(1, 2, 0).contiguous().numpy(), EFFORTS[DEFAULT_EFFORT])
            paths, errors, h, w = c.paths.to(torch.int64), c.errors, c.height, c.width
            for q in qualities:
                m = depth_maps(paths, choose_depths(errors, lagrange_multiplier(q)), h, w)
                pad = torch.full((s_max - m.shape[0], h, w), ABSENT, dtype=torch.int64)
                maps.append(torch.cat([m, pad]))
    log.info("computed %d depth maps", len(maps))
    return maps
