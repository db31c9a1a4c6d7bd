"""The shipped model: weights present, within the size budget, loaded with safetensors, exact round trips
on a Kodak crop, and quality that rises with the number of stages."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqcodec.image.codec import DEFAULT_MODEL_PATH, DEFAULT_PRIOR_PATH, ImageCodec

KODAK = Path(__file__).resolve().parents[1] / "data" / "kodak"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def test_weights_within_budget():
    weights = list(DEFAULT_MODEL_PATH.parent.glob("*.safetensors"))
    assert DEFAULT_MODEL_PATH in weights and DEFAULT_PRIOR_PATH in weights
    assert sum(p.stat().st_size for p in weights) <= 40 * 2**20  # all shipped weights, both modalities
    assert not list(DEFAULT_MODEL_PATH.parent.glob("*.pt")) and not list(DEFAULT_MODEL_PATH.parent.glob("*.pth"))


@pytest.fixture(scope="module")
def codec() -> ImageCodec:
    return ImageCodec()


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    with Image.open(KODAK / "kodim23.png") as im:
        return np.asarray(im.convert("RGB"))[200:296, 300:436].copy()  # 136x96, not a multiple of 8 wide


def test_round_trip_exact_every_quality(codec, crop):
    psnrs = []
    for q in range(1, codec.max_quality + 1):
        data = codec.encode(crop, q)
        indices = codec.decode_indices(data)
        assert np.array_equal(indices.numpy(), codec.encode_indices(crop, q).numpy())
        out = codec.render(indices, crop.shape[0], crop.shape[1])
        psnrs.append(_psnr(crop, out))
        assert 8 * len(data) / crop[..., 0].size < 9 * q / 64 * 1.05 + 0.2  # coding never inflates much
    assert psnrs[-1] > psnrs[0] + 2.0, psnrs
    assert psnrs[-1] > 24.0, psnrs


def test_pixels_within_one_lsb_across_thread_counts(codec, crop):
    import torch

    indices = codec.encode_indices(crop, codec.max_quality)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.render(indices, crop.shape[0], crop.shape[1]).astype(int)
        torch.set_num_threads(2)
        two = codec.render(indices, crop.shape[0], crop.shape[1]).astype(int)
    finally:
        torch.set_num_threads(before)
    assert np.abs(one - two).max() <= 1
