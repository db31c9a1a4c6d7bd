"""The image VQ-VAE's linear block paths (PCA start), float32 quantization under autocast, old configs."""
import numpy as np
import pytest
import torch

from vqcodec.image.model import ImageModelConfig, ImageVQVAE, block_pca
from vqcodec.weights.io import load_weights, save_weights

SMALL = dict(latent_dim=16, num_stages=2, num_codes=16, width_low=16, width_mid=8, width_high=8,
             enc_blocks=1, dec_blocks=1)


@pytest.fixture()
def images(make_image) -> list[torch.Tensor]:
    return [torch.from_numpy(make_image(48, 64, s)).permute(2, 0, 1).contiguous() for s in range(3)]


def test_block_pca_is_orthonormal_and_ordered(images):
    mean, basis = block_pca(images, 16)
    assert mean.shape == (192,) and basis.shape == (192, 16)
    torch.testing.assert_close(basis.T @ basis, torch.eye(16, dtype=torch.float64), atol=1e-10, rtol=0)
    blocks = torch.cat([torch.nn.functional.pixel_unshuffle(im[None].double() / 255, 8)[0].reshape(192, -1).T
                        for im in images])
    variances = ((blocks - mean) @ basis).var(0)
    assert bool((variances[:-1] >= variances[1:] - 1e-12).all()), "components not sorted by variance"


def test_pca_start_reconstructs_like_block_pca(images):
    """A fresh model with PCA-initialised linear paths starts as block PCA (the nets add ~nothing)."""
    torch.manual_seed(0)
    model = ImageVQVAE(ImageModelConfig(**SMALL)).eval()
    model.init_linear_paths(images)
    mean, basis = block_pca(images, SMALL["latent_dim"])
    x = images[0][None].float() / 255
    blocks = torch.nn.functional.pixel_unshuffle(x.double(), 8)[0].reshape(192, -1).T
    expected = ((blocks - mean) @ basis @ basis.T + mean).T.reshape(1, 192, 6, 8)
    expected = torch.nn.functional.pixel_shuffle(expected, 8).float()
    with torch.no_grad():
        got = model.decoder(model.encoder(x))
    assert (got - expected).abs().max().item() < 0.02
    mse = ((got - x) ** 2).mean().item()
    assert 10 * np.log10(1 / mse) > 28  # 16 components of a smooth picture


def test_training_pass_picks_float32_nearest_codes_under_bf16_autocast(images):
    """Training runs under bf16 autocast; the nearest-code search must not (bf16 distances pick wrong codes)."""
    torch.manual_seed(0)
    model = ImageVQVAE(ImageModelConfig(**SMALL)).train()
    model.init_linear_paths(images)
    x = images[1][None].float() / 255
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)  # k-means initialisation of the codebooks
        z = model.encoder(x)
        _, q = model(x)
    flat = z.float().permute(0, 2, 3, 1).reshape(-1, SMALL["latent_dim"])
    assert torch.equal(q.indices, model.quantizer.encode(flat))


def test_weights_written_before_linear_paths_still_load(tmp_path):
    torch.manual_seed(0)
    old_cfg = dict(SMALL, linear_path=False)
    model = ImageVQVAE(ImageModelConfig(**old_cfg))
    assert model.encoder.linear is None and model.decoder.linear is None
    config = model.cfg.to_dict()
    del config["linear_path"]  # as the v1 release wrote it
    save_weights(tmp_path / "v1.safetensors", model.release_state(), "image-f8-s8-k512-v1", config)
    tensors, _, config = load_weights(tmp_path / "v1.safetensors")
    again = ImageVQVAE.from_release(tensors, config)
    x = torch.rand(1, 3, 32, 40)
    assert torch.equal(again.encode_indices(x), model.eval().encode_indices(x))
