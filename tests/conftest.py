"""Shared fixtures: a tiny, randomly initialised image model + integer prior, written as weights files,
so codec/CLI/API tests run in seconds and do not depend on the shipped model."""
from pathlib import Path

import numpy as np
import pytest
import torch


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A (h, w, 3) uint8 test picture: smooth gradients plus a little noise and an edge."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([np.sin(xx / 7 + seed), np.cos(yy / 5), np.sin((xx + yy) / 9)], -1) * 0.35 + 0.5
    img[h // 2 :, : w // 3] *= 0.5
    img = img * 255 + rng.normal(0, 4, img.shape)
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def make_image():
    """The `smooth_image(h, w, seed)` picture maker."""
    return smooth_image


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Folder with image_vqvae.safetensors + image_prior.safetensors of a tiny 3-stage, K=32 model."""
    from vqcodec.image.model import ImageModelConfig, ImageVQVAE
    from vqcodec.image.index_maps import compute_index_maps
    from vqcodec.image.prior import ImagePrior, PriorConfig
    from vqcodec.training.image_model import export_image_model
    from vqcodec.image.prior_integer import export_integer_prior

    folder = tmp_path_factory.mktemp("tiny_weights")
    torch.manual_seed(0)
    cfg = ImageModelConfig(latent_dim=8, num_stages=3, num_codes=32, width_low=16, width_mid=8, width_high=8,
                           enc_blocks=1, dec_blocks=1)
    model = ImageVQVAE(cfg).train()
    images = [torch.from_numpy(smooth_image(64, 80, s)).permute(2, 0, 1).contiguous() for s in range(3)]
    with torch.no_grad():  # data-dependent codebook init, so codes are spread over the latents
        for im in images:
            model(im[None].float() / 255)
    export_image_model(model, folder / "image_vqvae.safetensors")
    model.eval()
    maps = compute_index_maps(model, images, progress=False)
    prior = ImagePrior(PriorConfig(num_stages=3, codebook_size=32, ar_channels=16, ar_layers=2,
                                   cond_channels=16, cond_blocks=1, tile_h=4))
    export_integer_prior(prior, maps, folder / "image_prior.safetensors")
    return folder


@pytest.fixture()
def tiny_codec(tiny_weights):
    from vqcodec.image.codec import ImageCodec

    return ImageCodec(tiny_weights / "image_vqvae.safetensors", tiny_weights / "image_prior.safetensors")


TINY_AUDIO_MODEL = dict(hop=80, latent_dim=8, num_stages=3, num_codes=32, width=32, mlp_ratio=2.0, kernel=3,
                        enc_blocks=1, dec_blocks=1, enc_stft_hop=40, enc_n_fft=80, istft_hop=40, istft_n_fft=80,
                        ratios=(4, 4, 5))


def speechlike(seconds: float, rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """(T, C) float32 test audio: a few gliding harmonics with a syllable-rate envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    out = []
    for c in range(channels):
        f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + c + seed)
        phase = 2 * np.pi * np.cumsum(f0) / rate
        x = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + c)) ** 2
        out.append(0.3 * x + 0.01 * rng.standard_normal(len(t)))
    return np.stack(out, 1).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_audio_weights(tmp_path_factory) -> Path:
    """Folder with audio_vqvae.safetensors + audio_prior.safetensors of a tiny 3-stage, K=32 audio model."""
    from vqcodec.audio.model import AudioModelConfig, AudioVQVAE
    from vqcodec.audio.prior import AudioPrior, AudioPriorConfig
    from vqcodec.audio.prior_integer import export_integer_audio_prior
    from vqcodec.weights.io import save_weights

    folder = tmp_path_factory.mktemp("tiny_audio_weights")
    torch.manual_seed(0)
    model = AudioVQVAE(AudioModelConfig(**TINY_AUDIO_MODEL)).train()
    clips = [torch.from_numpy(speechlike(1.0, seed=s)[:, 0]) for s in range(3)]
    with torch.no_grad():  # data-dependent codebook init
        model(torch.stack(clips))
    save_weights(folder / "audio_vqvae.safetensors", model.release_state(), "tiny-audio", model.cfg.to_dict())
    model.eval()
    calib = [model.encode_indices(c[None])[0] for c in clips]
    prior = AudioPrior(AudioPriorConfig(num_stages=3, codebook_size=32, ar_channels=8, ar_skip_channels=8,
                                        ar_dilation_levels=3, ar_cycles=1, cond_channels=8, cond_blocks=1,
                                        segment_frames=50))
    export_integer_audio_prior(prior, calib, folder / "audio_prior.safetensors")
    return folder


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


@pytest.fixture(scope="session")
def make_audio():
    """The `speechlike(seconds, rate, channels, seed)` test-audio maker."""
    return speechlike
