"""Files written by earlier releases keep decoding to the same indices and pixels (the model registry's promise).

tests/data/release_v0.1.0/ holds .vq files that vqcodec 0.1.0 wrote (format version 1), release_v0.3.0/ files of
0.3.0 (format version 2, a depth per block), each with the pixels and index hashes that release decoded from them.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vqcodec

RELEASES = Path(__file__).parent / "data"
CASES = [(d, name) for d in sorted(RELEASES.glob("release_*")) for name in json.loads((d / "expected.json").read_text())]


@pytest.mark.parametrize("folder,name", CASES, ids=[f"{d.name}/{n}" for d, n in CASES])
def test_release_file_decodes_to_the_same_indices_and_pixels(folder, name):
    expected = json.loads((folder / "expected.json").read_text())[name]
    data = (folder / f"{name}.vq").read_bytes()
    info = vqcodec.inspect(data)
    layers = expected.get("layers", expected["quality"])  # 0.1.0's quality was its layer count
    assert (info.width, info.height, info.layers) == (expected["width"], expected["height"], layers)
    indices = vqcodec.decode_indices(data)
    assert list(indices.shape) == expected["indices_shape"]
    assert hashlib.sha256(indices.numpy().astype("<i8").tobytes()).hexdigest() == expected["indices_sha256"]
    decoded = np.asarray(vqcodec.decode(data), dtype=np.int16)
    reference = np.asarray(Image.open(folder / f"{name}.decoded.png"), dtype=np.int16)
    assert decoded.shape == reference.shape
    assert np.abs(decoded - reference).max() <= 1  # pixels: within 1 LSB of what that release decoded
