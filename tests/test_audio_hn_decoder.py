"""The harmonic-plus-noise decoder: chunked rendering with halos equals one whole pass up to float rounding (the
oscillator phase carried from chunk to chunk; see `_assert_same_samples`), its receptive field is what `input_range` says, and a file
of its weights round-trips."""
import numpy as np
import pytest
import torch

from vqcodec.audio.decoders import build_audio_decoder, load_audio_decoder
from vqcodec.audio.harmonic import HarmonicConfig
from vqcodec.audio.hn_decoder import HNDecoder, HNDecoderConfig
from vqcodec.audio.model import AudioModelConfig
from vqcodec.testing import TINY_AUDIO_MODEL
from vqcodec.weights.io import save_weights


def _decoder(hop: int = 160, noise: str = "filtered", residual: bool = False) -> HNDecoder:
    torch.manual_seed(0)
    model = AudioModelConfig(**dict(TINY_AUDIO_MODEL, hop=hop, ratios=(4, 8, 5) if hop == 160 else (4, 4, 5)))
    dec = HNDecoder(HNDecoderConfig(model, HarmonicConfig(max_harmonics=16), env_init=-2.0, noise=noise,
                                    residual=residual)).eval()
    with torch.no_grad():  # a voiced, pitched output: harmonics well above the noise branch
        dec.harm_head.bias.view(dec.ctrl_sub, -1)[:, 1] = 3.0
        if residual:  # gates that differ by stage count, all audible
            dec.res_gate.copy_(torch.linspace(-0.04, 0.04, dec.res_gate.numel()))  # logits -1..1
    return dec


def _assert_same_samples(parts: torch.Tensor, whole: torch.Tensor) -> None:
    """Chunked output equals the whole pass up to float rounding: bit for bit where the convolution kernels round
    alike for every span length (AVX2), within 1 ulp of the largest sample where they do not (AVX-512: seen
    1.2e-7 of samples up to 26). A halo too short, or a phase not carried, differs by orders of magnitude more."""
    torch.testing.assert_close(parts, whole, rtol=0, atol=1e-6 * max(1.0, float(whole.abs().max())))


def _context(dec: HNDecoder) -> tuple[int, int]:
    f, hop = 1000, dec.cfg.hop
    lo, hi = dec.input_range(f * hop, (f + 1) * hop - 1)
    return f - lo, hi - f


@pytest.mark.parametrize("noise", ["filtered", "istft"])
@pytest.mark.parametrize("cuts", [[7], [3, 11, 12], [1, 2, 19]])
def test_chunks_with_halos_equal_one_pass(cuts, noise):
    dec = _decoder(noise=noise)
    z = torch.randn(2, 20, dec.cfg.latent_dim)
    with torch.no_grad():
        whole = dec(z)
        left, right = _context(dec)
        parts, phase = [], None
        for a, b in zip([0] + cuts, cuts + [20]):
            lo, hi = max(0, a - left), min(20, b + right)
            y, phase = dec.render_span(z[:, lo:hi], (a - lo, b - lo), phase, start_frame=lo)
            parts.append(y)
    _assert_same_samples(torch.cat(parts, 1), whole)
    assert whole.abs().max() > 0.05  # the harmonic branch is audible, so the test can see its phase


@pytest.mark.parametrize("cuts", [[7], [3, 11, 12]])
def test_residual_branch_chunks_equal_one_pass_and_follow_the_stage_count(cuts):
    dec = _decoder(residual=True)
    z = torch.randn(2, 20, dec.cfg.latent_dim)
    stages = torch.randint(0, dec.cfg.num_stages + 1, (2, 20))
    with torch.no_grad():
        whole = dec(z, stages)
        left, right = _context(dec)
        parts, phase = [], None
        for a, b in zip([0] + cuts, cuts + [20]):
            lo, hi = max(0, a - left), min(20, b + right)
            y, phase = dec.render_span(z[:, lo:hi], (a - lo, b - lo), phase, start_frame=lo, stages=stages[:, lo:hi])
            parts.append(y)
        _assert_same_samples(torch.cat(parts, 1), whole)
        assert not torch.equal(dec(z, (stages + 1).clamp(max=dec.cfg.num_stages)), whole)  # the gate reads them
        h = dec.hidden(z)
        dec.res_gate[0] = -2.0  # a stage count whose gate is shut (logit -50) renders no residual
        assert float(dec.residual_branch(h, torch.zeros_like(stages)).abs().max()) < 1e-9
        assert float(dec.residual_branch(h, torch.ones_like(stages)).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="stage count"):
        dec(z)
    config = dec.hn_cfg.to_dict()
    assert config["residual"] and HNDecoderConfig.from_dict(config) == dec.hn_cfg
    assert "residual" not in _decoder().hn_cfg.to_dict()  # files without the branch keep their config


