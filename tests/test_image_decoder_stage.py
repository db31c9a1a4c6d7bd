"""Image decoder-stage components (vqcodec.image.decoder_stage, registry role "decoder"): a file names the decoder
that renders it, its indices and bits do not depend on it, and a file that names none keeps its pixels."""
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open

import vqcodec
from vqcodec.bitstream import VQFormatError, read_file
from vqcodec.image.codec import ImageCodec
from vqcodec.image.decoder_stage import load_image_decoder, save_image_decoder
from vqcodec.image.model import ImageModelConfig, load_image_model


def _write_decoder(folder, model_path, name="image_decoder.safetensors", model_id="tiny-decoder", seed=1, **cfg):
    """A decoder-stage file of the model at `model_path`: its decoder with every weight moved a little."""
    model, base_id = load_image_model(model_path)
    config = ImageModelConfig(**{**model.cfg.to_dict(), **cfg})
    decoder = type(model.decoder)(config)
    mine = decoder.state_dict()
    decoder.load_state_dict({k: v for k, v in model.decoder.state_dict().items()
                             if k in mine and mine[k].shape == v.shape}, strict=False)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in decoder.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen) * (p.abs().mean() + 1e-3))
    path = folder / name
    save_image_decoder(path, decoder, config, model_id, model_path, base_id)
    return path


@pytest.fixture
def weights_with_decoder(tiny_weights, tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights, folder)
    _write_decoder(folder, folder / "image_vqvae.safetensors")
    return folder


def test_a_decoder_renders_the_same_indices_and_the_file_names_it(weights_with_decoder, make_image):
    folder = weights_with_decoder
    base = ImageCodec(folder / "image_vqvae.safetensors", folder / "image_prior.safetensors")
    tuned = ImageCodec(folder / "image_vqvae.safetensors", folder / "image_prior.safetensors",
                       decoder_path=folder / "image_decoder.safetensors")
    rgb = make_image(40, 56)
    old, new = base.encode(rgb, quality=60), tuned.encode(rgb, quality=60)
    named = {c.role: c.model_id for c in read_file(new).components}
    assert named == {"vqvae": "tiny-image", "prior": named["prior"], "decoder": "tiny-decoder"}
    assert "decoder" not in {c.role for c in read_file(old).components}
    assert read_file(new).streams(1) == read_file(old).streams(1)  # the bits do not depend on the decoder
    assert torch.equal(tuned.decode_indices(new), base.decode_indices(old))
    pixels_old, pixels_new = base.decode(old), tuned.decode(new)
    assert pixels_new.shape == pixels_old.shape == rgb.shape and not np.array_equal(pixels_new, pixels_old)
    with pytest.raises(VQFormatError, match="vqcodec.decode"):  # each codec decodes only the files it names
        base.decode(new)
    with pytest.raises(VQFormatError, match="vqcodec.decode"):
        tuned.decode(old)


def test_the_registry_renders_each_file_with_the_decoder_it_names(weights_with_decoder, use_weights, make_image):
    """New files name the installed default decoder; a file made before it (naming none) keeps its pixels."""
    folder = weights_with_decoder
    rgb = make_image(40, 56)
    old_codec = ImageCodec(folder / "image_vqvae.safetensors", folder / "image_prior.safetensors")
    old = old_codec.encode(rgb, quality=60)
    use_weights(folder)
    new = vqcodec.encode_image(rgb, quality=60)
    assert {r for r, _, _ in vqcodec.inspect(new).components} == {"vqvae", "prior", "decoder"}
    assert np.array_equal(np.asarray(vqcodec.decode(old)), old_codec.decode(old))
    tuned = ImageCodec(folder / "image_vqvae.safetensors", folder / "image_prior.safetensors",
                       decoder_path=folder / "image_decoder.safetensors")
    assert np.array_equal(np.asarray(vqcodec.decode(new)), tuned.decode(new))
    (folder / "image_decoder.safetensors").unlink()  # a decoder that is not installed is named in the error
    use_weights(folder)
    with pytest.raises(VQFormatError, match="image decoder model tiny-decoder"):
        vqcodec.decode(new)
    assert np.array_equal(np.asarray(vqcodec.decode(old)), old_codec.decode(old))


