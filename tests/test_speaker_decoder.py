"""The speaker-conditioned decoder (vqcodec.audio.speaker_model), its registry role and `vqcodec train
speaker-decoder`, on the tiny audio model (tests/conftest.py) and a synthetic speaker folder. `vqcodec convert` and
`vqcodec.convert_speaker` use the conversion model instead (tests/test_convert_model.py)."""
import json
import shutil
from pathlib import Path

import pytest
import torch

import vqcodec
from vqcodec.audio.model import load_audio_model
from vqcodec.audio.speaker_model import (SpeakerDecoderConfig, build_speaker_decoder, heldout_start,
                                         load_speaker_decoder, speaker_of)
from vqcodec.testing import write_speaker_folder, write_tiny_speaker_decoder


def _folder(src: Path, dst: Path, film_std: float | None = 0.5) -> Path:
    """A copy of the tiny audio weights, with a tiny speaker decoder unless film_std is None."""
    dst.mkdir()
    for name in ("audio_vqvae.safetensors", "audio_prior.safetensors"):
        shutil.copy(src / name, dst / name)
    if film_std is not None:
        write_tiny_speaker_decoder(dst, film_std=film_std)
    return dst


def test_names_and_split():
    assert speaker_of("a/1088-129236-0000.flac") == "1088"
    with pytest.raises(ValueError, match="LibriSpeech"):
        speaker_of("speech.wav")
    start = heldout_start(16001, 320)
    assert start % 320 == 0 and start <= 0.8 * 16001 < start + 320


def test_untrained_variant_is_the_base_decoder(tiny_audio_weights):
    base, _ = load_audio_model(tiny_audio_weights / "audio_vqvae.safetensors")
    model = build_speaker_decoder(base, SpeakerDecoderConfig(("1", "2"), tuned_blocks=1)).eval()
    idx = torch.randint(0, base.cfg.num_codes, (2, 2, 30))
    assert torch.equal(model.decode_indices(idx, 1), base.decode_indices(idx))


def test_speaker_ids_and_bounds(tiny_audio_weights, tmp_path):
    folder = _folder(tiny_audio_weights, tmp_path / "w")
    base, _ = load_audio_model(folder / "audio_vqvae.safetensors")
    model, model_id = load_speaker_decoder(folder / "audio_speaker_decoder.safetensors", base)
    assert model_id == "tiny-speaker" and model.config.speakers == ("11", "22", "33")
    assert model.config.index(22) == 1 and model.config.index(" 33") == 2
    with pytest.raises(ValueError, match="11, 22, 33"):
        model.config.index("44")
    idx = torch.randint(0, base.cfg.num_codes, (1, 2, 20))
    with pytest.raises(ValueError, match="0..2"):
        model.decode_indices(idx, 3)
    with pytest.raises(ValueError, match="0..2"):
        model.decode_indices(idx, -1)
    a, b = model.decode_indices(idx, 0), model.decode_indices(idx, 1)
    assert a.shape == (1, 20 * base.hop) and not torch.equal(a, b)  # the speaker matters


def test_file_holds_only_the_tuned_tensors_and_names_its_base(tiny_audio_weights, tmp_path):
    from safetensors import safe_open

    folder = _folder(tiny_audio_weights, tmp_path / "w")
    with safe_open(str(folder / "audio_speaker_decoder.safetensors"), "pt") as f:
        keys = set(f.keys())
        meta = json.loads(f.metadata()["config"])["speaker"]
    assert "speaker_embedding.weight" in keys and not any(k.startswith(("from_latent", "norm_in")) for k in keys)
    base, _ = load_audio_model(folder / "audio_vqvae.safetensors")
    with pytest.raises(ValueError, match="cannot decode this model"):
        load_speaker_decoder(folder / "audio_speaker_decoder.safetensors", base, b"\0" * 16)
    assert len(meta["base_weights_hash"]) == 32
    with pytest.raises(ValueError, match="not a speaker decoder"):
        load_speaker_decoder(folder / "audio_vqvae.safetensors", base)


