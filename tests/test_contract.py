"""The written contract between the public API and the codecs (vqcodec.contract): both codecs implement
`Codec` with the same call shapes, share its checks, and the API relies on nothing else."""
import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

from vqcodec.bitstream import VQFormatError, read_file
from vqcodec.contract import Codec, Progress

REPO = Path(__file__).resolve().parents[1]


def _shape(fn) -> list[tuple[str, object]]:
    """(name, kind) of the parameters `Codec` names, in order."""
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("fixture", ["tiny_codec", "tiny_audio_codec"])
def test_both_codecs_implement_the_protocol(fixture, request):
    codec = request.getfixturevalue(fixture)
    assert isinstance(codec, Codec)
    assert 1 <= codec.max_layers and 1 <= codec.max_quality
    for method in ("encode", "decode", "decode_indices"):
        wanted = _shape(getattr(Codec, method))
        have = _shape(getattr(type(codec), method))
        assert have[:len(wanted)] == wanted, (method, have)
        # anything a codec adds is keyword-only with a default, so every call the protocol allows works
        extra = inspect.signature(getattr(type(codec), method)).parameters
        assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty
                   for name, p in extra.items() if name not in dict(wanted)), method


def test_the_codecs_share_the_file_checks(tiny_codec, tiny_audio_codec, make_image, make_audio):
    image_file = read_file(tiny_codec.encode(make_image(16, 16), 50))
    audio_file = read_file(tiny_audio_codec.encode(make_audio(0.2), sample_rate=16000))
    with pytest.raises(VQFormatError, match="not audio"):
        tiny_audio_codec.decode_indices(image_file)
    with pytest.raises(VQFormatError, match="not an image"):
        tiny_codec.decode_indices(audio_file)
    for codec, f in ((tiny_codec, image_file), (tiny_audio_codec, audio_file)):
        with pytest.raises(ValueError, match="layers must be >= 1"):
            codec.decode_indices(f, 0)


def test_the_api_holds_codecs_by_the_contract():
    """No `Any` and no probing with getattr in vqcodec.api; one Progress type everywhere."""
    tree = ast.parse((REPO / "codec" / "api.py").read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "Any" not in names and "getattr" not in calls and "hasattr" not in calls
    from vqcodec import api
    from vqcodec.audio import codec as audio_codec
    from vqcodec.coding import stages
    from vqcodec.image import codec as image_codec

    assert api.Progress is Progress and stages.Progress is Progress
    assert image_codec.Progress is Progress and audio_codec.Progress is Progress


def test_the_image_codec_takes_a_prepared_image(tiny_codec, make_image):
    """A PreparedImage is written once with its layout and alpha plane; a plain array is an RGB image."""
    from PIL import Image

    from vqcodec.image.input import plain_rgb, prepare_image
    from vqcodec.image.layout import read_side_info

    rgb = make_image(16, 24)
    assert tiny_codec.encode(rgb, 40) == tiny_codec.encode(plain_rgb(rgb), 40)
    alpha = np.arange(16 * 24, dtype=np.uint8).reshape(16, 24)
    prepared = prepare_image(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))
    f = read_file(tiny_codec.encode(prepared, 40, verify=True))
    assert np.array_equal(read_side_info(f).alpha, alpha)


def test_a_gray_image_fitted_to_a_size_decodes_gray(tiny_codec, make_image):
    """max_bytes measures the colour file; the written file still carries the image's layout."""
    from PIL import Image

    from vqcodec.image.input import prepare_image

    gray = prepare_image(Image.fromarray(make_image(16, 24)[..., 0]))
    f = read_file(tiny_codec.encode(gray, max_bytes=10 ** 6))
    assert f.geometry.channel_layout == gray.layout
