"""The image pipeline end to end on a tiny model: exact index round trips at every quality, quality
layers by truncation, and every bad file raising VQFormatError."""
import numpy as np
import pytest
import torch

from vqcodec.bitstream import (ImageGeometry, Modality, ModelComponent, StageSyntax, VQFormatError, read_file, truncate,
                               write_file)
from vqcodec.coding.depth import depths_of
from vqcodec.coding.stages import encode_stages
from vqcodec.image.model import pad_to_multiple


QUALITIES = (1, 2, 25, 50, 75, 99, 100)


@pytest.mark.parametrize("size", [(37, 29), (8, 8), (1, 1), (64, 48)])
def test_round_trip_across_the_quality_scale(tiny_codec, size, make_image):
    h, w = size
    rgb = make_image(h, w, seed=h)
    for q in QUALITIES:
        data = tiny_codec.encode(rgb, q)
        vqfile = read_file(data)
        indices = tiny_codec.decode_indices(vqfile)
        expected = tiny_codec.encode_indices(rgb, q)
        assert (vqfile.geometry.width, vqfile.geometry.height) == (w, h)
        assert vqfile.layers == expected.shape[0] <= tiny_codec.max_layers
        assert vqfile.stage_syntax == StageSyntax.DEPTH
        assert torch.equal(indices, expected)
        out = tiny_codec.decode(data)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert np.array_equal(out, tiny_codec.render(indices, h, w))


def test_truncated_file_decodes_at_lower_quality(tiny_codec, make_image):
    rgb = make_image(40, 56, seed=3)
    full = tiny_codec.encode(rgb)
    full_indices = tiny_codec.encode_indices(rgb)
    for s in range(1, full_indices.shape[0] + 1):
        # a file cut to s layers holds each position's first min(depth, s) stages
        idx = tiny_codec.decode_indices(truncate(full, s))
        assert torch.equal(idx, full_indices[:s])
        idx_q = tiny_codec.decode_indices(full, layers=s)
        assert torch.equal(idx_q, idx)


def test_higher_quality_never_makes_a_block_shallower(tiny_codec, make_image):
    rgb = make_image(48, 48, seed=5)
    depths = [depths_of(tiny_codec.encode_indices(rgb, q)) for q in QUALITIES]
    for low, high in zip(depths, depths[1:]):
        assert bool((high >= low).all())
    sizes = [len(tiny_codec.encode(rgb, q)) for q in QUALITIES]
    assert sizes[0] < sizes[-1]
    assert int(depths[0].sum()) < int(depths[-1].sum())


def test_plain_files_of_0_2_0_still_decode(tiny_codec, make_image):
    """Release 0.2.0 wrote every stage at every position (no STAGE_SYNTAX chunk)."""
    rgb = make_image(24, 40, seed=7)
    x = pad_to_multiple(tiny_codec._to_tensor(rgb), 8)
    indices = tiny_codec.model.encode_indices(x, tiny_codec.max_layers, beam=4)[0]
    streams = encode_stages(tiny_codec.prior, indices)
    data = write_file(Modality.IMAGE, tiny_codec.components, ImageGeometry(40, 24), [[s] for s in streams])
    assert read_file(data).stage_syntax == StageSyntax.PLAIN
    assert torch.equal(tiny_codec.decode_indices(data), indices)
    assert torch.equal(tiny_codec.decode_indices(truncate(data, 2)), indices[:2])


def test_other_model_is_refused(tiny_codec, make_image):
    f = read_file(tiny_codec.encode(make_image(16, 16)))
    prior = ModelComponent("prior", "some-other-prior", bytes(16))
    other = write_file(f.modality, [f.components[0], prior], f.geometry,
                       [f.streams(k) for k in range(1, f.layers + 1)])
    with pytest.raises(VQFormatError, match="does not have"):
        tiny_codec.decode(other)


def test_corruption_never_escapes_as_other_errors(tiny_codec, make_image):
    data = bytearray(tiny_codec.encode(make_image(24, 24)))
    rng = np.random.default_rng(0)
    for _ in range(40):
        bad = bytearray(data)
        pos = int(rng.integers(0, len(bad)))
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(VQFormatError):
            tiny_codec.decode(bytes(bad))
    for cut in (0, 3, len(data) // 2, len(data) - 1):
        with pytest.raises(VQFormatError):
            tiny_codec.decode(bytes(data[:cut]))


def test_bad_quality_is_a_value_error(tiny_codec, make_image):
    with pytest.raises(ValueError, match="quality must be"):
        tiny_codec.encode(make_image(8, 8), 0)
    with pytest.raises(ValueError, match="quality must be"):
        tiny_codec.encode(make_image(8, 8), tiny_codec.max_quality + 1)
