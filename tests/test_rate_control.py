"""The image quality scale and encoder choices (codec/image/rate_control.py): quality -> lambda -> a depth
per block, effort levels, a target size, and the prior's training maps made the same way."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vqcodec.coding.depth import ABSENT, check_depth_indices, depths_of
from vqcodec.image.index_maps import compute_depth_maps
from vqcodec.image.rate_control import (EFFORTS, LAMBDA_AT_1, LAMBDA_AT_99, QUALITY_MAX, check_effort, check_quality,
                                        choose_depths, depth_maps, lagrange_multiplier)


def test_lambda_falls_along_the_scale_to_zero_at_the_top():
    lams = [lagrange_multiplier(q) for q in range(1, QUALITY_MAX + 1)]
    assert lams[0] == pytest.approx(LAMBDA_AT_1) and lams[-2] == pytest.approx(LAMBDA_AT_99) and lams[-1] == 0.0
    assert all(a > b for a, b in zip(lams, lams[1:]))


@pytest.mark.parametrize("bad", [0, QUALITY_MAX + 1, 2.5, True, "7"])
def test_bad_quality_is_refused(bad):
    with pytest.raises((ValueError, TypeError), match="quality"):
        check_quality(bad)


def test_effort_levels():
    assert check_effort(None) == 2 and [check_effort(e) for e in EFFORTS] == sorted(EFFORTS)
    for bad in (0, 4, True, "2"):
        with pytest.raises(ValueError, match="effort"):
            check_effort(bad)


def test_depth_choice_minimises_the_lagrangian_and_is_monotone():
    g = torch.Generator().manual_seed(0)
    errors = torch.rand(500, 6, generator=g).sort(dim=1, descending=True).values
    previous = None
    for lam in (1.0, 0.1, 0.01, 0.001, 0.0):
        d = choose_depths(errors, lam, stage_bits=8.0)
        cost = errors + lam * 8.0 * torch.arange(6.0)
        assert torch.equal(cost.gather(1, (d - 1)[:, None])[:, 0], cost.min(1).values)
        if previous is not None:
            assert bool((d >= previous).all())  # a smaller lambda never makes a block shallower
        previous = d
    assert bool((choose_depths(errors, 0.0) == 6).all())  # strictly falling errors: all stages at the top


def test_depth_maps_cut_each_block_at_its_depth():
    n, s, h, w = 6, 3, 2, 3
    paths = torch.full((n, s, s), ABSENT)
    for d in range(s):
        paths[:, d, : d + 1] = torch.arange(n)[:, None] * 10 + d
    depths = torch.tensor([1, 2, 3, 1, 1, 2])
    maps = depth_maps(paths, depths, h, w)
    assert maps.shape == (3, h, w)
    assert torch.equal(depths_of(maps).reshape(-1), depths)
    check_depth_indices(maps, 1000)
    assert int(maps[0, 0, 1]) == 11 and int(maps[1, 0, 1]) == 11  # block 1's best 2-stage path


def test_quality_and_effort_through_the_codec(tiny_codec, make_image):
    rgb = make_image(40, 48, seed=1)
    for effort in EFFORTS:
        data = tiny_codec.encode(rgb, 60, effort=effort)
        assert torch.equal(tiny_codec.decode_indices(data), tiny_codec.encode_indices(rgb, 60, effort=effort))
    with pytest.raises(ValueError, match="effort"):
        tiny_codec.encode(rgb, 60, effort=5)


def test_target_size_gives_the_highest_quality_that_fits(tiny_codec, make_image):
    rgb = make_image(48, 64, seed=2)
    by_quality = {q: len(tiny_codec.encode(rgb, q)) for q in range(1, QUALITY_MAX + 1, 3)}
    smallest, largest = min(by_quality.values()), max(by_quality.values())
    target = (smallest + largest) // 2
    data = tiny_codec.encode(rgb, max_bytes=target)
    assert len(data) <= target
    # no sampled quality that fits is better than what the search found by more than the sampling step
    fitting = [q for q, n in by_quality.items() if n <= target]
    found = next(q for q in range(QUALITY_MAX, 0, -1) if tiny_codec.encode(rgb, q) == data)
    assert found >= max(fitting) - 3
    assert len(tiny_codec.encode(rgb, max_bytes=10 ** 9)) == len(tiny_codec.encode(rgb))  # all fits: the top
    assert len(tiny_codec.encode(rgb, max_bytes=1)) == len(tiny_codec.encode(rgb, 1))  # nothing fits: quality 1
    with pytest.raises(ValueError, match="not both"):
        tiny_codec.encode(rgb, 5, max_bytes=target)


def test_depth_maps_for_prior_training_match_the_codec(tiny_codec, make_image):
    rgb = make_image(24, 32, seed=3)
    image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    maps = compute_depth_maps(tiny_codec.model, [image], [30, 100], flips=False, progress=False)
    assert len(maps) == 2 and all(m.shape[0] == tiny_codec.max_layers for m in maps)
    for m, q in zip(maps, (30, 100)):
        coded = tiny_codec.encode_indices(rgb, q)
        assert torch.equal(m[: coded.shape[0]], coded) and bool((m[coded.shape[0]:] == ABSENT).all())
