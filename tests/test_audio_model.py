"""Audio VQ-VAE: shapes, exact lengths, receptive fields, quantizer-dropout prefixes, release round trip;
plus its data sampler, losses and metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vqcodec.audio.data import RandomAudioCrops, split_holdout
from vqcodec.audio.model import AudioModelConfig, AudioVQVAE, load_audio_model
from vqcodec.audio.spectral import istft_exact, stft_frames
from vqcodec.training.audio_losses import AudioLoss
from vqcodec.weights.io import save_weights

FAMILIES = [("stft", "istft"), ("stft", "wave"), ("wave", "istft"), ("wave", "wave")]


def _cfg(encoder="stft", decoder="istft", **kw) -> AudioModelConfig:
    base = dict(hop=40, ratios=(2, 4, 5), enc_stft_hop=20, enc_n_fft=80, istft_hop=10, istft_n_fft=40,
                latent_dim=8, num_stages=4, num_codes=16, width=16, mlp_ratio=2.0, kernel=5, enc_blocks=2,
                dec_blocks=2, wave_channels=2, encoder=encoder, decoder=decoder)
    base.update(kw)
    return AudioModelConfig(**base)


def _model(encoder="stft", decoder="istft", seed=0, **kw) -> AudioVQVAE:
    torch.manual_seed(seed)
    model = AudioVQVAE(_cfg(encoder, decoder, **kw))
    model.train()
    model(torch.randn(4, 40 * 30) * 0.1)  # k-means initialisation of the codebooks on a first batch
    return model.eval()


# ------------------------------------------------------------------------------------------ shapes

@pytest.mark.parametrize("encoder,decoder", FAMILIES)
def test_shapes_of_every_family(encoder, decoder):
    model = _model(encoder, decoder)
    x = torch.randn(3, 40 * 9) * 0.1
    y, q = model(x, torch.tensor([1, 2, 4]))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert q.indices.shape == (3 * 9, 4)
    idx = model.encode_indices(x, num_stages=3)
    assert idx.shape == (3, 3, 9) and idx.dtype == torch.int64
    out = model.decode_indices(idx)
    assert out.shape == x.shape and out.abs().max() <= 1.0


@pytest.mark.parametrize("encoder,decoder", FAMILIES)
@pytest.mark.parametrize("frames", [1, 2, 7, 13])
def test_output_length_is_frames_times_hop(encoder, decoder, frames):
    model = _model(encoder, decoder)
    x = torch.randn(1, 40 * frames) * 0.1
    assert model.encode_indices(x).shape[-1] == frames
    assert model.decode_indices(model.encode_indices(x)).shape[-1] == 40 * frames
    assert model(x)[0].shape[-1] == 40 * frames


def test_default_model_length_and_rate():
    model = AudioVQVAE().eval()
    assert model.cfg.frame_rate == 50 and model.cfg.kbps(6) == pytest.approx(2.7)
    idx = torch.randint(0, 512, (2, 3, 11))
    assert model.decode_indices(idx).shape == (2, 11 * 320)


def test_length_not_a_multiple_of_the_hop_is_refused():
    model = _model()
    with pytest.raises(ValueError, match="multiple of 40"):
        model.encode_indices(torch.zeros(1, 41))


def test_config_is_checked():
    with pytest.raises(ValueError, match="multiply"):
        _cfg(ratios=(2, 4, 4))
    with pytest.raises(ValueError, match="divide"):
        _cfg(istft_hop=15)
    with pytest.raises(ValueError, match="encoder must be"):
        _cfg(encoder="mel")


def test_stft_framing_is_exactly_invertible():
    window = torch.hann_window(64)
    x = torch.randn(2, 16 * 9)
    spec = stft_frames(x, 64, 16, window)
    assert spec.shape == (2, 33, 9)
    assert torch.allclose(istft_exact(spec, 64, 16, window), x, atol=1e-5)


# ------------------------------------------------------------------------------------------ receptive fields

def _reach(fn, inp: torch.Tensor, out_slice) -> tuple[int, int]:
    """First and last index along dim 1 of `inp` that the outputs fn(inp)[out_slice] have a gradient from."""
    inp = inp.clone().requires_grad_()
    (grad,) = torch.autograd.grad(fn(inp)[out_slice].sum(), inp)
    hit = (grad[0].reshape(grad.shape[1], -1) != 0).any(1).nonzero()[:, 0]
    return int(hit.min()), int(hit.max())


@pytest.mark.parametrize("encoder,decoder", FAMILIES)
@pytest.mark.parametrize("causal", [False, True])
def test_encoder_receptive_field_is_exact(encoder, decoder, causal):
    """Samples outside the claimed field leave the latent bit-identical; the field is tight (the
    gradient reaches both of its ends)."""
    model = _model(encoder, decoder, causal=causal)
    hop, n, f = 40, 60, 30
    left, right = model.encoder_context()
    x = torch.randn(1, hop * n) * 0.1
    first, last = f * hop - left, (f + 1) * hop + right - 1  # the claimed range of samples frame f reads
    assert 0 < first and last < hop * n - 1, "the test signal must extend beyond the claimed field"
    assert _reach(model.encoder, x, (0, f)) == (first, last)
    base = model.encoder(x)[0, f]
    y = x.clone()
    y[0, :first] = torch.randn(first)  # everything outside the field, far and near, replaced
    y[0, last + 1 :] = torch.randn(hop * n - last - 1)
    assert torch.equal(model.encoder(y)[0, f], base)
    y[0, f * hop : (f + 1) * hop] += 0.5  # the frame's own samples
    assert not torch.equal(model.encoder(y)[0, f], base)


@pytest.mark.parametrize("encoder,decoder", FAMILIES)
@pytest.mark.parametrize("causal", [False, True])
def test_decoder_receptive_field_is_exact(encoder, decoder, causal):
    """Latent frames outside the claimed field leave a frame's samples bit-identical; the field is tight."""
    model = _model(encoder, decoder, causal=causal)
    hop, n, f = 40, 40, 20
    left, right = model.decoder_context()
    if causal:
        assert right == (1 if decoder == "istft" else 0)  # the inverse STFT overlaps into the next frame
    z = torch.randn(1, n, 8)
    part = (0, slice(f * hop, (f + 1) * hop))
    assert 0 < f - left and f + right < n - 1
    assert _reach(model.decoder, z, part) == (f - left, f + right)
    base = model.decoder(z)[part]
    w = z.clone()
    w[0, : f - left] = torch.randn(f - left, 8)
    w[0, f + right + 1 :] = torch.randn(n - f - right - 1, 8)
    assert torch.equal(model.decoder(w)[part], base)
    w[0, f] += 0.5
    assert not torch.equal(model.decoder(w)[part], base)


