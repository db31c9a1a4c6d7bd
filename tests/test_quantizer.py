"""VectorQuantizer and ResidualVQ: straight-through gradients, codebook learning, dead-code restarts,
toy-data distortion and usage, and the residual stack's monotone distortion."""
import pytest
import torch

from vqcodec.codec.quantizer import ResidualVQ, VectorQuantizer


def _toy_2d(n: int, seed: int = 0) -> torch.Tensor:
    """A 2-D mixture: 16 Gaussian blobs on a ring plus a uniform background. (n, 2) float32."""
    g = torch.Generator().manual_seed(seed)
    angles = torch.arange(16) * (2 * torch.pi / 16)
    centres = torch.stack([angles.cos(), angles.sin()], 1) * 3
    pick = torch.randint(0, 16, (n,), generator=g)
    x = centres[pick] + 0.3 * torch.randn(n, 2, generator=g)
    x[: n // 5] = torch.rand(n // 5, 2, generator=g) * 8 - 4
    return x


@pytest.mark.parametrize("ema", [True, False])
def test_straight_through_gradient_reaches_encoder(ema):
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=16, dim=4, ema=ema).train()
    encoder = torch.nn.Linear(3, 4)
    x = torch.randn(64, 3)
    out = vq(encoder(x))
    # Gradient of the decoder-side loss alone must reach the encoder unchanged (identity through VQ).
    grad_out = torch.randn_like(out.quantized)
    (out.quantized * grad_out).sum().backward()
    expected_weight_grad = grad_out.T @ x
    assert torch.allclose(encoder.weight.grad, expected_weight_grad, atol=1e-5)


def test_commitment_loss_has_paper_weight():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=8, dim=2, ema=True, beta=0.25).eval()
    x = torch.randn(100, 2)
    out = vq(x)
    expected = 0.25 * ((x - vq.codebook[out.indices]) ** 2).mean()
    assert torch.allclose(out.loss, expected)


@pytest.mark.parametrize("ema", [True, False])
def test_codes_move_toward_assigned_vectors(ema):
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=4, dim=2, ema=ema, restart_after=0, kmeans_iters=0).train()
    vq.initialized.fill_(True)  # keep the hand-set codebook
    vq.codebook.data.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]))
    vq.ema_sum.copy_(vq.codebook.data)
    target = torch.tensor([1.0, 1.0])
    x = target + 0.01 * torch.randn(256, 2)
    opt = torch.optim.SGD(vq.parameters(), lr=0.5) if not ema else None
    before = (vq.codebook[0] - target).norm().item()
    for _ in range(50):
        out = vq(x)
        if opt is not None:
            opt.zero_grad()
            out.loss.backward()
            opt.step()
    after = (vq.codebook[0] - target).norm().item()
    assert (out.indices == 0).all()
    assert after < 0.5 * before


def test_dead_codes_are_restarted():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=8, dim=2, restart_after=5, kmeans_iters=0).train()
    vq.initialized.fill_(True)
    far = torch.full((7, 2), 1e3)  # codes 1..7 can never win against code 0 for data near 0
    vq.codebook.data[1:] = far
    vq.codebook.data[0] = 0.0
    x = torch.randn(512, 2)
    for _ in range(5):
        vq(x)
    # After restart_after unused steps, codes 1..7 are re-seeded from the data and now win some inputs.
    assert vq.codebook[1:].abs().max() < 10
    out = vq(x)
    assert out.usage.item() > 0.5


def test_toy_2d_low_distortion_high_usage():
    torch.manual_seed(0)
    data = _toy_2d(20000)
    vq = VectorQuantizer(num_codes=64, dim=2, restart_after=20).train()
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        batch = data[torch.randint(0, data.shape[0], (1024,), generator=g)]
        vq(batch)
    vq.eval()
    idx = vq.encode(data)
    mse = ((data - vq.codebook[idx]) ** 2).sum(1).mean().item()
    used = torch.unique(idx).numel() / 64
    assert used >= 0.9, used
    # Compare with batch k-means (Lloyd, 50 iterations from the same kind of data-drawn start).
    centres = data[torch.randperm(data.shape[0], generator=g)[:64]].clone()
    for _ in range(50):
        assign = torch.cdist(data, centres).argmin(1)
        for k in range(64):
            if (assign == k).any():
                centres[k] = data[assign == k].mean(0)
    kmeans_mse = ((data - centres[torch.cdist(data, centres).argmin(1)]) ** 2).sum(1).mean().item()
    assert mse < 1.5 * kmeans_mse, (mse, kmeans_mse)
    assert mse < 0.02 * data.var(0).sum().item(), mse


def test_residual_vq_distortion_falls_with_stages():
    torch.manual_seed(0)
    x = torch.randn(8192, 8)
    rvq = ResidualVQ(num_stages=4, num_codes=32, dim=8).train()
    for _ in range(60):
        rvq(x[torch.randint(0, 8192, (2048,))], torch.randint(1, 5, (2048,)))
    rvq.eval()
    idx = rvq.encode(x)
    errors = [((x - rvq.decode(idx[:, :s])) ** 2).mean().item() for s in range(1, 5)]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.6 * errors[0]


def test_residual_vq_dropout_masks_stages():
    torch.manual_seed(0)
    rvq = ResidualVQ(num_stages=3, num_codes=16, dim=4).train()
    x = torch.randn(300, 4)
    rvq(x)  # initialise codebooks
    rvq.eval()
    out = rvq(x, torch.tensor([1] * 100 + [2] * 100 + [3] * 100))
    for s, rows in zip((1, 2, 3), (slice(0, 100), slice(100, 200), slice(200, 300))):
        expected = rvq.decode(out.indices[rows, :s])
        assert torch.allclose(out.quantized[rows], expected, atol=1e-6)


def test_bad_shapes_raise():
    vq = VectorQuantizer(num_codes=4, dim=3)
    with pytest.raises(ValueError, match="expected input of shape"):
        vq(torch.randn(5, 2))