@pytest.mark.parametrize("points", [1, 7, 40])
def test_oscillator_spans_do_not_change_the_samples(points, monkeypatch):
    """`render_span` runs the oscillator bank SYNTH_POINTS control points at a time (bounded memory): any
    span length gives the samples of `render`'s single oscillator pass, with the phase carried across a cut."""
    import vqcodec.audio.hn_decoder as hn
    monkeypatch.setattr(hn, "SYNTH_POINTS", points)
    dec = _decoder()
    z = torch.randn(2, 20, dec.cfg.latent_dim)
    with torch.no_grad():
        whole, _ = dec.render(z)
        head, phase = dec.render_span(z, (0, 3))
        tail, _ = dec.render_span(z, (3, 20), phase)
    assert torch.equal(torch.cat([head, tail], 1), whole)


def test_receptive_field_is_what_input_range_says():
    """Ahead, the samples of frame f read frames up to f + right; behind, frames up to f - left and, through
    the oscillators' phase (which chunked rendering carries), every earlier frame's f0."""
    dec = _decoder()
    left, right = _context(dec)
    z = torch.randn(1, 30, dec.cfg.latent_dim)
    f, hop = 15, dec.cfg.hop

    def frame_f(w: torch.Tensor) -> torch.Tensor:
        return dec(w)[0, f * hop:(f + 1) * hop]

    def bumped(g: int) -> torch.Tensor:
        w = z.clone()
        w[:, g] += 1.0
        return w

    with torch.no_grad():
        ref = frame_f(z)
        assert torch.equal(frame_f(bumped(f + right + 1)), ref)  # just past the field: no effect
        assert not torch.equal(frame_f(bumped(f + right)), ref)  # its edge: an effect
        assert not torch.equal(frame_f(bumped(0)), ref)  # the phase remembers the start
        # ... but given the phase at frame f, nothing before frame f - left matters
        _, phase = dec.render_span(z, (0, f))
        assert torch.equal(dec.render_span(z[:, f - left:], (left, left + 1), phase, f - left)[0][0], ref)


def test_weights_file_round_trip(tmp_path):
    dec = _decoder(hop=80)
    config = {"decoder": "hn", **dec.hn_cfg.to_dict(), "base_model_id": "tiny", "base_weights_hash": "00"}
    save_weights(tmp_path / "d.safetensors", dec.state_dict(), "audio-decoder-hn-test", config)
    loaded, model_id, _ = load_audio_decoder(tmp_path / "d.safetensors")
    assert model_id == "audio-decoder-hn-test" and isinstance(loaded, HNDecoder)
    z = torch.randn(1, 12, dec.cfg.latent_dim)
    with torch.no_grad():
        assert torch.equal(loaded(z), dec(z))
    with pytest.raises(ValueError, match="unknown decoder kind"):
        build_audio_decoder({"decoder": "vocoder9000"})


def test_loaded_decoders_are_kept_until_their_file_changes(tmp_path):
    import os

    dec = _decoder(hop=80)
    config = {"decoder": "hn", **dec.hn_cfg.to_dict(), "base_model_id": "tiny", "base_weights_hash": "00"}
    path = tmp_path / "d.safetensors"
    save_weights(path, dec.state_dict(), "audio-decoder-hn-a", config)
    first, _, cfg = load_audio_decoder(path)
    cfg["decoder"] = "changed by a caller"  # the kept config is not the caller's
    again, model_id, cfg2 = load_audio_decoder(path)
    assert again is first and model_id == "audio-decoder-hn-a" and cfg2["decoder"] == "hn"
    save_weights(path, dec.state_dict(), "audio-decoder-hn-b", config)
    os.utime(path, ns=(1, 1))  # another file at the same path: read again
    assert load_audio_decoder(path)[1] == "audio-decoder-hn-b"
    with pytest.raises(FileNotFoundError, match="decoder weights not found"):
        load_audio_decoder(tmp_path / "missing.safetensors")


