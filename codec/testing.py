"""Tiny random models and synthetic signals for tests and benchmark smoke runs (as numpy.testing is for numpy).

Nothing here is used by coding. The tiny models are randomly initialised (codebooks seeded from data), so a
codec built on them runs in milliseconds and exercises every code path of the real one; their output means
nothing.

    folder = write_tiny_weights(Path("w"))      # image_* and audio_* files, found by the registry
    use_weights_folder(folder)                  # this process now codes with them ($VQCODEC_WEIGHTS_DIR)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["smooth_image", "speechlike", "TINY_IMAGE_MODEL", "TINY_AUDIO_MODEL", "write_tiny_image_weights",
           "write_tiny_audio_weights", "write_tiny_weights", "use_weights_folder", "write_tiny_speaker_decoder",
           "write_speaker_folder", "TINY_CONVERSION_MODEL", "write_tiny_conversion_model"]

TINY_IMAGE_MODEL = dict(latent_dim=8, num_stages=3, num_codes=32, width_low=16, width_mid=8, width_high=8,
                        enc_blocks=1, dec_blocks=1)
TINY_IMAGE_PRIOR = dict(num_stages=3, codebook_size=32, ar_channels=16, ar_layers=2, cond_channels=16, cond_blocks=1,
                        tile_h=4)
TINY_AUDIO_MODEL = dict(hop=80, latent_dim=8, num_stages=3, num_codes=32, width=32, mlp_ratio=2.0, kernel=3,
                        enc_blocks=1, dec_blocks=1, enc_stft_hop=40, enc_n_fft=80, istft_hop=40, istft_n_fft=80,
                        ratios=(4, 4, 5))
TINY_CONVERSION_MODEL = dict(hop=80, content_stride=2, latent_dim=8, num_codes=16, width=16, mlp_ratio=2.0, kernel=3,
                             enc_blocks=1, dec_blocks=1, ref_blocks=1, enc_stft_hop=40, enc_n_fft=80, istft_hop=40,
                             istft_n_fft=80, speaker_dim=8, ref_n_fft=256, ref_hop=64, ref_n_mels=8, env_init=-2.0)
TINY_AUDIO_PRIOR = dict(num_stages=3, codebook_size=32, ar_channels=8, ar_skip_channels=8, ar_dilation_levels=3,
                        ar_cycles=1, cond_channels=8, cond_blocks=1, segment_frames=50)


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A (h, w, 3) uint8 test picture: smooth gradients plus a little noise and an edge."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([np.sin(xx / 7 + seed), np.cos(yy / 5), np.sin((xx + yy) / 9)], -1) * 0.35 + 0.5
    img[h // 2 :, : w // 3] *= 0.5
    img = img * 255 + rng.normal(0, 4, img.shape)
    return img.clip(0, 255).astype(np.uint8)


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


def write_tiny_image_weights(folder: Path) -> Path:
    """image_vqvae.safetensors + image_prior.safetensors of a tiny 3-stage, K = 32 image model in `folder`."""
    from vqcodec.image.index_maps import compute_index_maps
    from vqcodec.image.model import ImageModelConfig, ImageVQVAE
    from vqcodec.image.prior import ImagePrior, PriorConfig
    from vqcodec.image.prior_integer import export_integer_prior
    from vqcodec.weights.io import save_weights

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = ImageVQVAE(ImageModelConfig(**TINY_IMAGE_MODEL)).train()
    images = [torch.from_numpy(smooth_image(64, 80, s)).permute(2, 0, 1).contiguous() for s in range(3)]
    with torch.no_grad():  # data-dependent codebook init, so codes are spread over the latents
        for im in images:
            model(im[None].float() / 255)
    save_weights(folder / "image_vqvae.safetensors", model.release_state(), "tiny-image", model.cfg.to_dict())
    model.eval()
    maps = compute_index_maps(model, images, progress=False)
    export_integer_prior(ImagePrior(PriorConfig(**TINY_IMAGE_PRIOR)), maps, folder / "image_prior.safetensors")
    return folder


def write_tiny_audio_weights(folder: Path) -> Path:
    """audio_vqvae.safetensors + audio_prior.safetensors of a tiny 3-stage, K = 32 audio model in `folder`."""
    from vqcodec.audio.model import AudioModelConfig, AudioVQVAE
    from vqcodec.audio.prior import AudioPrior, AudioPriorConfig
    from vqcodec.audio.prior_integer import export_integer_audio_prior
    from vqcodec.weights.io import save_weights

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = AudioVQVAE(AudioModelConfig(**TINY_AUDIO_MODEL)).train()
    clips = [torch.from_numpy(speechlike(1.0, seed=s)[:, 0]) for s in range(3)]
    with torch.no_grad():  # data-dependent codebook init
        model(torch.stack(clips))
    save_weights(folder / "audio_vqvae.safetensors", model.release_state(), "tiny-audio", model.cfg.to_dict())
    model.eval()
    calib = [model.encode_indices(c[None])[0] for c in clips]
    export_integer_audio_prior(AudioPrior(AudioPriorConfig(**TINY_AUDIO_PRIOR)), calib, folder / "audio_prior.safetensors")
    return folder


def write_tiny_speaker_decoder(folder: Path, speakers: tuple[str, ...] = ("11", "22", "33"),
                               film_std: float = 0.5) -> Path:
    """audio_speaker_decoder.safetensors on the tiny audio model in `folder` (written by
    `write_tiny_audio_weights`). film_std: random FiLM weights, so that speakers decode differently (0: the
    untrained variant, which decodes exactly as the base model does)."""
    from vqcodec.audio.model import load_audio_model
    from vqcodec.audio.speaker_model import SpeakerDecoderConfig, build_speaker_decoder, save_speaker_decoder
    from vqcodec.weights.io import weights_hash

    folder = Path(folder)
    base_path = folder / "audio_vqvae.safetensors"
    base, base_id = load_audio_model(base_path)
    torch.manual_seed(1)
    spk = SpeakerDecoderConfig(tuple(speakers), tuple("FM"[i % 2] for i in range(len(speakers))), speaker_dim=4,
                               tuned_blocks=1, default_stages=2, base_model_id=base_id,
                               base_weights_hash=weights_hash(base_path).hex())
    model = build_speaker_decoder(base, spk)
    if film_std:
        with torch.no_grad():
            for lin in model.decoder.film:
                lin.weight.normal_(0, film_std)
    path = folder / "audio_speaker_decoder.safetensors"
    save_speaker_decoder(path, model, "tiny-speaker")
    return path


def write_tiny_conversion_model(folder: Path, speakers: tuple[str, ...] = ("11", "22", "33"),
                                f0_hz: tuple[float, ...] = (110.0, 180.0, 250.0), film_std: float = 0.5,
                                name: str = "audio_conversion.safetensors") -> Path:
    """A tiny conversion model (`vqcodec.audio.conversion`, TINY_CONVERSION_MODEL: about 10 thousand parameters)
    with a speaker table of `speakers` (random unit embeddings; log2-f0 mean log2(f0_hz), std 0.1 octave) in
    `folder`/`name` (the registry's optional "conversion" component of a folder without a manifest). film_std:
    random FiLM weights, so that the speaker embedding changes the output (0: the untrained decoder, which
    ignores it)."""
    from vqcodec.audio.conversion import ConversionConfig, ConversionModel, save_conversion_model
    from vqcodec.audio.harmonic import HarmonicConfig

    if len(f0_hz) < len(speakers):
        raise ValueError(f"need one f0 per speaker: {len(speakers)} speakers, {len(f0_hz)} f0 values")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(2)
    cfg = ConversionConfig(**TINY_CONVERSION_MODEL, harmonic=HarmonicConfig(max_harmonics=8, n_env=16))
    model = ConversionModel(cfg).train()
    with torch.no_grad():  # data-dependent codebook init, so the content codes differ over time
        z = model.encoder(torch.from_numpy(speechlike(1.0, seed=3)[: 100 * cfg.content_hop, 0])[None])
        model.quantizer(z.reshape(-1, cfg.latent_dim))
        if film_std:
            for lin in model.decoder.film:
                lin.weight.normal_(0, film_std)
    s = len(speakers)
    f0 = torch.tensor([[float(np.log2(f)), 0.1] for f in f0_hz[:s]])
    model.set_speakers(speakers, torch.randn(s, cfg.speaker_dim), f0)
    path = folder / name
    save_conversion_model(path, model.eval(), "tiny-conversion")
    return path


def write_speaker_folder(folder: Path, speakers: tuple[str, ...] = ("11", "22", "33", "44"),
                         seconds: float = 1.5) -> Path:
    """A LibriSpeech-style folder of synthetic speech: SPEAKER-1-0000.flac per speaker (each with its own
    seed) and a SPEAKERS.TXT giving alternating sexes."""
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for i, s in enumerate(speakers):
        sf.write(folder / f"{s}-1-0000.flac", speechlike(seconds, seed=i)[:, 0], 16000)
        lines.append(f"{s} | {'FM'[i % 2]} | train-clean-100  | 1.00 | Reader {s}")
    (folder / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n")
    return folder


def write_tiny_weights(folder: Path) -> Path:
    """Both tiny models in one folder."""
    write_tiny_image_weights(folder)
    return write_tiny_audio_weights(folder)


def use_weights_folder(folder: Path | None) -> None:
    """Make this process code with the weights in `folder` ($VQCODEC_WEIGHTS_DIR; None: the shipped weights),
    forgetting cached registries and codecs."""
    from vqcodec import registry

    if folder is None:
        os.environ.pop("VQCODEC_WEIGHTS_DIR", None)
    else:
        os.environ["VQCODEC_WEIGHTS_DIR"] = str(folder)
    registry._registry_for.cache_clear()
    registry._load_codec.cache_clear()
