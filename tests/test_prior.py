"""Float image prior (codec/image/prior.py) and its trainer (codec/training/image_prior.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vqcodec.files import default_file_mode
from vqcodec.image.prior import ImagePrior, PriorConfig, load_float_prior, tile_boxes
from vqcodec.image.prior_integer import IntegerImagePrior, export_integer_prior, load_integer_prior
from vqcodec.training.image_prior import (ImagePriorTrainConfig, evaluate_bits, random_crops, rate_report,
                                       synthetic_index_maps, train_image_prior_on_maps)

K = 64


def small_cfg(**kw) -> PriorConfig:
    base = dict(num_stages=3, codebook_size=K, ar_channels=12, ar_layers=3, ar_kernel=3, cond_channels=12,
                cond_blocks=2, cond_kernel=3, tile_h=0, tile_w=0, ar_up_right_layers=-1)
    base.update(kw)
    return PriorConfig(**base)


def lively(model: ImagePrior, seed: int = 0, std: float = 0.4) -> ImagePrior:
    """Random weights large enough that every layer is far from linear/zero (gradients non-degenerate)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def dependence(model: ImagePrior, x1: torch.Tensor, pos: tuple[int, int]) -> torch.Tensor:
    """(H, W) bool: positions whose stage-1 embedding influences the stage-1 logits at pos (by gradient)."""
    emb = model.ar.embed(x1[None]).permute(0, 3, 1, 2).detach().requires_grad_(True)
    v = h = emb
    for layer in model.ar.layers:
        v, h = layer(v, h)
    logits = model.ar.head(torch.relu(h))
    g = torch.Generator().manual_seed(1)
    proj = torch.randn(logits.shape[1], generator=g)
    (logits[0, :, pos[0], pos[1]] * proj).sum().backward()
    return emb.grad[0].abs().sum(0) > 0


def test_shapes_and_initial_bits():
    cfg = small_cfg()
    model = ImagePrior(cfg)
    x = torch.randint(0, K, (2, 3, 10, 12))
    logits = model(x)
    assert logits.shape == (2, 3, K, 10, 12)
    bits = model.loss(x)
    assert bits.shape == (3,)
    # freshly initialised: near uniform over K symbols
    assert torch.all((bits - math.log2(K)).abs() < 1.0)
    # a prefix of the stages is allowed
    assert model(x[:, :2]).shape == (2, 2, K, 10, 12)


def test_pixelcnn_is_causal_and_has_no_blind_spot():
    model = lively(ImagePrior(small_cfg(ar_layers=3)))
    h, w = 9, 11
    x1 = torch.randint(0, K, (h, w))
    for pos in [(4, 5), (0, 3), (8, 0), (3, 10)]:
        dep = dependence(model, x1, pos)
        r, c = pos
        for q in zip(*torch.nonzero(dep, as_tuple=True)):
            qr, qc = int(q[0]), int(q[1])
            assert (qr, qc) < (r, c), f"logits at {pos} depend on {(qr, qc)} at/after it"
    # no blind spot: with 3 layers of 3-wide kernels the context above reaches 3 columns to the right
    dep = dependence(model, x1, (4, 5))
    assert dep[3, 6] and dep[3, 8], "up-right neighbours missing (blind spot)"
    assert dep[4, 4] and dep[4, 2], "left neighbours missing"
    assert dep[1, 2] and dep[1, 8], "rows further above missing"
    assert not dep[4, 5] and not dep[4, 6] and not dep[5, 0]


@pytest.mark.parametrize("up_right,slope", [(-1, 4), (1, 2), (2, 3)])
def test_float_dependence_matches_integer_receptive_field(up_right, slope):
    """The integer engine derives the coding order from an analytic receptive field; the float model's
    measured dependence set must be exactly that set (clipped to the map)."""
    cfg = small_cfg(ar_layers=3, ar_up_right_layers=up_right)
    model = lively(ImagePrior(cfg))
    maps = [torch.randint(0, K, (3, 12, 12))]
    ip = IntegerImagePrior.from_float(model, maps)
    rf = ip.engine.receptive_field()
    h, w = 12, 14
    x1 = torch.randint(0, K, (h, w))
    pos = (7, 6)
    dep = dependence(model, x1, pos)
    expected = torch.zeros(h, w, dtype=torch.bool)
    for dr, dc in rf:
        r, c = pos[0] + dr, pos[1] + dc
        if 0 <= r < h and 0 <= c < w:
            expected[r, c] = True
    assert torch.equal(dep, expected)
    assert ip.wavefront_slope == slope  # rightward reach (per row above) + 1
    assert dep[pos[0] - 1, pos[1] + slope - 1] and not dep[pos[0] - 1, pos[1] + slope]
    assert dep[pos[0], pos[1] - 3] and not dep[pos[0], pos[1]]


def test_conditional_stages_see_only_earlier_stages():
    model = lively(ImagePrior(small_cfg(num_stages=4)))
    x = torch.randint(0, K, (1, 4, 8, 9))
    with torch.no_grad():
        base = model(x)
        for s in range(1, 4):  # 0-based stage index s: logits must not depend on stages >= s
            y = x.clone()
            y[:, s:] = torch.randint(0, K, y[:, s:].shape)
            out = model(y)
            assert torch.equal(out[:, : s + 1], base[:, : s + 1]), s
            if s < 3:
                assert not torch.equal(out[:, s + 1], base[:, s + 1])  # it does use stage s


