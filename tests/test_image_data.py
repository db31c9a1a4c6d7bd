"""Training crops: shapes, exact resume of the sampling stream, and the detail tournament."""
import pytest
import torch

from vqcodec.image.data import RandomCrops


def _half_flat_half_noisy() -> torch.Tensor:
    """(3, 64, 128) uint8: a flat grey left half, uniform noise on the right half."""
    im = torch.full((3, 64, 128), 128, dtype=torch.uint8)
    im[:, :, 64:] = torch.randint(0, 256, (3, 64, 64), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return im


def test_batch_shape_range_and_resume():
    crops = RandomCrops([_half_flat_half_noisy()], 16, seed=3, tournament=2)
    first = crops.batch(4)
    assert first.shape == (4, 3, 16, 16) and first.dtype == torch.float32
    assert 0.0 <= float(first.min()) and float(first.max()) <= 1.0
    state = crops.state()
    a = crops.batch(5)
    crops.load_state(state)
    assert torch.equal(a, crops.batch(5))


def test_tournament_prefers_detailed_crops():
    image = [_half_flat_half_noisy()]
    plain = RandomCrops(image, 16, seed=1, tournament=1).batch(400)
    picky = RandomCrops(image, 16, seed=1, tournament=4).batch(400)

    def mean_detail(batch):
        return sum(RandomCrops.detail(c * 255) for c in batch) / len(batch)

    assert mean_detail(picky) > 1.3 * mean_detail(plain)
    # the tournament keeps the maximum of its candidates: a crop of pure noise beats a flat one
    flat, noisy = image[0][:, :16, :16], image[0][:, :16, 100:116]
    assert RandomCrops.detail(noisy) > RandomCrops.detail(flat) == 0.0


def test_tournament_must_be_positive():
    with pytest.raises(ValueError, match="tournament"):
        RandomCrops([_half_flat_half_noisy()], 16, tournament=0)