def _hn_file(base, path, residual: bool = False):
    """A decoder-stage file of an HN decoder on the tiny base model (its blocks and noise head the base's)."""
    from vqcodec.audio.model import load_audio_model
    from vqcodec.weights.io import weights_hash

    model, _ = load_audio_model(base)
    dec = _decoder(hop=80, residual=residual)
    own = dec.state_dict()
    dec.load_state_dict({k: v for k, v in model.decoder.state_dict().items() if own[k].shape == v.shape}, strict=False)
    config = {"decoder": "hn", **dec.hn_cfg.to_dict(), "base_model_id": "tiny", "base_weights_hash": weights_hash(base).hex()}
    save_weights(path, dec.state_dict(), "audio-decoder-hn-test", config)
    return path


@pytest.mark.parametrize("residual", [False, True])
def test_codec_renders_with_the_decoder_whatever_the_chunk_size(tiny_audio_weights, tmp_path, make_audio, residual):
    from vqcodec.audio.codec import AudioCodec
    from vqcodec.bitstream import VQFormatError

    base = tiny_audio_weights / "audio_vqvae.safetensors"
    _hn_file(base, tmp_path / "hn.safetensors", residual)
    prior = tiny_audio_weights / "audio_prior.safetensors"
    own = AudioCodec(base, prior)
    data = own.encode(make_audio(1.3, 16000, 1, seed=3), 3, sample_rate=16000)
    outs = [AudioCodec(base, prior, chunk_seconds=c).with_decoder(tmp_path / "hn.safetensors").decode(data)[0]
            for c in (0.05, 0.17, 10.0)]
    assert all(np.array_equal(outs[0], o) for o in outs[1:])
    assert not np.array_equal(outs[0], own.decode(data)[0])  # it is another decoder
    naming = AudioCodec(base, prior, decoder_path=tmp_path / "hn.safetensors")  # its files name the decoder
    assert naming.decoder_id == "audio-decoder-hn-test"
    assert np.array_equal(naming.decode(naming.encode(make_audio(1.3, 16000, 1, seed=3), 3, sample_rate=16000))[0],
                          outs[0])
    with pytest.raises(VQFormatError, match="which this codec does not have"):
        naming.decode(data)  # a file naming no decoder is its model's decoder's: vqcodec.decode routes it


def test_api_and_cli_decode_with_a_decoder(tiny_audio_weights, tmp_path, use_weights, make_audio):
    import soundfile as sf
    from click.testing import CliRunner

    import vqcodec
    from vqcodec.cli.main import cli

    use_weights(tiny_audio_weights)
    hn = _hn_file(tiny_audio_weights / "audio_vqvae.safetensors", tmp_path / "hn.safetensors")
    data = vqcodec.encode_audio(make_audio(0.6, 16000, 1, seed=1), 16000, quality=3)
    own, rate = vqcodec.decode(data)
    with_hn, rate2 = vqcodec.decode(data, decoder=hn)
    assert rate == rate2 == 16000 and own.shape == with_hn.shape and not np.array_equal(own, with_hn)
    blocks = vqcodec.api.decode_audio_blocks(data, decoder=hn)[3]
    assert np.array_equal(np.concatenate(list(blocks)), with_hn)

    src = tmp_path / "in.vq"
    src.write_bytes(data)
    runner = CliRunner()
    r = runner.invoke(cli, ["decode", str(src), "-o", str(tmp_path / "a.wav"), "--decoder", str(hn)])
    assert r.exit_code == 0, r.output
    y, _ = sf.read(tmp_path / "a.wav", dtype="float32")
    np.testing.assert_allclose(y, with_hn[:, 0], atol=1 / 32768 + 1e-6)  # 16-bit WAV
    r = runner.invoke(cli, ["decode", str(src), "-o", str(tmp_path / "m.wav"), "--decoder", "model"])
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(sf.read(tmp_path / "m.wav", dtype="float32")[0], own[:, 0], atol=1 / 32768 + 1e-6)
    r = runner.invoke(cli, ["decode", str(src), "-o", str(tmp_path / "x.wav"), "--decoder", "no-such-decoder"])
    assert r.exit_code == 1 and "name an installed one (model" in r.output and not (tmp_path / "x.wav").exists()
    other = tmp_path / "other.safetensors"  # a decoder of another base model: refused, nothing written
    config = {"decoder": "hn", **_decoder(hop=80).hn_cfg.to_dict(), "base_model_id": "x", "base_weights_hash": "00"}
    save_weights(other, _decoder(hop=80).state_dict(), "audio-decoder-hn-other", config)
    r = runner.invoke(cli, ["decode", str(src), "-o", str(tmp_path / "b.wav"), "--decoder", str(other)])
    assert r.exit_code == 1 and "pass the base model it was trained on" in r.output
    assert not (tmp_path / "b.wav").exists()
    with pytest.raises(ValueError, match="trained on"):
        vqcodec.decode(data, decoder=other)


