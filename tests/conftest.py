"""Shared fixtures: tiny, randomly initialised image and audio models (vqcodec.testing), written as weights
files, so codec/CLI/API tests run in seconds and do not depend on the shipped models."""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqcodec.testing import smooth_image, speechlike, use_weights_folder, write_tiny_audio_weights, write_tiny_image_weights


@pytest.fixture(scope="session")
def make_image():
    """The `smooth_image(h, w, seed)` picture maker."""
    return smooth_image


@pytest.fixture(scope="session")
def make_audio():
    """The `speechlike(seconds, rate, channels, seed)` test-audio maker."""
    return speechlike


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Folder with image_vqvae.safetensors + image_prior.safetensors of a tiny 3-stage, K=32 model."""
    return write_tiny_image_weights(tmp_path_factory.mktemp("tiny_weights"))


@pytest.fixture()
def tiny_codec(tiny_weights):
    from vqcodec.image.codec import ImageCodec

    return ImageCodec(tiny_weights / "image_vqvae.safetensors", tiny_weights / "image_prior.safetensors")


@pytest.fixture(scope="session")
def tiny_audio_weights(tmp_path_factory) -> Path:
    """Folder with audio_vqvae.safetensors + audio_prior.safetensors of a tiny 3-stage, K=32 audio model."""
    return write_tiny_audio_weights(tmp_path_factory.mktemp("tiny_audio_weights"))


@pytest.fixture()
def tiny_audio_codec(tiny_audio_weights):
    from vqcodec.audio.codec import AudioCodec

    return AudioCodec(tiny_audio_weights / "audio_vqvae.safetensors", tiny_audio_weights / "audio_prior.safetensors")


@pytest.fixture(scope="session")
def tiny_all_weights(tiny_weights, tiny_audio_weights, tmp_path_factory) -> Path:
    """One folder holding the tiny image and audio models (for $VQCODEC_WEIGHTS_DIR)."""
    import shutil

    folder = tmp_path_factory.mktemp("tiny_all_weights")
    for src in (tiny_weights, tiny_audio_weights):
        for f in src.iterdir():
            shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture()
def use_weights():
    """use_weights(folder): code with the weights in `folder` in this process until the test ends."""
    before = os.environ.get("VQCODEC_WEIGHTS_DIR")
    yield use_weights_folder
    use_weights_folder(Path(before) if before else None)


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    """A folder of 4 small (48 x 40) smooth RGB PNGs with noise: training data for the trainer tests."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:40]
    for i in range(4):
        base = np.stack([np.sin(xx / (3 + i)), np.cos(yy / (4 + i)), np.sin((xx + yy) / 5)], -1)
        arr = ((base * 0.4 + 0.5) * 255 + rng.normal(0, 8, base.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"im{i}.png")
    return folder


@pytest.fixture(scope="module")
def speech_folder(tmp_path_factory) -> Path:
    """A folder of 3 speech-like 16 kHz WAVs (1.0, 1.2, 1.4 s): training data for the audio trainer tests."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("speech")
    for i in range(3):
        sf.write(folder / f"u{i}.wav", speechlike(1.0 + 0.2 * i, 16000, 1, seed=i), 16000)
    return folder