def test_tiled_stage1_equals_independent_tiles():
    cfg = small_cfg(tile_h=4, tile_w=5)
    model = lively(ImagePrior(cfg))
    x = torch.randint(0, K, (1, 3, 10, 12))
    with torch.no_grad():
        tiled = model(x)[:, 0]
        for r, c, th, tw in tile_boxes(10, 12, 4, 5):
            alone = model.ar(x[:, 0, r:r + th, c:c + tw])
            assert torch.allclose(tiled[:, :, r:r + th, c:c + tw], alone, atol=1e-6)
        untiled = model(x, tiled=False)[:, 0]
    assert not torch.allclose(tiled, untiled)
    assert tile_boxes(10, 12, 4, 5)[-1] == (8, 10, 2, 2)
    assert tile_boxes(10, 12, 0, 0) == [(0, 0, 10, 12)]


def test_synthetic_maps_are_structured():
    maps = synthetic_index_maps(2, stages=3, h=16, w=20, k=K, seed=3)
    assert len(maps) == 2 and maps[0].shape == (3, 16, 20) and maps[0].dtype == torch.int64
    assert int(maps[0].min()) >= 0 and int(maps[0].max()) < K
    eq_left = (maps[0][0, :, 1:] == maps[0][0, :, :-1]).float().mean()
    assert eq_left > 0.2  # stage 1 is spatially smooth
    again = synthetic_index_maps(2, stages=3, h=16, w=20, k=K, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(maps, again))


def test_random_crops():
    maps = [torch.arange(2 * 6 * 7).reshape(2, 6, 7), torch.arange(2 * 9 * 9).reshape(2, 9, 9)]
    g = torch.Generator().manual_seed(0)
    b = random_crops(maps, 5, 4, 5, g)
    assert b.shape == (5, 2, 4, 5)
    b = random_crops(maps, 3, 20, 20, g)  # clipped to the smallest map in the batch
    assert b.shape[2] <= 9 and b.shape[3] <= 9


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_train_resume_is_exact_and_export(tmp_path):
    torch.set_num_threads(1)
    cfg = small_cfg(tile_h=6, tile_w=8)
    maps = synthetic_index_maps(4, stages=3, h=12, w=14, k=K, seed=0)
    tc = ImagePriorTrainConfig(batch_size=2, lr=3e-3, warmup_steps=2, log_every=2, val_every=2, val_fraction=0.25)
    full = train_image_prior_on_maps(maps, tmp_path / "a", steps=6, cfg=cfg, train_cfg=tc, progress=False)
    train_image_prior_on_maps(maps, tmp_path / "b", steps=6, cfg=cfg, train_cfg=tc, progress=False, stop_at_step=3)
    resumed = train_image_prior_on_maps(maps, tmp_path / "b", steps=6, resume=True, progress=False)  # tc from checkpoint
    pa, pb = _params(full), _params(resumed)
    assert pa.keys() == pb.keys()
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    first = _params(ImagePrior(cfg))
    assert any(not torch.equal(pa[k], first[k]) for k in pa if k in first)  # it did train

    lines = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4, 6]
    assert len(lines[-1]["bits"]) == 3 and len(lines[-1]["val_bits"]) == 3

    loaded = load_float_prior(tmp_path / "a" / "prior_float.safetensors")
    x = maps[0][None]
    with torch.no_grad():
        assert torch.equal(loaded(x), full.eval()(x))
    vb = evaluate_bits(full, maps[:1])
    assert vb.shape == (3,) and np.all(vb > 0)

    ip = export_integer_prior(full, maps[:2], tmp_path / "prior_int.safetensors")
    ip2 = load_integer_prior(tmp_path / "prior_int.safetensors")
    for s in (1, 2, 3):
        assert np.array_equal(ip.frequencies(maps[1], s), ip2.frequencies(maps[1], s))
    rep = rate_report(full, maps[:2], ip)
    assert len(rep["integer"]) == 3 and abs(rep["quantization_penalty"]) < 0.02
    assert rep["float_tiled_mean"] >= rep["float_untiled_mean"] - 0.05
    with pytest.raises(ValueError):
        load_integer_prior(tmp_path / "a" / "prior_float.safetensors")
    # both prior files get the usual mode (safetensors alone creates 0600) and leave no temporary behind
    for name in ("a/prior_float.safetensors", "prior_int.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == default_file_mode(), name
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # atomic_write's temporaries


def test_resume_without_checkpoint_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="resume"):
        train_image_prior_on_maps([torch.zeros(3, 8, 8, dtype=torch.int64)], tmp_path, steps=2, resume=True, progress=False)


def test_absent_positions_add_nothing_and_are_not_counted():
    """ABSENT (-1) entries past a block's depth: the float and the integer priors agree on the context they
    make (no embedding), and the loss counts only present positions."""
    model = lively(ImagePrior(small_cfg()), seed=5, std=0.2)
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, K, (1, 3, 6, 7), generator=g)
    y = x.clone()
    stop = torch.rand(6, 7, generator=g) < 0.5
    y[0, 1][stop] = -1
    y[0, 2][stop] = -1
    ip = IntegerImagePrior.from_float(model, [x[0]])
    with torch.no_grad():
        for stage in (2, 3):
            f = ip.conditional_frequencies(y[0, : stage - 1], stage)
            p_int = f / f.sum(1, keepdims=True)
            logits = model(y[:, :stage])[0, stage - 1].reshape(K, -1).T.double()
            assert np.abs(p_int - torch.softmax(logits, 1).numpy()).max() < 5e-3
        bits = model.loss(y)
        # stage 3 counted over the present positions only: recompute by hand
        logits = model(y)[0, 2]
        nll = torch.nn.functional.cross_entropy(logits.reshape(K, -1).T[~stop.reshape(-1)], y[0, 2][~stop])
        assert math.isclose(float(bits[2]), float(nll) / math.log(2.0), rel_tol=1e-5)
    with pytest.raises(ValueError, match="stage 1"):
        model.loss(torch.full((1, 3, 2, 2), -1))