def test_registry_finds_the_optional_component(tiny_audio_weights, tmp_path):
    from vqcodec.registry import ModelRegistry

    with_it = ModelRegistry(_folder(tiny_audio_weights, tmp_path / "a"))
    without = ModelRegistry(_folder(tiny_audio_weights, tmp_path / "b", film_std=None))
    assert with_it.optional("audio", "speaker-decoder").model_id == "tiny-speaker"
    assert without.optional("audio", "speaker-decoder") is None
    assert set(with_it.defaults("audio")) == {"vqvae", "prior"}
    with pytest.raises(ValueError, match="unknown optional role"):
        with_it.optional("audio", "vqvae")


def test_conversion_no_longer_uses_the_speaker_decoder(tiny_audio_weights, tmp_path, use_weights, make_audio):
    """A folder holding the speaker decoder but no conversion model: conversion asks for the conversion model."""
    use_weights(_folder(tiny_audio_weights, tmp_path / "w"))
    with pytest.raises(FileNotFoundError, match="audio_conversion.safetensors"):
        vqcodec.convert_speaker(vqcodec.encode_audio(make_audio(0.3), 16000), "11")
    with pytest.raises(FileNotFoundError, match="vqcodec train conversion"):
        vqcodec.list_speakers()


def test_shipped_speaker_decoder_is_retired():
    """0.7.0 retired audio-speaker-decoder-v1 (no file names it: `convert` used it, and now uses the conversion
    model): it is not installed, and the manifest's retired list says which releases shipped it."""
    from vqcodec.registry import ModelRegistry
    from vqcodec.weights.io import WEIGHTS_DIR

    reg = ModelRegistry(WEIGHTS_DIR)
    assert reg.optional("audio", "speaker-decoder") is None
    assert not (WEIGHTS_DIR / "audio_speaker_decoder.safetensors").exists()
    assert any(r["model_id"] == "audio-speaker-decoder-v1" and r["releases"] == "0.4.0..0.6.0" for r in reg.retired)


def test_training_runs_and_resumes(tiny_audio_weights, tmp_path):
    from vqcodec.training.speaker_decoder import EXPORT_NAME, TrainSpeakerConfig, train_speaker_decoder

    data = write_speaker_folder(tmp_path / "data")
    base = tiny_audio_weights / "audio_vqvae.safetensors"
    common = dict(data=str(data), out=str(tmp_path / "run"), base=str(base), steps=4, batch_size=2, crop_frames=30,
                  tuned_blocks=1, speaker_dim=4, val_utterances=2, val_seconds=0.25, val_every=2, log_every=1,
                  warmup_steps=1, threads=1, progress=False)
    model = train_speaker_decoder(TrainSpeakerConfig(**common, stop_at_step=2))
    first = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in first] == [1, 2] and "val" in first[-1]
    model = train_speaker_decoder(TrainSpeakerConfig(**common, resume=True))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert model.config.speakers == ("11", "22", "33", "44") and model.config.sexes == ("F", "M", "F", "M")
    loaded, _ = load_speaker_decoder(tmp_path / "run" / EXPORT_NAME, load_audio_model(base)[0])
    idx = torch.randint(0, 32, (1, 3, 12))
    assert torch.allclose(loaded.decode_indices(idx, 2), model.eval().decode_indices(idx, 2), atol=2e-2)


def test_training_refuses_two_utterances_of_one_speaker(tiny_audio_weights, tmp_path):
    from vqcodec.training.speaker_decoder import TrainSpeakerConfig, train_speaker_decoder

    data = write_speaker_folder(tmp_path / "data", speakers=("11", "22"))
    shutil.copy(data / "11-1-0000.flac", data / "11-1-0001.flac")
    with pytest.raises(ValueError, match="one per speaker"):
        train_speaker_decoder(TrainSpeakerConfig(data=str(data), out=str(tmp_path / "run"), steps=1,
                                                 base=str(tiny_audio_weights / "audio_vqvae.safetensors"),
                                                 tuned_blocks=1, progress=False))
