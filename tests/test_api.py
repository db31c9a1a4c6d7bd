"""Public API: encode_image / decode / max_quality / VQFormatError and the input-mode policy."""
import numpy as np
import pytest
from PIL import Image

import vqcodec
from vqcodec.api import to_rgb_array


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
    rgb = make_image(8, 8)
    gray = Image.fromarray(rgb[..., 0])
    assert to_rgb_array(gray).shape == (8, 8, 3)
    pal = Image.fromarray(rgb).convert("P")
    assert to_rgb_array(pal).shape == (8, 8, 3)
    opaque = Image.fromarray(np.dstack([rgb, np.full((8, 8), 255, np.uint8)]), "RGBA")
    assert np.array_equal(to_rgb_array(opaque), rgb)  # opaque alpha: nothing lost, no error
    clear = Image.fromarray(np.dstack([rgb, np.zeros((8, 8), np.uint8)]), "RGBA")
    with pytest.raises(ValueError, match="alpha"):
        to_rgb_array(clear)
    assert np.array_equal(to_rgb_array(clear, "drop"), rgb)
    assert (to_rgb_array(clear, "white") == 255).all()
    with pytest.raises(ValueError, match="expected"):
        to_rgb_array(np.zeros((4, 4, 5), np.uint8))