def test_default_receptive_field_is_under_a_second():
    model = AudioVQVAE()
    left, right = model.encoder_context()
    dl, dr = model.decoder_context()
    assert max(left, right) < 16000 and max(dl, dr) * 320 < 16000


# ------------------------------------------------------------------------------------------ quantizer dropout

@pytest.mark.parametrize("decoder", ["istft", "wave"])
def test_every_stage_prefix_decodes_like_the_training_pass(decoder):
    model = _model("stft", decoder)
    x = torch.randn(2, 40 * 12) * 0.1
    idx = model.encode_indices(x)
    outs = []
    with torch.no_grad():
        for s in range(1, 5):
            y_train, _ = model(x, s)
            y_code = model.decode_indices(idx[:, :s])
            assert torch.allclose(y_train.clamp(-1, 1), y_code, atol=1e-5), f"prefix of {s} stages"
            outs.append(y_code)
        # per-clip stage counts in one batch: each clip as if decoded alone with its own prefix
        mixed, _ = model(x, torch.tensor([1, 3]))
    assert torch.allclose(mixed[0].clamp(-1, 1), outs[0][0], atol=1e-5)
    assert torch.allclose(mixed[1].clamp(-1, 1), outs[2][1], atol=1e-5)
    assert not torch.allclose(outs[0], outs[3], atol=1e-4), "more stages must change the reconstruction"


