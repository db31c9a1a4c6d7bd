"""Shared fixtures: a tiny, randomly initialised image model + integer prior, written as weights files,
so codec/CLI/API tests run in seconds and do not depend on the shipped model."""
from pathlib import Path

import numpy as np
import pytest
import torch


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A (h, w, 3) uint8 test picture: smooth gradients plus a little noise and an edge."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([np.sin(xx / 7 + seed), np.cos(yy / 5), np.sin((xx + yy) / 9)], -1) * 0.35 + 0.5
    img[h // 2 :, : w // 3] *= 0.5
    img = img * 255 + rng.normal(0, 4, img.shape)
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def make_image():
    """The `smooth_image(h, w, seed)` picture maker."""
    return smooth_image


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Folder with image_vqvae.safetensors + image_prior.safetensors of a tiny 3-stage, K=32 model."""
    from vqcodec.image.model import ImageModelConfig, ImageVQVAE
    from vqcodec.image.index_maps import compute_index_maps
    from vqcodec.image.prior import ImagePrior, PriorConfig
    from vqcodec.training.image_model import export_image_model
    from vqcodec.image.prior_integer import export_integer_prior

    folder = tmp_path_factory.mktemp("tiny_weights")
    torch.manual_seed(0)
    cfg = ImageModelConfig(latent_dim=8, num_stages=3, num_codes=32, width_low=16, width_mid=8, width_high=8,
                           enc_blocks=1, dec_blocks=1)
    model = ImageVQVAE(cfg).train()
    images = [torch.from_numpy(smooth_image(64, 80, s)).permute(2, 0, 1).contiguous() for s in range(3)]
    with torch.no_grad():  # data-dependent codebook init, so codes are spread over the latents
        for im in images:
            model(im[None].float() / 255)
    export_image_model(model, folder / "image_vqvae.safetensors")
    model.eval()
    maps = compute_index_maps(model, images, progress=False)
    prior = ImagePrior(PriorConfig(num_stages=3, codebook_size=32, ar_channels=16, ar_layers=2,
                                   cond_channels=16, cond_blocks=1, tile_h=4))
    export_integer_prior(prior, maps, folder / "image_prior.safetensors")
    return folder


@pytest.fixture()
def tiny_codec(tiny_weights):
    from vqcodec.image.codec import ImageCodec

    return ImageCodec(tiny_weights / "image_vqvae.safetensors", tiny_weights / "image_prior.safetensors")
