"""Decoder fine-tuning on the codec's own inputs (vqcodec.training.image_decoder): the inputs are the ones the codec
decodes, the symbols are the ones it codes, only the decoder trains, and a run resumes."""

import hashlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vqcodec.cli.main import cli
from vqcodec.image.codec import ImageCodec
from vqcodec.image.model import load_image_model
from vqcodec.image.refinement import decode_layers, encode_layers, layer_symbols, symbol_levels
from vqcodec.registry import default_registry
from vqcodec.training.image_decoder import (CACHE_DIR, DECODER_EXPORT_NAME, ImageDecoderTask, PhotoInputs,
                                            TrainImageDecoderConfig)
from vqcodec.training.image_model import split_holdout
from vqcodec.training.loop import RunContext


@pytest.fixture(scope="module")
def codec() -> ImageCodec:
    c = default_registry().defaults("image")
    return ImageCodec(c["vqvae"].path, c["prior"].path, refinement_path=c["refinement"].path, decoder_path=None)


@pytest.fixture
def photos(tmp_path):
    """3 textured 80 x 72 photos (one is held out with --holdout 1)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:80, 0:72]
    for i in range(3):
        base = np.stack([np.sin(xx / (2 + i)), np.cos(yy / (3 + i)), np.sin((xx * yy) / 40)], -1)
        arr = ((base * 0.35 + 0.5) * 255 + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"p{i}.png")
    return folder


def test_layer_symbols_are_what_encode_layers_codes(codec):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    cand = codec.analyse(rgb)
    for q in (24, 40):
        indices, symbols = codec.refinement_symbols(cand, q)
        assert symbols is not None and symbols.dtype == torch.int8
        plan = codec.plan(q)
        residual = codec._residual(cand.latents, indices).view(cand.height, cand.width, -1)
        lam = codec._rdo_lambda(plan)
        coded = encode_layers(codec.refinement, residual, plan.layers, lam)
        digest = hashlib.sha256()
        for y in range(cand.height):
            digest.update(symbols[:, y].contiguous().numpy().tobytes())
        assert digest.digest() == coded.digest
        assert torch.equal(symbols, layer_symbols(codec.refinement, residual, plan.layers, lam))
        base = codec._base_latents(indices).view(cand.height, cand.width, -1)
        decoded = decode_layers(codec.refinement, coded.streams, base)
        assert torch.equal(decoded.levels, symbol_levels(symbols))
    assert codec.refinement_symbols(cand, 10)[1] is None  # below the refinement layers


def _cfg(photos, out, **kw):
    return TrainImageDecoderConfig(**{**dict(data=str(photos), out=str(out), steps=4, batch_size=2, crop=32,
                                             holdout=1, warmup_steps=1, checkpoint_every=0.0, threads=1, bf16=False,
                                             val_every=1000, vq_qualities=(6,), refined_qualities=(26, 40)), **kw})


def test_decoder_inputs_are_what_the_codec_decodes(codec, photos, tmp_path):
    task = ImageDecoderTask(_cfg(photos, tmp_path / "run"))
    task.build(RunContext(0, 1, False, tmp_path / "run"))
    assert len(list((tmp_path / "run" / CACHE_DIR).glob("*.npz"))) == 3
    photo, inputs = task.held[0]
    h, w = inputs.latents.shape[:2]
    rgb = photo.permute(1, 2, 0).contiguous().numpy()
    decoder = task.model.decoder.eval()
    for q in (6, 26, 40):
        want = codec.decode(codec.encode(rgb, q)).astype(np.int16)
        z, depth = task._decoder_input(inputs, f"q{q}", 0, 0, h, w)
        with torch.no_grad():
            got = decoder(z[None], depth[None]).clamp(0, 1)[0]
        got = (got.permute(1, 2, 0) * 255).round().numpy().astype(np.int16)
        assert np.abs(got - want).max() <= 1, q
    # a whole level (computed from the cached latents) tells each block its codec level
    z, depth = task._decoder_input(inputs, "level2", 0, 0, h, w)
    assert int(depth.max()) <= task.model.cfg.num_stages + 2 and int(depth.min()) >= task.stages
    # the cache round-trips
    held = split_holdout(photos, 1)[1][0]
    again = PhotoInputs.load(tmp_path / "run" / CACHE_DIR / f"{held.stem}.npz")
    assert torch.equal(again.refined[40][0], inputs.refined[40][0]) and again.refined[40][1] == 2


def test_only_the_decoder_trains_and_a_run_resumes(photos, tmp_path):
    source = load_image_model(default_registry().defaults("image")["vqvae"].path)[0].state_dict()
    out = tmp_path / "run"
    args = ["train", "image-decoder", "--data", str(photos), "--out", str(out), "--holdout", "1", "--crop", "32",
            "--batch-size", "2", "--vq-qualities", "6", "--refined-qualities", "26,40", "--threads", "1",
            "--val-every", "2", "--warmup-steps", "1", "--dec-blocks", "4", "--model-id", "test-decoder",
            "--schedule", "constant", "--no-progress"]
    result = CliRunner().invoke(cli, args + ["--steps", "3"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, args + ["--steps", "4", "--resume"])
    assert result.exit_code == 0, result.output
    lines = (out / "log.jsonl").read_text()
    assert '"step": 4' in lines and '"codec_mean"' in lines and '"q26"' in lines and '"edge_level5"' in lines
    model, model_id = load_image_model(out / "image_model.safetensors")
    assert model_id == "test-decoder" and model.cfg.dec_blocks == 4
    state = model.state_dict()
    for k, v in source.items():
        if k.startswith(("encoder.", "quantizer.")) and v.is_floating_point():
            assert torch.equal(state[k].float(), v.float()), k
    assert not torch.equal(state["decoder.from_latent.weight"].float(), source["decoder.from_latent.weight"].float())
    # the run's decoder-stage component renders the shipped model's files: the same indices, other pixels
    c = default_registry().defaults("image")
    base = ImageCodec(c["vqvae"].path, c["prior"].path, refinement_path=c["refinement"].path, decoder_path=None)
    tuned = ImageCodec(c["vqvae"].path, c["prior"].path, refinement_path=c["refinement"].path,
                       decoder_path=out / DECODER_EXPORT_NAME)
    assert tuned.decoder_id == "test-decoder" and tuned.model.cfg.dec_blocks == 3  # the grown decoder renders
    assert len(tuned.model.decoder.blocks) == 4
    rgb = np.asarray(Image.open(photos / "p0.png"))
    data = tuned.encode(rgb, quality=40)
    assert "decoder" in {c.role for c in tuned.components}
    assert torch.equal(tuned.decode_indices(data), base.decode_indices(base.encode(rgb, quality=40)))
    assert not np.array_equal(tuned.decode(data), base.decode(base.encode(rgb, quality=40)))


def test_crops_come_with_context_the_loss_leaves_out(photos, tmp_path):
    task = ImageDecoderTask(_cfg(photos, tmp_path / "run", batch_size=16, margin=2))
    built = task.build(RunContext(0, 1, False, tmp_path / "run"))
    x, z, depth, mask, kinds = task.batch(0)
    assert x.shape == (16, 3, 64, 64) and z.shape[2:] == (8, 8) and depth.shape == (16, 8, 8)
    inner = torch.zeros(64, 64)
    inner[16:48, 16:48] = 1
    for m in mask[:, 0]:  # the inner crop always counts; the band only where it is the photo's own border
        assert torch.equal(m * inner, inner)
        assert int(m.sum()) in {32 * 32, 32 * 48, 48 * 48}
    assert any(int(m.sum()) < 48 * 48 for m in mask[:, 0])  # some band inside the photo is left out
    # a pixel in the band changes nothing, one inside does
    loss, _ = task.loss(built.model, (x, z, depth, mask, kinds))
    band = (mask == 0).expand_as(x)
    y = x.clone()
    y[band] = 1 - y[band]
    assert torch.isclose(task.loss(built.model, (y, z, depth, mask, kinds))[0], loss)
    y = x.clone()
    y[:, :, 30, 30] += 0.5
    assert task.loss(built.model, (y, z, depth, mask, kinds))[0] > loss


def test_log_loss_is_the_mean_of_the_crops_psnr(photos, tmp_path):
    task = ImageDecoderTask(_cfg(photos, tmp_path / "run", batch_size=4, loss="log"))
    built = task.build(RunContext(0, 1, False, tmp_path / "run"))
    x, z, depth, mask, kinds = task.batch(0)
    loss, metrics = task.loss(built.model, (x, z, depth, mask, kinds))
    with torch.no_grad():
        x_hat = built.model.decoder(z, depth)
    per_crop = ((x_hat - x) ** 2 * mask).sum((1, 2, 3)) / (mask.sum((1, 2, 3)) * 3)
    assert float(loss.detach()) == pytest.approx(float(10 * torch.log10(per_crop + 1e-6).mean()), abs=0.05)
    assert metrics["mse"] == pytest.approx(float(per_crop.mean()), rel=0.05)


def test_kind_loss_weighs_each_kind_by_its_running_mse(photos, tmp_path):
    task = ImageDecoderTask(_cfg(photos, tmp_path / "run", batch_size=8, loss="kind"))
    built = task.build(RunContext(0, 1, False, tmp_path / "run"))
    x, z, depth, mask, kinds = task.batch(0)
    assert kinds.shape == (8,) and int(kinds.max()) < len(task.kinds)
    loss, _ = task.loss(built.model, (x, z, depth, mask, kinds))
    seen = kinds.unique()
    assert torch.isfinite(task.kind_mse[seen]).all() and torch.isnan(task.kind_mse).sum() == len(task.kinds) - len(seen)
    # on the first batch every kind's mean is its own: the loss is the mean of crop MSE / kind mean
    with torch.no_grad():
        x_hat = built.model.decoder(z, depth)
    per_crop = ((x_hat - x) ** 2 * mask).sum((1, 2, 3)) / (mask.sum((1, 2, 3)) * 3)
    means = {int(k): float(per_crop[kinds == k].mean()) for k in seen}
    want = sum(float(per_crop[i]) / means[int(kinds[i])] for i in range(8)) / 8
    assert float(loss.detach()) == pytest.approx(want, rel=1e-3)
    state = task.state_dict()
    task.kind_mse.fill_(0.0)
    task.load_state_dict(state)
    assert torch.equal(torch.isnan(task.kind_mse), torch.isnan(state["kind_mse"]))


def test_kind_power_zero_is_plain_mse(photos, tmp_path):
    task = ImageDecoderTask(_cfg(photos, tmp_path / "run", batch_size=6, loss="kind", kind_power=0.0))
    built = task.build(RunContext(0, 1, False, tmp_path / "run"))
    batch = task.batch(0)
    loss, metrics = task.loss(built.model, batch)
    assert float(loss.detach()) == pytest.approx(metrics["mse"], rel=1e-5)
    task.config.kind_power = 0.5
    half, _ = task.loss(built.model, batch)
    x, z, depth, mask, kinds = batch
    with torch.no_grad():
        x_hat = built.model.decoder(z, depth)
    per_crop = ((x_hat - x) ** 2 * mask).sum((1, 2, 3)) / (mask.sum((1, 2, 3)) * 3)
    want = (per_crop / task.kind_mse[kinds].float() ** 0.5).mean()  # the running means barely moved in one step
    assert float(half.detach()) == pytest.approx(float(want), rel=0.02) and float(half.detach()) > float(loss.detach())


def test_border_prob_puts_crops_against_the_photos_edges(photos, tmp_path):
    """border_prob 1: every crop touches an edge on both axes (its band there counts in the loss); 0: some do not."""
    def touching(border_prob, run):
        task = ImageDecoderTask(_cfg(photos, tmp_path / run, batch_size=32, margin=2, border_prob=border_prob))
        task.build(RunContext(0, 1, False, tmp_path / run))
        mask = task.batch(0)[3][:, 0]  # (B, 64, 64)
        rows = (mask[:, 0, :].amax(1) > 0) | (mask[:, -1, :].amax(1) > 0)
        cols = (mask[:, :, 0].amax(1) > 0) | (mask[:, :, -1].amax(1) > 0)
        return rows & cols

    assert bool(touching(1.0, "edges").all())
    assert not bool(touching(0.0, "free").all())


def test_init_decoder_starts_from_a_decoder_stage_file(photos, tmp_path, codec):
    from vqcodec.image.decoder_stage import save_image_decoder

    released = codec.model
    path = tmp_path / "dec.safetensors"
    decoder = type(released.decoder)(released.cfg)
    decoder.load_state_dict(released.decoder.state_dict())
    with torch.no_grad():
        decoder.from_latent.bias.add_(0.25)
    save_image_decoder(path, decoder, released.cfg, "start", codec.model_path, codec.model_id)
    task = ImageDecoderTask(_cfg(photos, tmp_path / "run", init_decoder=str(path)))
    model = task.build(RunContext(0, 1, False, tmp_path / "run")).model
    want = decoder.from_latent.bias.half().float()  # the file holds float16
    assert torch.equal(model.decoder.from_latent.bias.detach(), want)
    assert not torch.equal(model.decoder.from_latent.bias.detach(), released.decoder.from_latent.bias)
