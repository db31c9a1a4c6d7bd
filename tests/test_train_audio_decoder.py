"""The decoder-stage trainer: a new speech decoder (inverse STFT or harmonic-plus-noise) on a frozen base
model's indices. It trains, resumes bit-exactly, starts from the base decoder, and exports a file that
loads against its base model and refuses another."""
import numpy as np
import pytest
import torch

from vqcodec.audio.decoders import load_audio_decoder
from vqcodec.audio.hn_decoder import HNDecoder
from vqcodec.audio.model import load_audio_model
from vqcodec.audio.pitch import pitch_labels
from vqcodec.training.audio_decoder import EXPORT_NAME, TrainDecoderConfig, train_audio_decoder
from vqcodec.weights.io import save_weights



def _config(tmp_path, folder, base, out, **kw) -> TrainDecoderConfig:
    settings = dict(out=str(tmp_path / out), data=str(folder), base=str(base), steps=4, batch_size=2, crop_frames=20,
                    holdout=1, val_seconds=0.5, val_stages=(1, 3), lr=1e-3, warmup_steps=1, log_every=1, val_every=2,
                    threads=1, progress=False, bf16=False, harmonic={"max_harmonics": 16})
    settings.update(kw)
    return TrainDecoderConfig(**settings)


@pytest.mark.parametrize("kind", ["hn", "istft", "hn-residual"])
def test_trains_resumes_exactly_and_exports(tmp_path, speech_folder, tiny_audio_weights, kind):
    base = tiny_audio_weights / "audio_vqvae.safetensors"
    extra = {"residual": True} if kind == "hn-residual" else {}
    kind = kind.split("-")[0]
    straight = train_audio_decoder(_config(tmp_path, speech_folder, base, "a", decoder=kind, **extra))
    train_audio_decoder(_config(tmp_path, speech_folder, base, "b", decoder=kind, stop_at_step=2, **extra))
    resumed = train_audio_decoder(_config(tmp_path, speech_folder, base, "b", decoder=kind, resume=True, **extra))
    for (k, x), y in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(x, y), k
    decoder, model_id, config = load_audio_decoder(tmp_path / "a" / EXPORT_NAME, base)
    assert config["decoder"] == kind and model_id == f"audio-decoder-{kind}-v1"
    assert isinstance(decoder, HNDecoder) == (kind == "hn")
    log = (tmp_path / "a" / "log.jsonl").read_text()
    assert '"val"' in log and ('"f0_oct"' in log) == (kind == "hn")
    # the frozen codebooks did not move
    model, _ = load_audio_model(base)
    for a, b in zip(model.quantizer.stages, straight.quantizer.stages):
        assert torch.equal(a.codebook, b.codebook)


def test_starts_from_the_base_decoder(tmp_path, speech_folder, tiny_audio_weights):
    base = tiny_audio_weights / "audio_vqvae.safetensors"
    run = train_audio_decoder(_config(tmp_path, speech_folder, base, "c", decoder="istft", steps=1, lr=1e-12))
    model, _ = load_audio_model(base)
    for (k, a), b in zip(model.decoder.state_dict().items(), run.decoder.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_the_file_refuses_another_base(tmp_path, speech_folder, tiny_audio_weights):
    base = tiny_audio_weights / "audio_vqvae.safetensors"
    train_audio_decoder(_config(tmp_path, speech_folder, base, "d", decoder="hn", steps=1))
    model, model_id = load_audio_model(base)
    with torch.no_grad():
        model.quantizer.stages[0].codebook.add_(0.01)  # other codes: the same indices mean something else
    other = tmp_path / "other.safetensors"
    save_weights(other, model.release_state(), model_id, model.cfg.to_dict())
    load_audio_decoder(tmp_path / "d" / EXPORT_NAME, base)
    with pytest.raises(ValueError, match="pass the base model it was trained on"):
        load_audio_decoder(tmp_path / "d" / EXPORT_NAME, other)


def _buzz(t: np.ndarray, f0: float) -> np.ndarray:
    """A voice-like harmonic series at f0 Hz (Harvest calls a mathematically pure sine unvoiced)."""
    return 0.3 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 20))


@pytest.mark.parametrize("method", ["harvest", "dio"])
def test_pitch_labels_of_a_tone(method):
    t = np.arange(16000) / 16000
    x = torch.from_numpy(_buzz(t, 180.0).astype(np.float32))
    f0, voiced = pitch_labels(x, method)
    assert f0.shape == voiced.shape == (200,)
    assert voiced[10:-10].all()
    assert torch.allclose(f0[10:-10], torch.full((180,), 180.0), rtol=0.01)
    silent_f0, silent_voiced = pitch_labels(torch.zeros(8000), method)
    assert not silent_voiced.any() and torch.all(silent_f0 == 100.0)