def test_training_pass_updates_codebooks_only_in_train_mode():
    model = _model()
    before = model.quantizer.stages[0].codebook.clone()
    model(torch.randn(2, 400) * 0.1)
    assert torch.equal(model.quantizer.stages[0].codebook, before)
    model.train()(torch.randn(2, 400) * 0.1)
    assert not torch.equal(model.quantizer.stages[0].codebook, before)


# ------------------------------------------------------------------------------------------ release weights

@pytest.mark.parametrize("encoder,decoder", [("stft", "istft"), ("wave", "wave")])
def test_release_state_round_trip(tmp_path, encoder, decoder):
    model = _model(encoder, decoder)
    state = model.release_state()
    assert not any(k.endswith(("ema_count", "ema_sum", "steps_unused", "initialized")) for k in state)
    path = tmp_path / "audio.safetensors"
    save_weights(path, state, "audio-test", model.cfg.to_dict())
    loaded, model_id = load_audio_model(path)
    assert model_id == "audio-test" and loaded.cfg == model.cfg and not loaded.training
    x = torch.randn(1, 40 * 10) * 0.1
    idx = model.encode_indices(x)
    assert torch.equal(loaded.encode_indices(x), idx)
    assert torch.equal(loaded.decode_indices(idx), model.decode_indices(idx))


def test_release_with_a_mismatched_config_is_refused(tmp_path):
    model = _model()
    path = tmp_path / "audio.safetensors"
    save_weights(path, model.release_state(), "audio-test", {**model.cfg.to_dict(), "width": 24})
    with pytest.raises(ValueError, match="do not match"):
        load_audio_model(path)


# ------------------------------------------------------------------------------------------ data

def test_crops_resume_exactly_and_respect_length():
    clips = [torch.linspace(-0.5, 0.5, n) for n in (100, 5000, 30)]
    a = RandomAudioCrops(clips, 400, seed=3)
    a.batch(4)
    state = a.state()
    first = a.batch(5)
    b = RandomAudioCrops(clips, 400, seed=99)
    b.load_state(state)
    assert first.shape == (5, 400) and torch.equal(b.batch(5), first)
    assert first.abs().max() <= 0.99


def test_holdout_split_is_by_name_and_stable(tmp_path):
    from pathlib import Path

    files = [Path(f"/data/spk{i:03d}.flac") for i in range(50)]
    train, held = split_holdout(files, 5)
    assert len(held) == 5 and not set(train) & set(held) and len(train) == 45
    train2, held2 = split_holdout(list(reversed(files)) + [Path("/data/new.flac")], 5)
    assert set(held2) - {Path("/data/new.flac")} <= set(held) | set(held2)
    assert split_holdout(files, 5)[1] == held
    with pytest.raises(ValueError, match="at least one"):
        split_holdout(files, 50)


# ------------------------------------------------------------------------------------------ losses

def test_loss_is_zero_for_a_perfect_reconstruction_and_sees_phase():
    torch.manual_seed(0)
    loss = AudioLoss()
    t = torch.arange(16000) / 16000
    x = (0.3 * torch.sin(2 * math.pi * 440 * t) * torch.hann_window(16000))[None]
    total, terms = loss(x, x.clone())
    assert float(total) == pytest.approx(0.0, abs=1e-6)
    # the same magnitudes with the phase turned by 90 degrees (sin -> cos): magnitude terms barely move,
    # the complex term does
    y = (0.3 * torch.cos(2 * math.pi * 440 * t) * torch.hann_window(16000))[None]
    _, turned = loss(x, y)
    _, halved = loss(x, 0.5 * x)  # a pure level error: all magnitude terms see it
    assert turned["sc"] < 0.1 * halved["sc"] and turned["mel"] < 0.1 * halved["mel"]
    assert turned["complex"] > 10 * halved["complex"]


# ------------------------------------------------------------------------------------------ metrics

def test_alignment_finds_a_codec_delay():
    from vqcodec.metrics.audio import align, score

    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000) * 0.1
    delayed = np.concatenate([np.zeros(123), x])[:16000]
    r, d, lag = align(x, delayed, 400)
    assert lag == 123 and np.allclose(r, d)
    s = score(x, delayed, max_lag_s=0.05)
    assert s["lag_samples"] == 123 and s["stoi"] > 0.99 and s["mel_distance"] < 1e-3
