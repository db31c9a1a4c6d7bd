"""The v4 image training recipe: a constant learning rate that can be extended and branched into a
cooldown, an average of the weights, per-block depths as the codec decodes, the decoder told each
block's depth, and a model grown from a released one (more stages, a wider latent)."""

import pytest
import torch

from vqcodec.image.model import ImageModelConfig, ImageVQVAE, load_image_model
from vqcodec.training.image_model import (ImageTask, RefiningVQVAE, TrainImageConfig, evaluate_rd,
                                          evaluate_refinement, export_image_model, split_holdout, train_image)
from vqcodec.training.loop import RunContext
from vqcodec.training.schedule import lr_at
from vqcodec.training.weight_average import WeightAverage

SMALL = dict(latent_dim=8, num_stages=3, num_codes=16, width_low=32, width_mid=16, width_high=8,
             enc_blocks=1, dec_blocks=1)




def _cfg(data, out, steps, **kw):
    base = dict(data=str(data), out=str(out), steps=steps, batch_size=2, crop=32, warmup_steps=2,
                checkpoint_every=0.0, threads=1, bf16=False, model=SMALL, val_every=1000)
    return TrainImageConfig(**{**base, **kw})


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_constant_schedule_and_cooldown():
    kw = dict(steps=10, lr=1.0, warmup_steps=2, min_lr_fraction=0.1, schedule="constant")
    assert [lr_at(s, **kw) for s in range(6)] == pytest.approx([0.5, 1, 1, 1, 1, 1])
    cooled = [lr_at(s, cooldown_steps=4, **kw) for s in range(6, 11)]
    assert cooled == pytest.approx([1.0, 0.775, 0.55, 0.325, 0.1])
    # the steps before a cooldown do not depend on where the run ends
    assert [lr_at(s, **{**kw, "steps": 1000}) for s in range(6)] == [lr_at(s, **kw) for s in range(6)]
    with pytest.raises(ValueError, match="schedule"):
        lr_at(0, steps=10, lr=1.0, warmup_steps=0, min_lr_fraction=0.0, schedule="linear")


def test_constant_run_extends_and_matches_an_uninterrupted_one(image_folder, tmp_path):
    """A constant-schedule run resumed with a larger --steps continues exactly as one started with it."""
    straight = train_image(_cfg(image_folder, tmp_path / "a", 6, schedule="constant", weight_ema=0.9))
    train_image(_cfg(image_folder, tmp_path / "b", 3, schedule="constant", weight_ema=0.9))
    extended = train_image(_cfg(image_folder, tmp_path / "b", 6, schedule="constant", weight_ema=0.9, resume=True))
    a, b = _params(straight), _params(extended)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a constant run cannot be resumed with fewer steps than it has done
    with pytest.raises(ValueError, match="past --steps"):
        train_image(_cfg(image_folder, tmp_path / "b", 4, schedule="constant", weight_ema=0.9, resume=True))
    # a cosine run keeps its checkpoint's --steps (its schedule depends on it): nothing more to do
    train_image(_cfg(image_folder, tmp_path / "c", 3))
    train_image(_cfg(image_folder, tmp_path / "c", 9, resume=True))
    assert '"step": 3' in (tmp_path / "c" / "log.jsonl").read_text()
    assert '"step": 4' not in (tmp_path / "c" / "log.jsonl").read_text()


def test_weight_average_is_exported_and_validated(image_folder, tmp_path):
    model = train_image(_cfg(image_folder, tmp_path / "r", 5, weight_ema=0.5, holdout=1, val_every=5))
    exported, _ = load_image_model(tmp_path / "r" / "image_model.safetensors")
    live = model.release_state()
    averaged = exported.release_state()
    assert any(not torch.allclose(live[k], averaged[k]) for k in live if "encoder" in k)
    log = (tmp_path / "r" / "log.jsonl").read_text()
    assert '"val"' in log and '"live_val"' in log


