"""Size targets that cannot be met (issue #24, item 2) in Python: `encode_image(max_bytes=)` and the Pillow
plugin's `max_bytes` save option write the smallest reachable file and warn `TargetMissedWarning` with its
size; the quality and effort a file was made at are recorded (a "settings" METADATA chunk) and read back by
`inspect`. On the tiny test model."""
import io
import warnings

import pytest
from PIL import Image

import vqcodec
from vqcodec import api
from vqcodec.bitstream import SETTINGS_KEY, decode_settings, read_file


@pytest.fixture()
def img(tiny_weights, use_weights, make_image):
    use_weights(tiny_weights)
    return Image.fromarray(make_image(40, 56, 1))


def test_encode_image_warns_with_the_smallest_size(img):
    with pytest.warns(api.TargetMissedWarning) as caught:
        data = vqcodec.encode_image(img, max_bytes=20)
    w = caught[0].message
    assert (w.target, w.actual, w.smallest) == (20, len(data), len(data)) and str(len(data)) in str(w)
    assert vqcodec.inspect(data).quality == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        roomy = vqcodec.encode_image(img, max_bytes=100_000)
    assert len(roomy) <= 100_000 and vqcodec.inspect(roomy).quality == 100


def test_pillow_save_honours_max_bytes(img):
    fitted = vqcodec.encode_image(img, max_bytes=300) if len(vqcodec.encode_image(img, quality=1)) <= 300 else None
    buf = io.BytesIO()
    with pytest.warns(api.TargetMissedWarning):
        img.save(buf, format="VQ", max_bytes=20)
    assert buf.getvalue() == vqcodec.encode_image(img, quality=1)  # the smallest file: quality 1
    if fitted is not None:
        buf = io.BytesIO()
        img.save(buf, format="VQ", max_bytes=300)
        assert buf.getvalue() == fitted and len(fitted) <= 300
    with pytest.raises(ValueError, match="not both"):
        img.save(io.BytesIO(), format="VQ", max_bytes=300, quality=5)
    with pytest.raises(ValueError, match="max_bytes"):
        img.save(io.BytesIO(), format="VQ", max_bytes=0)


def test_quality_and_effort_are_recorded(img):
    data = vqcodec.encode_image(img, quality=37, effort=3)
    fi = vqcodec.inspect(data)
    assert (fi.quality, fi.effort) == (37, 3)
    assert SETTINGS_KEY not in dict(fi.metadata)  # not shown as image metadata
    assert decode_settings(read_file(data).metadata[SETTINGS_KEY]) == {"quality": 37, "effort": 3}
    assert vqcodec.decode(data).size == img.size


def test_settings_values_are_informational():
    assert decode_settings(b"quality=5 effort=x junk =3 speed=2") == {"quality": 5, "speed": 2}
    assert decode_settings(b"\xff\x00") == {}
