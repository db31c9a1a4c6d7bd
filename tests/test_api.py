"""Public API: encode_image / decode / max_quality / VQFormatError and the input-mode policy."""
import numpy as np
import pytest
from PIL import Image

import vqcodec
from vqcodec.bitstream import ChannelLayout
from vqcodec.image.input import prepare_image


@pytest.fixture()
def api(tiny_weights, monkeypatch):
    monkeypatch.setenv("VQCODEC_WEIGHTS_DIR", str(tiny_weights))
    return vqcodec


def test_round_trip_pil_and_array(api, make_image):
    arr = make_image(24, 40, 2)
    data = api.encode_image(arr, quality=2)
    assert api.decode(data).size == (40, 24)
    assert api.encode_image(Image.fromarray(arr), quality=2) == data
    assert api.max_quality("image") == 100
    assert api.max_layers("image") == 3


def test_vqformaterror_is_value_error(api):
    assert issubclass(api.VQFormatError, ValueError)
    with pytest.raises(api.VQFormatError):
        api.decode(b"hello")


def test_unknown_modality(api):
    with pytest.raises(ValueError, match="modality"):
        api.max_quality("video")


def test_input_policy(make_image):
    """What encode_image codes for each kind of input (vqcodec.image.input.prepare_image)."""
    rgb = make_image(8, 8)
    gray = prepare_image(Image.fromarray(rgb[..., 0]))
    assert gray.rgb.shape == (8, 8, 3) and gray.layout == ChannelLayout.GRAY
    assert prepare_image(Image.fromarray(rgb).convert("P")).rgb.shape == (8, 8, 3)
    clear = Image.fromarray(np.dstack([rgb, np.zeros((8, 8), np.uint8)]), "RGBA")
    kept = prepare_image(clear)
    assert kept.layout == ChannelLayout.RGBA and np.array_equal(kept.rgb, rgb) and (kept.alpha == 0).all()
    with pytest.raises(ValueError, match="alpha"):
        prepare_image(clear, alpha="error")
    assert np.array_equal(prepare_image(clear, alpha="drop").rgb, rgb)
    assert (prepare_image(clear, alpha="white").rgb == 255).all()
    with pytest.raises(ValueError):
        prepare_image(np.zeros((4, 4, 5), np.uint8))
    assert not hasattr(vqcodec.api, "to_rgb_array")  # the 0.2 input policy is gone