def test_weight_average_swaps_back():
    net = torch.nn.Linear(3, 2)
    avg = WeightAverage(net, 0.9)
    before = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    avg.update(net)
    with avg.swapped_in(net):
        assert not torch.equal(net.weight, before + 1.0)
    assert torch.equal(net.weight, before + 1.0)


@pytest.mark.parametrize("mode", ["crop", "block", "rd"])
def test_depth_modes_train(image_folder, tmp_path, mode):
    cfg = _cfg(image_folder, tmp_path / mode, 2, depth_mode=mode, model={**SMALL, "depth_input": True})
    task = ImageTask(cfg)
    task.build(RunContext(rank=0, world_size=1, resuming=False, out_dir=tmp_path))
    x, active, lam = task.batch(0)
    loss, metrics = task.loss(task.model, (x, active, lam))
    assert torch.isfinite(loss) and 1 <= metrics["mean_depth"] <= SMALL["num_stages"]
    if mode == "block":
        assert active.shape == (2 * (32 // 8) ** 2,)
    if mode == "rd":
        assert lam.shape == (2,)


def test_rd_depth_rule_picks_per_block_depths():
    """A huge multiplier stops every block at stage 1, zero keeps every stage."""
    torch.manual_seed(0)
    model = ImageVQVAE(ImageModelConfig(**SMALL)).train()
    x = torch.rand(2, 3, 32, 32)
    _, q = model(x, depth_rule=lambda e: torch.ones(e.shape[0], dtype=torch.long))
    assert q.active.eq(1).all()
    _, q = model(x, depth_rule=lambda e: (e + 0.0 * torch.arange(e.shape[1])).argmin(1) + 1)
    assert q.active.max() >= 1


def test_decoder_depth_input_starts_depth_blind_and_reads_absent_stages():
    torch.manual_seed(0)
    blind = ImageVQVAE(ImageModelConfig(**SMALL)).eval()
    told = ImageVQVAE(ImageModelConfig(**{**SMALL, "depth_input": True})).eval()
    told.load_state_dict(blind.state_dict(), strict=False)
    idx = torch.randint(0, 16, (1, 3, 4, 5))
    idx[:, 2, :2] = -1  # some blocks stop after 2 stages
    assert torch.equal(blind.decode_indices(idx), told.decode_indices(idx))
    with torch.no_grad():
        told.decoder.depth_embedding.weight[2].fill_(0.3)
    assert not torch.equal(blind.decode_indices(idx), told.decode_indices(idx))  # depth-2 blocks are told
    full = idx.clamp(min=0)  # every block at depth 3, whose embedding is still zero
    assert torch.equal(blind.decode_indices(full), told.decode_indices(full))


def test_grown_model_decodes_the_released_one_exactly(image_folder, tmp_path):
    """More stages and a wider latent from a released model: at the released depths it is that model."""
    released = train_image(_cfg(image_folder, tmp_path / "small", 3))
    export_image_model(released, tmp_path / "small.safetensors")
    cfg = _cfg(image_folder, tmp_path / "grown", 1, init_from=str(tmp_path / "small.safetensors"),
               model={**SMALL, "num_stages": 5, "latent_dim": 12, "depth_input": True})
    task = ImageTask(cfg)
    grown = task.build(RunContext(rank=0, world_size=1, resuming=False, out_dir=tmp_path)).model.eval()
    old, _ = load_image_model(tmp_path / "small.safetensors")
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        assert torch.equal(grown.encoder(x)[:, :8], old.encoder(x))
        idx = old.encode_indices(x)
        assert torch.allclose(grown.decode_indices(idx), old.decode_indices(idx), atol=1e-6)
    assert not bool(grown.quantizer.stages[4].initialized)  # new stages start from k-means
    ev = evaluate_rd(grown, [torch.randint(0, 255, (3, 24, 24), dtype=torch.uint8)], stage_counts=(1, 5),
                     qualities=(50, 100))
    assert len(ev["rd_psnr"]) == 2 and len(ev["psnr"]) == 2


def test_holdout_split_is_deterministic_and_spread(tmp_path):
    for i in range(20):
        (tmp_path / f"{i:02d}.png").write_bytes(b"")
    train, held = split_holdout(tmp_path, 4)
    assert len(held) == 4 and len(train) == 16 and not set(train) & set(held)
    assert [p.name for p in held] == ["02.png", "07.png", "12.png", "17.png"]
    with pytest.raises(ValueError, match="no training images"):
        split_holdout(tmp_path, 20)


def test_commitment_to_the_active_stages():
    """With commit_to_active, a row reconstructed from one stage is committed to that stage's code only."""
    torch.manual_seed(0)
    model = ImageVQVAE(ImageModelConfig(**SMALL)).train()
    x = torch.rand(2, 3, 32, 32)
    _, full = model(x, 1)
    torch.manual_seed(0)
    model = ImageVQVAE(ImageModelConfig(**SMALL)).train()
    model.quantizer.commit_to_active = True
    _, active = model(x, 1)
    assert active.loss.item() > full.loss.item()  # one stage leaves more error than all three


def test_frozen_encoder_trains_only_decoder_and_codebooks(image_folder, tmp_path):
    cfg = _cfg(image_folder, tmp_path / "frozen", 1, encoder_lr_scale=0.0)
    task = ImageTask(cfg)
    built = task.build(RunContext(rank=0, world_size=1, resuming=False, out_dir=tmp_path))
    assert not any(p.requires_grad for p in built.model.encoder.parameters())
    assert all(p.requires_grad for p in built.model.decoder.parameters())
    one = train_image(_cfg(image_folder, tmp_path / "one", 1, encoder_lr_scale=0.0))
    three = train_image(_cfg(image_folder, tmp_path / "three", 3, encoder_lr_scale=0.0))
    after_one, after_three = one.state_dict(), three.state_dict()
    assert all(torch.equal(after_one[k], after_three[k]) for k in after_one if k.startswith("encoder."))
    assert any(not torch.equal(after_one[k], after_three[k]) for k in after_one if k.startswith("decoder."))


def test_refinement_proxy_trains_the_decoder_on_noisy_latents(image_folder, tmp_path):
    """--refine-prob: refined crops decode the detached latent plus noise (the encoder gets no gradient from
    them), the others the VQ path as before; validation adds the scalar-refinement PSNRs; the run resumes
    exactly."""
    cfg = _cfg(image_folder, tmp_path / "q", 2, refine_prob=1.0, refine_steps=(0.1, 0.1))
    task = ImageTask(cfg)
    built = task.build(RunContext(rank=0, world_size=1, resuming=False, out_dir=tmp_path))
    assert isinstance(built.train_module, RefiningVQVAE) and built.train_module.net is task.model  # DDP wraps it
    x, active, lam = task.batch(0)
    loss, metrics = task.loss(built.train_module, (x, active, lam))
    assert metrics["refined"] == 1.0 and torch.isfinite(loss)
    x_hat, _ = built.train_module(x, active, None, torch.ones(2, dtype=torch.bool), torch.full((2,), 0.1))
    torch.nn.functional.mse_loss(x_hat, x).backward()  # the reconstruction term: decoder only
    assert all(p.grad is None or not p.grad.any() for p in task.model.encoder.parameters())
    assert any(p.grad is not None and p.grad.any() for p in task.model.decoder.parameters())

    kw = dict(refine_prob=0.5, holdout=1, val_every=4, schedule="constant")
    straight = train_image(_cfg(image_folder, tmp_path / "a", 4, **kw))
    train_image(_cfg(image_folder, tmp_path / "b", 2, **kw))
    resumed = train_image(_cfg(image_folder, tmp_path / "b", 4, resume=True, **kw))
    a, b = _params(straight), _params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "a" / "log.jsonl").read_text()
    assert '"refine"' in log and '"unquantized"' in log and '"refined"' in log


def test_refinement_levels_round_the_residual_and_tell_the_decoder(image_folder, tmp_path):
    """--refine-levels: refined crops decode the 2-stage reconstruction plus the residual rounded to their level's
    step (what the codec's refinement layers decode), with depth S + level told to the decoder; a model grown from
    one without levels starts level-blind (zero embedding rows) and decodes its VQ path as before."""
    cfg = _cfg(image_folder, tmp_path / "q", 2, refine_prob=1.0, model={**SMALL, "refine_levels": 3, "depth_input": True})
    task = ImageTask(cfg)
    built = task.build(RunContext(rank=0, world_size=1, resuming=False, out_dir=tmp_path))
    net = task.model
    assert net.cfg.refine_levels == 3 and net.decoder.depth_embedding.num_embeddings == net.cfg.num_stages + 4
    x, active, lam = task.batch(0)
    loss, metrics = task.loss(built.train_module, (x, active, lam))
    assert metrics["refined"] == 1.0 and torch.isfinite(loss)

    seen = {}
    hook = net.decoder.register_forward_pre_hook(lambda m, a: seen.update(z=a[0].detach(), depth=a[1]))
    level = torch.tensor([1, 3])
    step = torch.tensor([net.cfg.refinement_step(1), net.cfg.refinement_step(3)])
    with torch.no_grad():
        built.train_module(x, active, None, torch.ones(2, dtype=torch.bool), step, level)
    hook.remove()
    assert step.tolist() == [0.5, 0.125]
    assert seen["depth"][0].eq(net.cfg.num_stages + 1).all() and seen["depth"][1].eq(net.cfg.num_stages + 3).all()
    with torch.no_grad():
        z = net.encoder(x)
        flat = net._flatten(z)
        base = net._unflatten(net.quantizer.decode(net.quantizer.encode(flat, 2)), *z.shape[:1], *z.shape[2:])
    for i in range(2):  # on the grid of the step around the 2-stage base, within half a step of the latent
        k = (seen["z"][i] - base[i]) / step[i]
        assert torch.allclose(k, k.round(), atol=1e-3)
        assert (seen["z"][i] - z[i]).abs().max() <= step[i] / 2 + 1e-4
    ev = evaluate_refinement(net, [(x[0] * 255).round().to(torch.uint8)])
    assert ev["base_stages"] == 2 and ev["steps"] == [0.5, 0.25, 0.125] and len(ev["psnr"]) == 3

    plain = train_image(_cfg(image_folder, tmp_path / "plain", 1, model={**SMALL, "depth_input": True}))
    with torch.no_grad():
        plain.decoder.depth_embedding.weight.normal_()
    export_image_model(plain, tmp_path / "plain.safetensors")
    grow = ImageTask(_cfg(image_folder, tmp_path / "grown", 1, init_from=str(tmp_path / "plain.safetensors"),
                          model={**SMALL, "refine_levels": 2, "depth_input": True}))
    grown = grow.build(RunContext(rank=0, world_size=1, resuming=False, out_dir=tmp_path)).model.eval()
    emb = grown.decoder.depth_embedding.weight
    assert emb.shape[0] == grown.cfg.num_stages + 3 and not emb[-2:].any()  # levels start at zero
    old, _ = load_image_model(tmp_path / "plain.safetensors")
    assert torch.equal(emb[:-2], old.decoder.depth_embedding.weight)  # depths keep their vectors
    with torch.no_grad():
        img = torch.rand(1, 3, 32, 32)
        idx = old.encode_indices(img, 2)
        assert torch.allclose(old.decode_indices(idx), grown.decode_indices(idx), atol=1e-6)


def test_truncated_decoder_only_refinement_run(image_folder, tmp_path):
    """A model of fewer stages from a released one keeps its first stages (and their depth vectors and
    refinement levels); decoder-only training with drawn refinement levels leaves encoder and codebooks as they
    were; level weights of the wrong length are refused."""
    src_cfg = {**SMALL, "refine_levels": 2, "depth_input": True}
    released = train_image(_cfg(image_folder, tmp_path / "src", 2, refine_prob=0.5, model=src_cfg))
    with torch.no_grad():
        released.decoder.depth_embedding.weight.normal_()
    export_image_model(released, tmp_path / "src.safetensors")
    old, _ = load_image_model(tmp_path / "src.safetensors")
    kw = dict(init_from=str(tmp_path / "src.safetensors"), decoder_only=True, refine_prob=0.5,
              model={**src_cfg, "num_stages": 2}, refine_level_weights=(3.0, 1.0))
    start = ImageTask(_cfg(image_folder, tmp_path / "start", 3, **kw))
    start = start.build(RunContext(rank=0, world_size=1, resuming=False, out_dir=tmp_path)).model
    src_emb = old.decoder.depth_embedding.weight
    assert torch.equal(start.decoder.depth_embedding.weight, torch.cat([src_emb[:3], src_emb[-2:]]))
    small = train_image(_cfg(image_folder, tmp_path / "small", 3, **kw))
    assert small.cfg.num_stages == 2 and len(small.quantizer.stages) == 2
    for a, b in zip(small.quantizer.stages, old.quantizer.stages[:2]):
        assert torch.equal(a.codebook, b.codebook)
    assert all(torch.equal(small.state_dict()[k], old.state_dict()[k]) for k in old.state_dict()
               if k.startswith("encoder."))
    assert not torch.equal(small.decoder.depth_embedding.weight, start.decoder.depth_embedding.weight)  # trained
    with pytest.raises(ValueError, match="refine_level_weights"):
        train_image(_cfg(image_folder, tmp_path / "bad", 1, **{**kw, "refine_level_weights": (1.0,)}))


def test_freeze_codebooks_trains_encoder_and_decoder_through_fixed_codebooks(image_folder, tmp_path):
    """--freeze-codebooks: the codebooks (and their EMA statistics) stay as the released model's, encoder and
    decoder train, so the code alphabet that a prior and refinement tables were fitted to keeps its meaning."""
    released = train_image(_cfg(image_folder, tmp_path / "src", 2))
    export_image_model(released, tmp_path / "src.safetensors")
    old, _ = load_image_model(tmp_path / "src.safetensors")
    tuned = train_image(_cfg(image_folder, tmp_path / "frozen", 4, init_from=str(tmp_path / "src.safetensors"),
                             freeze_codebooks=True, restart_after=1))
    for a, b in zip(tuned.quantizer.stages, old.quantizer.stages):
        assert torch.equal(a.codebook, b.codebook)
    state, before = tuned.state_dict(), old.state_dict()
    changed = lambda prefix: any(not torch.equal(state[k], before[k]) for k in before  # noqa: E731
                                 if k.startswith(prefix) and before[k].is_floating_point())
    assert changed("encoder.") and changed("decoder.")
    free = train_image(_cfg(image_folder, tmp_path / "free", 4, init_from=str(tmp_path / "src.safetensors"),
                            restart_after=1))
    assert any(not torch.equal(a.codebook, b.codebook) for a, b in zip(free.quantizer.stages, old.quantizer.stages))


def test_commitment_weight_zero_leaves_only_the_reconstruction(image_folder, tmp_path):
    """--commitment-weight 0: the quantizer's loss (EMA codebooks: the commitment term alone) is 0, so only the
    reconstruction moves the encoder; the default weight gives a positive one; a negative weight is refused."""
    import json

    def vq_losses(out, **kw):
        train_image(_cfg(image_folder, out, 3, log_every=1, **kw))
        return [json.loads(line)["vq_loss"] for line in (out / "log.jsonl").read_text().splitlines()
                if '"vq_loss"' in line]

    assert all(v == 0.0 for v in vq_losses(tmp_path / "zero", commitment_weight=0.0))
    assert all(v > 0.0 for v in vq_losses(tmp_path / "default"))
    with pytest.raises(ValueError, match="commitment_weight"):
        train_image(_cfg(image_folder, tmp_path / "bad", 1, commitment_weight=-1.0))