def test_decoder_files_are_float16_and_load_exactly(weights_with_decoder):
    folder = weights_with_decoder
    path = folder / "image_decoder.safetensors"
    with safe_open(str(path), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    model, _ = load_image_model(folder / "image_vqvae.safetensors")
    decoder, model_id = load_image_decoder(path, folder / "image_vqvae.safetensors", model.cfg)
    assert model_id == "tiny-decoder"
    with safe_open(str(path), framework="pt") as f:
        for k, v in decoder.state_dict().items():
            assert v.dtype == torch.float32 and torch.equal(v, f.get_tensor(k).float()), k


def test_a_decoder_of_another_model_or_config_is_refused(weights_with_decoder, tmp_path):
    folder = weights_with_decoder
    other = tmp_path / "other"
    other.mkdir()
    model, _ = load_image_model(folder / "image_vqvae.safetensors")
    with torch.no_grad():
        model.quantizer.stages[0].codebook.add_(0.01)
    from vqcodec.weights.io import save_weights

    save_weights(other / "image_vqvae.safetensors", model.release_state(), "tiny-image-2", model.cfg.to_dict())
    with pytest.raises(ValueError, match="renders the latents of model 'tiny-image'"):
        ImageCodec(other / "image_vqvae.safetensors", folder / "image_prior.safetensors",
                   decoder_path=folder / "image_decoder.safetensors")
    wide = _write_decoder(tmp_path, folder / "image_vqvae.safetensors", "wide.safetensors", width_high=16)
    with pytest.raises(ValueError, match="another image model config"):
        ImageCodec(folder / "image_vqvae.safetensors", folder / "image_prior.safetensors", decoder_path=wide)
    deeper = _write_decoder(tmp_path, folder / "image_vqvae.safetensors", "deeper.safetensors", dec_blocks=2)
    codec = ImageCodec(folder / "image_vqvae.safetensors", folder / "image_prior.safetensors", decoder_path=deeper)
    assert len(codec.model.decoder.blocks) == 2  # a decoder may be deeper than its model's own
    with pytest.raises(ValueError, match="not an image decoder-stage file"):
        ImageCodec(folder / "image_vqvae.safetensors", folder / "image_prior.safetensors",
                   decoder_path=folder / "image_vqvae.safetensors")


def test_any_decoder_renders_a_file_on_request(weights_with_decoder, use_weights, make_image, tmp_path):
    """decode(decoder=...) / `vqcodec decode --decoder`: an old file rendered by the new decoder, a new one by the
    model's own, with the same indices; an unknown decoder is named in the error."""
    from click.testing import CliRunner
    from PIL import Image

    from vqcodec.cli.main import cli

    folder = weights_with_decoder
    rgb = make_image(40, 56)
    base = ImageCodec(folder / "image_vqvae.safetensors", folder / "image_prior.safetensors")
    tuned = ImageCodec(folder / "image_vqvae.safetensors", folder / "image_prior.safetensors",
                       decoder_path=folder / "image_decoder.safetensors")
    old = base.encode(rgb, quality=60)
    use_weights(folder)
    new = vqcodec.encode_image(rgb, quality=60)
    assert np.array_equal(np.asarray(vqcodec.decode(old, decoder="tiny-decoder")), tuned.decode(new))
    assert np.array_equal(np.asarray(vqcodec.decode(new, decoder="model")), base.decode(old))
    path = folder / "image_decoder.safetensors"
    assert np.array_equal(np.asarray(vqcodec.decode(old, decoder=path)), tuned.decode(new))
    with pytest.raises(FileNotFoundError, match="no image decoder 'nope'.*model, tiny-decoder"):
        vqcodec.decode(old, decoder="nope")
    assert base.decoder_id is None and not np.array_equal(base.decode(old), tuned.decode(new))  # copies only

    (tmp_path / "old.vq").write_bytes(old)
    out = tmp_path / "old.png"
    result = CliRunner().invoke(cli, ["decode", str(tmp_path / "old.vq"), "-o", str(out), "--decoder", "tiny-decoder"])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(out)), tuned.decode(new))
    result = CliRunner().invoke(cli, ["decode", str(tmp_path / "old.vq"), "-o", str(tmp_path / "x.png"),
                                      "--decoder", "audio-decoder-hn-v1"])
    assert result.exit_code == 1 and "no image decoder 'audio-decoder-hn-v1'" in result.output


def test_a_codec_says_when_only_the_decoder_differs_and_with_decoder_names_its_own(weights_with_decoder, make_image,
                                                                                   tmp_path):
    folder = weights_with_decoder
    base = ImageCodec(folder / "image_vqvae.safetensors", folder / "image_prior.safetensors")
    tuned = ImageCodec(folder / "image_vqvae.safetensors", folder / "image_prior.safetensors",
                       decoder_path=folder / "image_decoder.safetensors")
    old = base.encode(make_image(24, 32), quality=40)
    with pytest.raises(VQFormatError, match="the model's own decoder .it names no decoder.*with_decoder"):
        tuned.decode(old)
    own = tuned.with_decoder(None)  # renders any file with the model's own decoder; its files name no decoder
    assert np.array_equal(own.decode(old), base.decode(old))
    assert [c.role for c in own.components] == [c.role for c in base.components]
    assert "decoder" in {c.role for c in read_file(tuned.encode(make_image(24, 32), quality=40)).components}
    assert "decoder" not in {c.role for c in read_file(own.encode(make_image(24, 32), quality=40)).components}
    junk = tmp_path / "junk.safetensors"
    junk.write_text("not weights")
    with pytest.raises(ValueError, match="not a vqcodec weights file"):
        base.with_decoder(junk)


def test_cli_decoder_errors_name_the_file_or_the_decoder(weights_with_decoder, use_weights, make_image, tmp_path):
    from click.testing import CliRunner

    from vqcodec.cli.main import cli

    folder = weights_with_decoder
    use_weights(folder)
    src = tmp_path / "new.vq"
    src.write_bytes(vqcodec.encode_image(make_image(24, 32), quality=40))
    junk = tmp_path / "junk.txt"
    junk.write_text("not weights")
    r = CliRunner().invoke(cli, ["decode", str(src), "-o", str(tmp_path / "a.png"), "--decoder", str(junk)])
    assert r.exit_code == 1 and "--decoder" in r.output and "not a vqcodec weights file" in r.output
    (folder / "image_prior.safetensors").rename(folder / "moved.safetensors")  # the file's prior goes missing
    use_weights(folder)
    r = CliRunner().invoke(cli, ["decode", str(src), "-o", str(tmp_path / "b.png"), "--decoder", "model"])
    assert r.exit_code == 1 and str(src) in r.output and not (tmp_path / "b.png").exists()
