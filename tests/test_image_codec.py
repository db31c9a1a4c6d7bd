"""The image pipeline end to end on a tiny model: exact index round trips at every quality, quality
layers by truncation, and every bad file raising VQFormatError."""
import numpy as np
import pytest
import torch

from vqcodec.bitstream import ModelComponent, VQFormatError, read_file, truncate, write_file


@pytest.mark.parametrize("size", [(37, 29), (8, 8), (1, 1), (64, 48)])
def test_round_trip_every_quality(tiny_codec, size, make_image):
    h, w = size
    rgb = make_image(h, w, seed=h)
    for q in range(1, tiny_codec.max_quality + 1):
        data = tiny_codec.encode(rgb, q)
        vqfile = read_file(data)
        indices = tiny_codec.decode_indices(vqfile)
        assert (vqfile.geometry.width, vqfile.geometry.height, vqfile.layers) == (w, h, q)
        assert torch.equal(indices, tiny_codec.encode_indices(rgb, q))
        out = tiny_codec.decode(data)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert np.array_equal(out, tiny_codec.render(indices, h, w))


def test_truncated_file_decodes_at_lower_quality(tiny_codec, make_image):
    rgb = make_image(40, 56, seed=3)
    full = tiny_codec.encode(rgb)
    full_indices = tiny_codec.encode_indices(rgb)
    for s in range(1, tiny_codec.max_quality + 1):
        # a truncated file holds the first s stages of the full-quality indices (the beam search
        # optimises the full quality, so they need not equal a direct quality-s encode)
        idx = tiny_codec.decode_indices(truncate(full, s))
        assert torch.equal(idx, full_indices[:s])
        idx_q = tiny_codec.decode_indices(full, layers=s)
        assert torch.equal(idx_q, idx)


def test_more_stages_cost_more_bytes(tiny_codec, make_image):
    rgb = make_image(48, 48, seed=5)
    sizes = [len(tiny_codec.encode(rgb, q)) for q in range(1, tiny_codec.max_quality + 1)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


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
