"""The Pillow plugin (codec/pillow_plugin.py): real Image.open / load / thumbnail / save calls on the tiny
test model ($VQCODEC_WEIGHTS_DIR)."""
import io

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import vqcodec
from vqcodec import api




@pytest.fixture()
def vq_path(tiny_weights, use_weights, make_image, tmp_path):
    use_weights(tiny_weights)
    path = tmp_path / "photo.vq"
    path.write_bytes(vqcodec.encode_image(make_image(40, 56, 1), quality=100))
    return path


def test_registered_by_import():
    assert Image.registered_extensions()[".vq"] == "VQ"
    assert "VQ" in Image.OPEN and "VQ" in Image.SAVE
    vqcodec.register_pillow()  # a second registration is harmless
    assert Image.registered_extensions()[".vq"] == "VQ"


def test_open_knows_size_before_load(vq_path, monkeypatch):
    def no_decoding(*a, **k):
        raise AssertionError("decoded on open")

    monkeypatch.setattr(api, "decode", no_decoding)
    with Image.open(vq_path) as im:
        assert (im.format, im.mode, im.size) == ("VQ", "RGB", (56, 40))
        assert im.info["layers"] == vqcodec.inspect(vq_path.read_bytes()).layers >= 1


def test_load_gives_the_decoded_pixels(vq_path):
    expected = np.asarray(vqcodec.decode(vq_path.read_bytes()))
    with Image.open(vq_path) as im:
        im.load()
        assert np.array_equal(np.asarray(im), expected)
        assert im.getpixel((0, 0)) == tuple(expected[0, 0])


def test_thumbnail_and_convert(vq_path):
    with Image.open(vq_path) as im:
        im.thumbnail((28, 28))
        assert im.size == (28, 20) and im.mode == "RGB"
    with Image.open(vq_path) as im:
        assert im.convert("L").size == (56, 40)


def test_save_round_trip(tiny_weights, use_weights, make_image, tmp_path):
    use_weights(tiny_weights)
    src = Image.fromarray(make_image(40, 56, 2))
    src.save(tmp_path / "a.vq", quality=2)
    src.save(tmp_path / "b.vq")  # the top quality by default, format from the extension
    assert (tmp_path / "a.vq").read_bytes() == vqcodec.encode_image(src, quality=2)
    assert (tmp_path / "b.vq").read_bytes() == vqcodec.encode_image(src, quality=api.max_quality("image"))
    with Image.open(tmp_path / "a.vq") as im:
        im.load()
        assert np.array_equal(np.asarray(im), np.asarray(vqcodec.decode((tmp_path / "a.vq").read_bytes())))
        im.save(tmp_path / "again.png")  # and back out through another Pillow format
    assert Image.open(tmp_path / "again.png").size == (56, 40)


def test_save_options(tiny_weights, use_weights, make_image, tmp_path):
    use_weights(tiny_weights)
    rgba = Image.fromarray(make_image(16, 24)).convert("RGBA")
    rgba.putalpha(128)
    with pytest.raises(ValueError, match="alpha"):
        rgba.save(tmp_path / "t.vq", alpha="error")
    rgba.save(tmp_path / "t.vq", alpha="white", format="VQ")
    rgba.save(tmp_path / "k.vq")  # alpha kept by default
    assert Image.open(tmp_path / "k.vq").mode == "RGBA"
    assert Image.open(tmp_path / "t.vq").size == (24, 16)
    for bad in (0, 101, "4"):
        with pytest.raises(ValueError, match="quality must be an integer 1.."):
            rgba.save(tmp_path / "q.vq", quality=bad, alpha="drop")


def test_damaged_file_raises_pillow_errors(vq_path, tmp_path):
    data = vq_path.read_bytes()
    cut = tmp_path / "cut.vq"
    cut.write_bytes(data[:12])
    with pytest.raises(UnidentifiedImageError, match="cut.vq: ") as e:
        Image.open(cut)
    assert "cannot identify" not in str(e.value)  # vqcodec's own message, not Pillow's generic one
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    with pytest.raises(UnidentifiedImageError, match="CRC|crc|damaged|corrupt"):
        Image.open(io.BytesIO(bytes(flipped)))
    junk = tmp_path / "junk.vq"
    junk.write_bytes(b"not a vq file at all")
    with pytest.raises(UnidentifiedImageError):
        Image.open(junk)


def test_audio_file_is_not_an_image(tiny_all_weights, use_weights, make_audio, tmp_path):
    use_weights(tiny_all_weights)
    path = tmp_path / "speech.vq"
    path.write_bytes(vqcodec.encode_audio(make_audio(0.3, 16000, 1), 16000, quality=1))
    with pytest.raises(UnidentifiedImageError, match="audio file, not an image"):
        Image.open(path)
