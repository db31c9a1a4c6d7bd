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


AUDIO = RELEASES / "audio_release_v0.5.0"
AUDIO_CASES = sorted(json.loads((AUDIO / "expected.json").read_text()))


@pytest.mark.parametrize("name", AUDIO_CASES)
def test_audio_release_file_decodes_with_the_decoder_it_names(name):
    """A speech file of 0.5.0 names no decoder component: it renders with its model's own decoder, as 0.5.0
    did, although new files name the harmonic-plus-noise decoder; --decoder model gives the same samples."""
    sf = pytest.importorskip("soundfile")
    expected = json.loads((AUDIO / "expected.json").read_text())[name]
    data = (AUDIO / f"{name}.vq").read_bytes()
    info = vqcodec.inspect(data)
    assert info.layers == expected["layers"]
    assert "decoder" not in {role for role, _, _ in info.components}
    indices = vqcodec.decode_indices(data)
    assert list(indices.shape) == expected["indices_shape"]
    assert hashlib.sha256(indices.numpy().astype("<i8").tobytes()).hexdigest() == expected["indices_sha256"]
    reference, rate = sf.read(AUDIO / f"{name}.decoded.wav", dtype="int16")
    for decoder in (None, "model"):
        samples, out_rate = vqcodec.decode(data, decoder=decoder)
        assert (out_rate, len(samples)) == (rate, expected["num_samples"]) == (expected["sample_rate"], len(reference))
        decoded = np.clip(np.round(samples[:, 0] * 32767), -32768, 32767).astype(np.int32)
        assert np.abs(decoded - reference).max() <= 1  # within 1 LSB of what 0.5.0 decoded
    hn, _ = vqcodec.decode(data, decoder="audio-decoder-hn-v1")  # the new decoder renders the same indices
    assert hn.shape == samples.shape and np.abs(hn - samples).max() > 0.01