def test_files_name_the_default_decoder_and_decode_with_it(tiny_audio_weights, tmp_path, use_weights, make_audio):
    """A weights folder with a decoder component (audio_decoder.safetensors): new files name it (role
    "decoder") and decode with it; files that name none (every file of 0.4.x) decode with the model's own
    decoder; a file naming a decoder this install lacks is refused with the component's name; --decoder
    still overrides."""
    import shutil

    import vqcodec
    from vqcodec.bitstream import VQFormatError, read_file
    from vqcodec.registry import default_registry

    plain = tmp_path / "plain"
    shutil.copytree(tiny_audio_weights, plain)
    use_weights(plain)
    clip = make_audio(0.6, 16000, 1, seed=2)
    old = vqcodec.encode_audio(clip, 16000, quality=3)
    assert {c.role for c in read_file(old).components} == {"vqvae", "prior"}
    own, _ = vqcodec.decode(old)

    with_dec = tmp_path / "with_decoder"
    shutil.copytree(tiny_audio_weights, with_dec)
    hn = _hn_file(with_dec / "audio_vqvae.safetensors", with_dec / "audio_decoder.safetensors")
    use_weights(with_dec)
    assert default_registry().defaults("audio")["decoder"].model_id == "audio-decoder-hn-test"
    new = vqcodec.encode_audio(clip, 16000, quality=3)
    named = {c.role: c.model_id for c in read_file(new).components}
    assert named["decoder"] == "audio-decoder-hn-test"
    assert [read_file(new).streams(k) for k in (1, 2, 3)] == [read_file(old).streams(k) for k in (1, 2, 3)]
    rendered, _ = vqcodec.decode(new)
    explicit, _ = vqcodec.decode(old, decoder=hn)
    assert np.array_equal(rendered, explicit) and not np.array_equal(rendered, own)
    assert np.array_equal(vqcodec.decode(old)[0], own)  # an old file keeps its model's decoder
    assert np.array_equal(np.concatenate(list(vqcodec.api.decode_audio_blocks(new)[3])), rendered)
    other = _hn_file(with_dec / "audio_vqvae.safetensors", tmp_path / "other.safetensors", residual=True)
    overridden = vqcodec.decode(new, decoder=other)[0]  # --decoder overrides the one the file names
    assert not np.array_equal(overridden, rendered) and np.array_equal(overridden, vqcodec.decode(old, decoder=other)[0])
    # by name: an installed decoder's id, or "model" for the speech model's own decoder (how 0.4.x rendered)
    assert np.array_equal(vqcodec.decode(old, decoder="audio-decoder-hn-test")[0], rendered)
    assert np.array_equal(vqcodec.decode(new, decoder="model")[0], own)
    assert np.array_equal(np.concatenate(list(vqcodec.api.decode_audio_blocks(new, decoder="model")[3])), own)
    with pytest.raises(FileNotFoundError, match=r"no audio decoder 'hn'.*\(model, audio-decoder-hn-test\)"):
        vqcodec.decode(new, decoder="hn")

    use_weights(plain)  # an install without the decoder component
    with pytest.raises(VQFormatError, match="needs the audio decoder model audio-decoder-hn-test"):
        vqcodec.decode(new)
    assert np.array_equal(vqcodec.decode(new, decoder=other)[0], overridden)  # --decoder needs no named one
    blocks = vqcodec.api.decode_audio_blocks(new, decoder=other)[3]
    assert np.array_equal(np.concatenate(list(blocks)), overridden)


def test_position_keyed_noise():
    from vqcodec.audio.noise import filtered_noise, white_noise

    t = torch.arange(0, 1 << 16, dtype=torch.int64)
    n = white_noise(t)
    assert n.dtype == torch.float32 and float(n.min()) >= -1.0 and float(n.max()) < 1.0
    assert abs(float(n.mean())) < 0.01 and abs(float(n.var()) - 1 / 3) < 0.01  # uniform on [-1, 1)
    assert abs(float((n[1:] * n[:-1]).mean())) < 0.01  # no correlation between neighbours
    assert torch.equal(white_noise(t[1000:1100] + 0), n[1000:1100])  # a function of the index alone
    window = torch.hann_window(64)
    mag = torch.rand(2, 33, 40)
    whole = filtered_noise(mag, 160, 64, 16, window)
    per_row = filtered_noise(mag, torch.tensor([160, 160]), 64, 16, window)
    assert torch.equal(whole, per_row) and not torch.equal(whole, filtered_noise(mag, 0, 64, 16, window))
