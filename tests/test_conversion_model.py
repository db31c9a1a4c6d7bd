"""The voice-conversion model (vqcodec.audio.conversion) and its trainer (vqcodec.training.conversion), on a tiny
config and synthetic speech: the content rate, chunk-exact decoding, pitch re-targeting, the FiLM start, and a
training run that resumes bit-exactly and exports a model that converts."""
import math

import pytest
import soundfile as sf
import torch

from vqcodec.audio.conversion import (ConversionConfig, ConversionDecoder, ConversionModel, load_conversion_model,
                                      pitch_stats, retarget_f0)
from vqcodec.audio.harmonic import HarmonicConfig
from vqcodec.testing import speechlike
from vqcodec.training.conversion import (CACHE, EXPORT_NAME, SpeakerAdversary, TrainConversionConfig,
                                         _WithAdversary, reverse_gradient, train_conversion)

TINY = dict(hop=80, content_stride=2, latent_dim=8, num_codes=16, width=32, mlp_ratio=2.0, kernel=3, enc_blocks=1,
            dec_blocks=1, ref_blocks=1, enc_stft_hop=40, enc_n_fft=80, istft_hop=40, istft_n_fft=80, speaker_dim=8,
            ref_n_fft=256, ref_hop=64, ref_n_mels=16)


def _cfg(**kw) -> ConversionConfig:
    return ConversionConfig(**{**TINY, "harmonic": HarmonicConfig(max_harmonics=8), **kw})


