"""VectorQuantizer and ResidualVQ: straight-through gradients, codebook learning, dead-code restarts,
toy-data distortion and usage, and the residual stack's monotone distortion."""
import pytest
import torch

from vqcodec.quantization.residual_vq import ResidualVQ, VectorQuantizer


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


# --- beam search ------------------------------------------------------------------------------------
def _fitted_rvq(num_stages: int, num_codes: int, dim: int, seed: int = 0) -> "ResidualVQ":
    torch.manual_seed(seed)
    rvq = ResidualVQ(num_stages, num_codes, dim).train()
    rvq(torch.randn(4096, dim))  # k-means initialisation of every stage
    return rvq.eval()


def test_beam_of_one_is_greedy():
    rvq = _fitted_rvq(3, 16, 5)
    x = torch.randn(37, 5)
    assert torch.equal(rvq.encode(x, beam=1), rvq.encode(x))


def test_full_beam_is_exhaustive_after_a_greedy_first_stage():
    """With beam >= K^(s-1) nothing is pruned: the result is the best of all K^(s-1) paths after stage 1."""
    k, s = 4, 3
    rvq = _fitted_rvq(s, k, 5, seed=1)
    x = torch.randn(37, 5)
    got = rvq.encode(x, beam=k ** (s - 1))
    first = rvq.stages[0].encode(x)
    c1 = rvq.stages[0].lookup(first)
    c2, c3 = rvq.stages[1].codebook, rvq.stages[2].codebook
    # every (stage-2, stage-3) pair: (N, K, K) squared errors
    err = ((x[:, None, None, :] - c1[:, None, None, :] - c2[None, :, None, :] - c3[None, None, :, :]) ** 2).sum(-1)
    best = err.reshape(37, -1).argmin(1)
    expected = torch.stack([first, best // k, best % k], dim=1)
    got_err = ((x - rvq.decode(got)) ** 2).sum(-1)
    exp_err = ((x - rvq.decode(expected)) ** 2).sum(-1)
    torch.testing.assert_close(got_err, exp_err)


def test_beam_lowers_the_error_and_chunks_consistently():
    rvq = _fitted_rvq(4, 32, 8, seed=2)
    x = torch.randn(20000, 8)  # more than one 8192-row chunk
    greedy, beamed = rvq.encode(x), rvq.encode(x, beam=4)
    assert beamed[:, 0].equal(greedy[:, 0])  # stage 1 stays greedy
    mse = lambda idx: ((x - rvq.decode(idx)) ** 2).mean().item()
    assert mse(beamed) < 0.97 * mse(greedy)
    assert torch.equal(rvq.encode(x[:100], beam=4), beamed[:100])
    assert torch.equal(rvq.encode(x, num_stages=1, beam=4), greedy[:, :1])


@pytest.mark.parametrize("beam", [1, 4])
def test_prefixes_give_the_best_path_at_every_depth(beam):
    """encode_prefixes: row s-1 is the s-stage path encode() gives, its error is that path's error, and
    entries past each depth are ABSENT (-1), which decode() treats as nothing."""
    rvq = _fitted_rvq(4, 16, 6, seed=3)
    x = torch.randn(300, 6)
    paths, errors = rvq.encode_prefixes(x, beam=beam)
    assert paths.shape == (300, 4, 4) and errors.shape == (300, 4)
    for d in range(1, 5):
        assert torch.equal(paths[:, d - 1, :d], rvq.encode(x, num_stages=d, beam=beam))
        assert bool((paths[:, d - 1, d:] == -1).all())
        rec = rvq.decode(paths[:, d - 1])  # ABSENT columns add nothing
        torch.testing.assert_close(rec, rvq.decode(paths[:, d - 1, :d]))
        torch.testing.assert_close(((x - rec) ** 2).sum(-1), errors[:, d - 1], rtol=1e-4, atol=1e-4)