def test_harvest_labels_are_not_mains_hum():
    """Half a second of 60 Hz hum, then a 180 Hz voice over it: Harvest (from 70 Hz) leaves the hum unvoiced and
    tracks the voice; DIO from 50 Hz (the method before) calls the hum voiced at 60 Hz."""
    t = np.arange(16000) / 16000
    hum = 0.02 * np.sin(2 * np.pi * 60.0 * t)
    voice = np.where(t >= 0.5, _buzz(t, 180.0), 0.0)
    x = torch.from_numpy((hum + voice).astype(np.float32))
    f0, voiced = pitch_labels(x, "harvest")
    assert not voiced[10:90].any()
    assert voiced[110:190].all() and torch.allclose(f0[110:190], torch.full((80,), 180.0), rtol=0.01)
    dio_f0, dio_voiced = pitch_labels(x, "dio")
    assert dio_voiced[10:90].float().mean() > 0.5 and (dio_f0[10:90][dio_voiced[10:90]] < 70).all()
    with pytest.raises(ValueError, match="expected one of harvest, dio"):
        pitch_labels(x, "yin")


def test_another_pitch_method_relabels_the_cache(tmp_path, speech_folder, tiny_audio_weights):
    """A run resumed with another --pitch keeps its cached indices and audio and gets new labels."""
    base = tiny_audio_weights / "audio_vqvae.safetensors"
    train_audio_decoder(_config(tmp_path, speech_folder, base, "r", decoder="hn", steps=3, stop_at_step=1,
                                pitch="dio"))
    cache_path = tmp_path / "r" / "train_cache.pt"
    before = torch.load(cache_path, weights_only=True)
    assert before["pitch"] == "dio"
    train_audio_decoder(_config(tmp_path, speech_folder, base, "r", decoder="hn", steps=3, stop_at_step=2,
                                resume=True))  # no --pitch: the run keeps its own labels
    assert torch.load(cache_path, weights_only=True)["pitch"] == "dio"
    train_audio_decoder(_config(tmp_path, speech_folder, base, "r", decoder="hn", steps=3, resume=True,
                                pitch="harvest"))
    after = torch.load(cache_path, weights_only=True)
    assert after["pitch"] == "harvest"
    assert all(torch.equal(a, b) for a, b in zip(before["indices"], after["indices"]))
    assert all(torch.equal(a, b) for a, b in zip(before["audio"], after["audio"]))
    expected = [pitch_labels(a, "harvest") for a in before["audio"]]
    assert all(torch.equal(f, e[0]) and torch.equal(v, e[1]) for f, v, e in zip(after["f0"], after["voiced"], expected))


def _residual_loss_step(tmp_path, speech_folder, weights, name: str, **extra):
    """A decoder with a residual branch, every loss but the branch's weighed 0: one batch's backward pass ->
    (the decoder, the loss metrics)."""
    from vqcodec.training.audio_decoder import AudioDecoderTask
    from vqcodec.training.loop import RunContext

    zero = {"sc": 0.0, "logmag": 0.0, "mel": 0.0, "complex": 0.0, "wave": 0.0}
    cfg = _config(tmp_path, speech_folder, weights / "audio_vqvae.safetensors", name, decoder="hn", residual=True,
                  loss=zero, f0_weight=0.0, voicing_weight=0.0, **extra)
    task = AudioDecoderTask(cfg)
    (tmp_path / name).mkdir()
    task.build(RunContext(rank=0, world_size=1, resuming=False, out_dir=tmp_path / name))
    loss, metrics = task.loss(task.model, task.batch(0))
    loss.backward()
    return task.model.decoder, metrics


def test_residual_branch_alone_takes_the_phase_aware_loss(tmp_path, speech_folder, tiny_audio_weights):
    """With --residual, the phase-aware terms do not reach the oscillator and noise heads: with every other loss
    weighed 0, those heads get no gradient; the residual head and the shared blocks do."""
    dec, metrics = _residual_loss_step(tmp_path, speech_folder, tiny_audio_weights, "g")
    assert metrics["res_complex"] > 0 and metrics["res_rms"] > 0
    assert dec.res_head.weight.grad.abs().sum() > 0 and dec.res_gate.grad.abs().sum() > 0
    assert dec.harm_head.weight.grad is None or not dec.harm_head.weight.grad.any()
    assert dec.head.weight.grad is None or not dec.head.weight.grad.any()
    assert any(p.grad is not None and p.grad.any() for p in dec.blocks.parameters())  # the shared trunk learns


def test_detached_residual_branch_leaves_the_shared_blocks_alone(tmp_path, speech_folder, tiny_audio_weights):
    """With --residual-detach, the phase-aware terms train the residual head and gates only: the blocks get no
    gradient from them; the decoder file says so (and a file without the key reads as not detached)."""
    from vqcodec.audio.hn_decoder import HNDecoderConfig

    dec, metrics = _residual_loss_step(tmp_path, speech_folder, tiny_audio_weights, "g3", residual_detach=True)
    assert metrics["res_complex"] > 0
    assert dec.res_head.weight.grad.abs().sum() > 0 and dec.res_gate.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in dec.blocks.parameters())
    saved = dec.hn_cfg.to_dict()
    assert saved["residual_detach"] is True and HNDecoderConfig.from_dict(saved).residual_detach
    del saved["residual_detach"]
    assert not HNDecoderConfig.from_dict(saved).residual_detach