def _pitch(b: int, m: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(m, dtype=torch.float32)
    f0 = 140 + 40 * torch.sin(t / 7 + torch.rand(b, 1, generator=g) * 6) + 5 * torch.rand(b, m, generator=g)
    voiced = (torch.sin(t / 5) > -0.6).float().expand(b, m).clone()
    return f0, voiced


def test_shapes_and_content_rate():
    torch.manual_seed(0)
    cfg = _cfg()
    model = ConversionModel(cfg).eval()
    assert cfg.content_hop == 160 and math.isclose(cfg.bits_per_second, 100 * 4)
    assert math.isclose(ConversionConfig().bits_per_second, 225.0)
    x = torch.from_numpy(speechlike(0.3, seed=1)[:, 0])[: 30 * 160][None].repeat(2, 1)  # 4800 samples
    idx = model.encode_content(x)
    assert idx.shape == (2, 30, 1) and idx.dtype == torch.int64
    assert int(idx.min()) >= 0 and int(idx.max()) < cfg.num_codes
    with pytest.raises(ValueError, match="pad the signal"):
        model.encode_content(x[:, :-80])
    emb = model.embed_speaker(x[:, :3000])
    assert emb.shape == (2, cfg.speaker_dim) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    f0, voiced = _pitch(2, x.shape[1] // 80)
    y = model.decode(idx, emb, f0, voiced)
    assert y.shape == x.shape and bool(torch.isfinite(y).all())
    train = ConversionModel(cfg)
    y2, q = train(x, x[:, :2000], f0, voiced, torch.tensor([2000, 1500]), torch.zeros(2, 30, dtype=torch.long))
    assert y2.shape == x.shape and q.indices.shape == (60, 1)
    with pytest.raises(ValueError, match="ctrl_hop"):
        ConversionConfig(hop=100)


def test_residual_content_stages():
    """content_stages=2: two indices per content frame, the rate doubles, the second stage quantizes what the
    first left (so the sum is nearer the latent), and decoding takes both."""
    torch.manual_seed(0)
    cfg = _cfg(content_stages=2)
    assert math.isclose(cfg.bits_per_second, 2 * 100 * 4)
    model = ConversionModel(cfg)
    x = torch.from_numpy(speechlike(0.3, seed=1)[:, 0])[: 30 * 160][None].repeat(2, 1)
    f0, voiced = _pitch(2, x.shape[1] // 80)
    for _ in range(3):  # k-means seeds both codebooks on the first batch, EMA moves them
        model(x, x[:, :2000], f0, voiced)
    model.eval()
    idx = model.encode_content(x)
    assert idx.shape == (2, 30, 2) and int(idx.max()) < cfg.num_codes
    with torch.no_grad():
        z = model.encoder(x).reshape(60, -1).float()
    one = model.quantizer.lookup(idx[..., 0].reshape(-1))
    both = model.content_lookup(idx).reshape(60, -1)
    with torch.no_grad():
        assert float((z - both).square().sum()) < float((z - one).square().sum())
    emb = model.embed_speaker(x[:, :3000])
    assert not torch.equal(model.decode(idx, emb, f0, voiced),
                           model.decode(torch.stack([idx[..., 0], torch.zeros_like(idx[..., 0])], -1), emb, f0, voiced))
    with pytest.raises(ValueError, match="one per content stage"):
        model.content_lookup(idx[..., :1])
    with pytest.raises(ValueError, match="content_stages"):
        ConversionConfig(content_stages=0)


@pytest.mark.parametrize("cuts", [[7], [3, 11, 12], [1, 2, 19]])
def test_chunks_with_halos_equal_one_pass(cuts):
    torch.manual_seed(0)
    dec = ConversionDecoder(_cfg(env_init=-2.0)).eval()
    with torch.no_grad():
        for lin in dec.film:  # a speaker that matters
            lin.weight.normal_(0, 0.5)
    n, per = 20, dec.conv_cfg.content_hop // 80
    z = torch.randn(2, n, dec.conv_cfg.latent_dim)
    spk = torch.nn.functional.normalize(torch.randn(2, dec.conv_cfg.speaker_dim), dim=-1)
    f0, voiced = _pitch(2, n * per)
    with torch.no_grad():
        whole = dec(z, spk, f0, voiced)
        left, right = dec.context()
        parts, phase = [], None
        for a, b in zip([0] + cuts, cuts + [n]):
            lo, hi = max(0, a - left), min(n, b + right)
            y, phase = dec.render_span(z[:, lo:hi], spk, f0[:, lo * per:hi * per], voiced[:, lo * per:hi * per],
                                       (a - lo, b - lo), phase, start=lo * dec.conv_cfg.content_hop)
            parts.append(y)
    # equal up to float rounding: on some CPUs (AVX-512 kernels) a shorter span's convolutions round the last bit
    # otherwise (seen: 1 ulp, 1.2e-7 of outputs up to 26); a halo too short would differ by far more
    torch.testing.assert_close(torch.cat(parts, 1), whole, rtol=0, atol=1e-6 * float(whole.abs().max()))
    assert whole.abs().max() > 0.05  # the harmonic branch is audible, so the test sees its phase


def test_retarget_f0_moves_the_voiced_stats_onto_the_target():
    f0, voiced = _pitch(3, 400, seed=2)
    source = pitch_stats(f0, voiced)
    target = (torch.tensor([math.log2(220.0), math.log2(95.0), 7.5]), torch.tensor([0.3, 0.12, 0.05]))
    out = retarget_f0(f0, voiced, source, target)
    mean, std = pitch_stats(out, voiced, floor=0.0)
    assert torch.allclose(mean, target[0], atol=1e-5) and torch.allclose(std, target[1], atol=1e-5)
    same = retarget_f0(f0, voiced, source, source)
    assert torch.allclose(same, f0, rtol=1e-5)


def test_film_starts_at_zero():
    torch.manual_seed(0)
    dec = ConversionDecoder(_cfg(env_init=-2.0)).eval()
    z = torch.randn(1, 10, 8)
    f0, voiced = _pitch(1, 20)
    a, b = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    with torch.no_grad():
        assert torch.equal(dec(z, a[None], f0, voiced), dec(z, b[None], f0, voiced))
        dec.film[0].weight[0, 0] = 1.0
        assert not torch.equal(dec(z, a[None], f0, voiced), dec(z, b[None], f0, voiced))


@pytest.fixture(scope="module")
def speech_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speakers")
    for k, spk in enumerate(("11", "22", "33")):
        for u in range(3):
            sf.write(folder / f"{spk}-1-{u}.wav", speechlike(0.9 + 0.1 * u, 16000, 1, seed=10 * k + u), 16000)
    return folder


def _train_config(tmp_path, folder, out, **kw) -> TrainConversionConfig:
    settings = dict(out=str(tmp_path / out), data=str(folder), steps=4, batch_size=2, crop_frames=20, lr=1e-3,
                    warmup_steps=1, holdout_per_speaker=1, ref_seconds=0.5, val_seconds=0.5, val_utterances=2,
                    table_seconds=0.5, log_every=1, val_every=2, threads=1, progress=False, bf16=False,
                    model={**TINY, "harmonic": {"max_harmonics": 8}},
                    loss={"resolutions": [[128, 32, 16], [256, 64, 32], [512, 128, 64]]})
    settings.update(kw)
    return TrainConversionConfig(**settings)


def test_trains_resumes_exactly_exports_and_converts(tmp_path, speech_folder):
    straight = train_conversion(_train_config(tmp_path, speech_folder, "a"))
    train_conversion(_train_config(tmp_path, speech_folder, "b", stop_at_step=2))
    resumed = train_conversion(_train_config(tmp_path, speech_folder, "b", resume=True))
    for (k, x), y in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(x, y), k
    log = (tmp_path / "a" / "log.jsonl").read_text()
    assert '"mel_own"' in log and '"mel_swap"' in log and '"usage"' in log

    model, model_id = load_conversion_model(tmp_path / "a" / EXPORT_NAME)
    assert model_id == "audio-conversion-v3" and model.cfg.speakers == ("11", "22", "33")
    assert model.speaker_embeddings.shape == (3, 8) and model.speaker_f0.shape == (3, 2)
    assert torch.allclose(model.speaker_embeddings.norm(dim=-1), torch.ones(3), atol=1e-2)  # float16 file
    assert bool(((model.speaker_f0[:, 0] > 6) & (model.speaker_f0[:, 0] < 8)).all())  # 64..256 Hz
    x = torch.from_numpy(speechlike(1.0, 16000, 1, seed=99)[:, 0])[: 16000 - 240]  # not whole content frames
    from vqcodec.audio.pitch import pitch_labels

    f0, voiced = pitch_labels(x)
    y = model.convert(x[None], f0[None], voiced[None].float(), "33")
    assert y.shape == (1, x.numel()) and bool(torch.isfinite(y).all())
    with pytest.raises(ValueError, match="11, 22, 33"):
        model.convert(x[None], f0[None], voiced[None].float(), "44")


def test_excluded_speakers_are_not_trained_or_exported(tmp_path, speech_folder):
    train_conversion(_train_config(tmp_path, speech_folder, "c", steps=1, exclude_speakers=("22",)))
    cache = torch.load(tmp_path / "c" / CACHE, weights_only=True)
    assert set(cache["speakers"]) == {"11", "33"} and not any(f.startswith("22-") for f in cache["files"])
    assert len(cache["files"]) == 4  # 3 utterances each, 1 held out
    model, _ = load_conversion_model(tmp_path / "c" / EXPORT_NAME)
    assert model.cfg.speakers == ("11", "33")
    with pytest.raises(ValueError, match="no training utterances left"):
        train_conversion(_train_config(tmp_path, speech_folder, "d", steps=1, exclude_speakers=("11", "22", "33")))


def test_init_from_a_one_stage_model_adds_a_fresh_content_stage(tmp_path, speech_folder):
    """--init-from: a 2-stage run starts from a 1-stage export (every tensor but the new stage's, the speaker
    table left out), and converts; a file of another shape is refused with what to do."""
    train_conversion(_train_config(tmp_path, speech_folder, "one", steps=2))
    src, _ = load_conversion_model(tmp_path / "one" / EXPORT_NAME)
    two = {**TINY, "harmonic": {"max_harmonics": 8}, "content_stages": 2}
    cfg = _train_config(tmp_path, speech_folder, "two", steps=1, lr=1e-12, model=two,
                        init_from=str(tmp_path / "one" / EXPORT_NAME))
    trained = train_conversion(cfg)
    assert torch.equal(trained.encoder.merge.weight, src.encoder.merge.weight)  # lr 1e-12: as loaded (float16)
    moved = (trained.quantizer.codebook - src.quantizer.codebook).abs().mean() / src.quantizer.codebook.abs().mean()
    assert moved < 0.1  # stage 1 as loaded, moved a little by one step's EMA update (a fresh k-means: ~1)
    model, _ = load_conversion_model(tmp_path / "two" / EXPORT_NAME)
    assert model.cfg.content_stages == 2 and model.cfg.speakers == ("11", "22", "33")
    x = torch.from_numpy(speechlike(0.5, 16000, 1, seed=7)[:, 0])[: 8000]
    from vqcodec.audio.pitch import pitch_labels

    f0, voiced = pitch_labels(x)
    assert bool(torch.isfinite(model.convert(x[None], f0[None], voiced[None].float(), "22")).all())
    wide = {**TINY, "harmonic": {"max_harmonics": 8}, "width": 16}
    with pytest.raises(ValueError, match="does not match this run's model"):
        train_conversion(_train_config(tmp_path, speech_folder, "bad", steps=1, model=wide,
                                       init_from=str(tmp_path / "one" / EXPORT_NAME)))


def test_reverse_gradient_negates_only_the_gradient():
    x = torch.randn(3, 4, requires_grad=True)
    y = reverse_gradient(x)
    assert torch.equal(y, x)
    (y * torch.arange(4.0)).sum().backward()
    assert torch.equal(x.grad, -torch.arange(4.0).expand(3, 4))


def test_speaker_adversary_pushes_the_encoder_against_the_classifier():
    """The adversary's cross-entropy reaches the encoder reversed: the encoder's gradient through the
    gradient-reversal layer is the negation of the plain one, and the classifier's own gradient is unchanged."""
    torch.manual_seed(0)
    model = ConversionModel(_cfg(content_stages=2)).eval()  # eval: no codebook updates between the passes
    wrapped = _WithAdversary(model, SpeakerAdversary(model.cfg.latent_dim, 3))
    x = torch.from_numpy(speechlike(0.4, 16000, 2, seed=5).T.copy()).float()[:, :6400]
    f0, voiced = _pitch(2, 6400 // model.cfg.harmonic.ctrl_hop)
    target = torch.tensor([0, 2])
    grads = []
    for reverse in (True, False):
        wrapped.zero_grad()
        if reverse:
            y, q, logits = wrapped(x, x, f0, voiced)
            assert y.shape == x.shape and logits.shape == (2, 3)
        else:
            _, q = model(x, x, f0, voiced)
            logits = wrapped.adversary(q.quantized.reshape(2, -1, model.cfg.latent_dim))
        torch.nn.functional.cross_entropy(logits, target).backward()
        grads.append((model.encoder.merge.weight.grad.clone(), wrapped.adversary.out.weight.grad.clone()))
    (enc_r, adv_r), (enc_p, adv_p) = grads
    assert enc_p.abs().sum() > 0 and torch.allclose(enc_r, -enc_p, atol=1e-7)
    assert torch.allclose(adv_r, adv_p, atol=1e-7)


def test_a_run_with_a_speaker_adversary_resumes_exactly_and_exports_no_adversary(tmp_path, speech_folder):
    straight = train_conversion(_train_config(tmp_path, speech_folder, "adv_a", adversary=0.5))
    train_conversion(_train_config(tmp_path, speech_folder, "adv_b", adversary=0.5, stop_at_step=2))
    resumed = train_conversion(_train_config(tmp_path, speech_folder, "adv_b", adversary=0.5, resume=True))
    assert isinstance(straight, ConversionModel)
    for (k, x), y in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(x, y), k
    log = (tmp_path / "adv_a" / "log.jsonl").read_text()
    assert '"adversary_ce"' in log and '"adversary_acc"' in log
    from vqcodec.training.checkpoint import load_checkpoint

    keys = load_checkpoint(tmp_path / "adv_a" / "checkpoint.pt")["model"].keys()
    assert any(k.startswith("adversary.") for k in keys) and any(k.startswith("model.encoder.") for k in keys)
    from vqcodec.weights.io import load_weights

    tensors, _, _ = load_weights(tmp_path / "adv_a" / EXPORT_NAME)
    assert not any("adversary" in k for k in tensors)
    model, _ = load_conversion_model(tmp_path / "adv_a" / EXPORT_NAME)
    assert model.cfg.speakers == ("11", "22", "33")
    train_conversion(_train_config(tmp_path, speech_folder, "adv_off", steps=1))
    assert '"adversary_ce"' not in (tmp_path / "adv_off" / "log.jsonl").read_text()
    with pytest.raises(ValueError, match="adversary must be >= 0"):
        _train_config(tmp_path, speech_folder, "neg", adversary=-1.0).check()


def test_pitch_tracker_is_recorded_and_a_resume_with_another_relabels(tmp_path, speech_folder):
    """The exported model names the tracker its pitch inputs came from (files before the field: DIO); a run
    resumed with another --pitch keeps its cached audio and gets new labels."""
    from vqcodec.audio.pitch import pitch_labels
    from vqcodec.training.conversion import _to_float

    train_conversion(_train_config(tmp_path, speech_folder, "p", steps=3, stop_at_step=1, pitch="dio"))
    before = torch.load(tmp_path / "p" / CACHE, weights_only=True)
    assert before["pitch"] == "dio"
    assert load_conversion_model(tmp_path / "p" / EXPORT_NAME)[0].cfg.pitch == "dio"
    train_conversion(_train_config(tmp_path, speech_folder, "p", steps=3, stop_at_step=2, resume=True))
    assert torch.load(tmp_path / "p" / CACHE, weights_only=True)["pitch"] == "dio"  # no --pitch: its own
    assert load_conversion_model(tmp_path / "p" / EXPORT_NAME)[0].cfg.pitch == "dio"
    train_conversion(_train_config(tmp_path, speech_folder, "p", steps=3, resume=True, pitch="harvest"))
    after = torch.load(tmp_path / "p" / CACHE, weights_only=True)
    assert after["pitch"] == "harvest" and all(torch.equal(a, b) for a, b in zip(before["audio"], after["audio"]))
    assert all(torch.equal(f, pitch_labels(_to_float(a), "harvest")[0]) for f, a in zip(after["f0"], after["audio"]))
    assert load_conversion_model(tmp_path / "p" / EXPORT_NAME)[0].cfg.pitch == "harvest"
    old = ConversionConfig().to_dict()
    del old["pitch"]
    assert ConversionConfig.from_dict(old).pitch == "dio"
    with pytest.raises(ValueError, match="pitch must be"):
        ConversionConfig(pitch="yin")
