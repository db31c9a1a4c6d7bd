"""The shipped model: weights present, within the size budget, loaded with safetensors, exact round trips
on a Kodak crop, and quality that rises with the quality scale."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqcodec.image.codec import DEFAULT_MODEL_PATH, DEFAULT_PRIOR_PATH, ImageCodec

KODAK = Path(__file__).resolve().parents[1] / "data" / "kodak"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def test_weights_within_budget():
    weights = list(DEFAULT_MODEL_PATH.parent.glob("*.safetensors"))
    assert DEFAULT_MODEL_PATH in weights and DEFAULT_PRIOR_PATH in weights
    assert sum(p.stat().st_size for p in weights) <= 80 * 2**20  # all shipped weights, both modalities
    assert not list(DEFAULT_MODEL_PATH.parent.glob("*.pt")) and not list(DEFAULT_MODEL_PATH.parent.glob("*.pth"))


@pytest.fixture(scope="module")
def codec() -> ImageCodec:
    """The codec new files are made with: the shipped defaults, its decoder component included."""
    from vqcodec.registry import default_codec

    c = default_codec("image")
    assert c.decoder_id == "image-f8-s2-k512-d128-v4-decoder-c2"
    return c


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    with Image.open(KODAK / "kodim23.png") as im:
        return np.asarray(im.convert("RGB"))[200:296, 300:436].copy()  # 136x96, not a multiple of 8 wide


def test_round_trip_exact_and_quality_rises(codec, crop):
    """The shipped model: exact index round trips, every quality layer decodable, quality rising with the scale
    up to the refinement layers' top."""
    assert codec.refinement is not None and codec.max_layers == codec.vq_stages + codec.refinement.layers
    psnrs, sizes = [], []
    for q in (1, 10, 20, 30, 40, 60, 80, 100):
        data = codec.encode(crop, q)
        indices = codec.decode_indices(data)
        assert np.array_equal(indices.numpy(), codec.encode_indices(crop, q).numpy())
        out = codec.decode(data)
        assert np.array_equal(out, codec.decode(data))  # decoding is deterministic
        psnrs.append(_psnr(crop, out))
        sizes.append(len(data))
    assert sizes == sorted(sizes), sizes
    assert all(b > a - 0.05 for a, b in zip(psnrs, psnrs[1:])), psnrs
    assert psnrs[0] > 20.0 and psnrs[-1] > 38.0, psnrs


def test_earlier_model_still_installed():
    """0.1.0..0.4.x files name the v3 model and the v3/v4 priors: they stay installed beside the new ones."""
    import json

    listed = json.loads((DEFAULT_MODEL_PATH.parent / "MANIFEST.json").read_text())["components"]
    ids = {(c["role"], c["model_id"]) for c in listed if c["modality"] == "image"}
    assert {("vqvae", "image-f8-s8-k512-v3"), ("prior", "image-prior-pixelcnn-v4"),
            ("prior", "image-prior-pixelcnn-v3")} <= ids


def test_pixels_within_one_lsb_across_thread_counts(codec, crop):
    import torch

    data = codec.encode(crop, codec.max_quality)  # every refinement layer
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.decode(data).astype(int)
        torch.set_num_threads(2)
        two = codec.decode(data).astype(int)
    finally:
        torch.set_num_threads(before)
    assert np.abs(one - two).max() <= 1


# ------------------------------------------------------------------------------------------------ audio
SPEECH = Path(__file__).resolve().parents[1] / "data" / "speech"


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    import soundfile as sf

    clip = sorted((SPEECH / "librispeech-test-other").glob("*.flac"))[0]
    x, rate = sf.read(clip, dtype="float32")
    return x[: 4 * rate], rate  # 4 s


def test_shipped_audio_round_trip_exact_and_better_with_layers(speech):
    import torch

    import vqcodec
    from vqcodec.metrics.audio import mel_distance

    x, rate = speech
    top = vqcodec.max_quality("audio")
    data = vqcodec.encode_audio(x, rate, verify=True)
    assert vqcodec.inspect(data).layers == top
    full = vqcodec.decode_indices(data)
    distances = []
    for n in (1, top // 2, top):
        y, r = vqcodec.decode(data, layers=n)
        assert r == rate and y.shape == (len(x), 1)
        assert torch.equal(vqcodec.decode_indices(data, layers=n), full[:, :n])
        distances.append(mel_distance(x, y[:, 0], rate))
    assert distances[-1] < distances[0], distances  # more layers, closer to the input


def test_shipped_audio_within_one_lsb_across_thread_counts(speech):
    import torch

    import vqcodec

    x, rate = speech
    data = vqcodec.encode_audio(x[: 2 * rate], rate, quality=4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, _ = vqcodec.decode(data)
        torch.set_num_threads(2)
        two, _ = vqcodec.decode(data)
    finally:
        torch.set_num_threads(before)
    assert np.abs(one - two).max() * 32768 <= 1.0
