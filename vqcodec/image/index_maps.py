"""Index maps of a folder of images under a trained (frozen) image model: the prior's training data."""
from __future__ import annotations

import logging

import torch
from tqdm import tqdm

from vqcodec.image.model import ENCODER_BEAM, ImageVQVAE, pad_to_multiple

__all__ = ["compute_index_maps"]

log = logging.getLogger(__name__)


@torch.no_grad()
def compute_index_maps(model: ImageVQVAE, images: list[torch.Tensor], flips: bool = True,
                       progress: bool = True) -> list[torch.Tensor]:
    """Encode each (3, H, W) uint8 image (and its horizontal mirror when `flips`) with all stages, as
    the codec encodes (beam search of width ENCODER_BEAM).

    Returns a list of (S, ceil(H/8), ceil(W/8)) int64 index maps, two per image with `flips`.
    """
    model.eval()
    maps = []
    for im in tqdm(images, desc="index maps", unit="img", disable=not progress):
        x = im[None].float() / 255.0
        variants = [x, x.flip(-1)] if flips else [x]
        for v in variants:
            maps.append(model.encode_indices(pad_to_multiple(v, model.factor), beam=ENCODER_BEAM)[0])
    log.info("computed %d index maps", len(maps))
    return maps
