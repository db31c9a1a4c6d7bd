"""Image training: exact resume from a checkpoint, DDP replicas staying identical, export/load."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vqcodec.image.model import ImageModelConfig, ImageVQVAE, load_image_model
from vqcodec.quantization.residual_vq import TRAINING_ONLY_BUFFERS
from vqcodec.training.image_model import TrainImageConfig, export_image_model, train_image

SMALL = dict(latent_dim=8, num_stages=2, num_codes=16, width_low=32, width_mid=16, width_high=8,
             enc_blocks=1, dec_blocks=1)




def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def _cfg(data, out, steps, resume=False):
    return TrainImageConfig(data=str(data), out=str(out), steps=steps, batch_size=2, crop=32, warmup_steps=2,
                            checkpoint_every=0.0, threads=1, bf16=False, model=SMALL, resume=resume)


def test_resume_continues_exactly(image_folder, tmp_path):
    straight = train_image(_cfg(image_folder, tmp_path / "a", 6))
    interrupted = _cfg(image_folder, tmp_path / "b", 6)
    interrupted.stop_at_step = 3
    train_image(interrupted)
    resumed = train_image(_cfg(image_folder, tmp_path / "b", 6, resume=True))
    assert _digest(resumed) == _digest(straight)


def test_resume_keeps_the_checkpoints_run_settings(image_folder, tmp_path, caplog):
    """A run with non-default sampling and codebook settings, resumed without repeating those flags,
    continues exactly as the uninterrupted run (the checkpoint's settings win, with a warning)."""
    def custom(out, resume=False):
        cfg = _cfg(image_folder, out, 6, resume=resume)
        cfg.tournament, cfg.restart_after, cfg.ema_decay = 2, 0, 0.9
        return cfg

    straight = train_image(custom(tmp_path / "a"))
    interrupted = custom(tmp_path / "b")
    interrupted.stop_at_step = 3
    train_image(interrupted)
    with caplog.at_level("WARNING"):
        resumed = train_image(_cfg(image_folder, tmp_path / "b", 6, resume=True))  # flags not repeated
    assert _digest(resumed) == _digest(straight)
    assert all(vq.decay == 0.9 and vq.restart_after == 0 for vq in resumed.quantizer.stages)
    assert "tournament=2" in caplog.text


def test_resume_without_checkpoint_is_a_clear_error(image_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_image(_cfg(image_folder, tmp_path / "none", 2, resume=True))


def test_export_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = ImageVQVAE(ImageModelConfig(**SMALL))
    export_image_model(model, tmp_path / "m.safetensors")
    again, model_id = load_image_model(tmp_path / "m.safetensors")
    x = torch.rand(1, 3, 16, 24)
    assert torch.equal(model.encode_indices(x), again.encode_indices(x))
    assert model_id.startswith("image-")


# torchrun of the interpreter running the tests (`python -m torch.distributed.run`), never one found on PATH.
needs_torchrun = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def _torchrun_worker(image_folder, out, mode="straight"):
    worker = Path(__file__).parent / "helpers" / "ddp_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
         str(image_folder), str(out), mode],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (out / "rank0.txt").read_text(), (out / "rank1.txt").read_text()


@needs_torchrun
def test_ddp_two_processes_keep_replicas_identical(image_folder, tmp_path):
    out = tmp_path / "ddp"
    d0, d1 = _torchrun_worker(image_folder, out)
    assert d0 == d1
    assert (out / "checkpoint.pt").is_file()


@needs_torchrun
def test_ddp_resume_continues_exactly(image_folder, tmp_path):
    """Each rank samples its own crops; the checkpoint keeps every rank's sampler, so a resumed DDP run
    ends where the uninterrupted one does."""
    straight = _torchrun_worker(image_folder, tmp_path / "a")
    _torchrun_worker(image_folder, tmp_path / "b", "stop")
    states = [r["task"]["crops"] for r in torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["ranks"]]
    assert len(states) == 2 and not torch.equal(states[0], states[1])
    assert _torchrun_worker(image_folder, tmp_path / "b", "resume") == straight


def test_init_from_released_weights(image_folder, tmp_path):
    torch.manual_seed(1)
    released = ImageVQVAE(ImageModelConfig(**SMALL))
    export_image_model(released, tmp_path / "released.safetensors")
    cfg = _cfg(image_folder, tmp_path / "warm", 0)
    cfg.init_from = str(tmp_path / "released.safetensors")
    warm = train_image(cfg)
    for k, v in released.state_dict().items():
        if not k.endswith(TRAINING_ONLY_BUFFERS):
            assert torch.equal(warm.state_dict()[k], v), k
    bad = _cfg(image_folder, tmp_path / "bad", 0)
    bad.init_from = str(tmp_path / "released.safetensors")
    bad.model = {**SMALL, "latent_dim": 4}
    with pytest.raises(ValueError, match="config"):
        train_image(bad)


def test_restart_after_and_ema_decay_reach_the_quantizer(image_folder, tmp_path):
    """--restart-after 0 must leave every code in place (no re-seeding), and the EMA decay is the
    configured one; with a restart threshold of 2 steps a 16-code codebook on 3 tiny images does re-seed."""
    frozen = _cfg(image_folder, tmp_path / "norestart", 12)
    frozen.restart_after, frozen.ema_decay = 0, 0.9
    model = train_image(frozen)
    assert all(vq.restart_after == 0 and vq.decay == 0.9 for vq in model.quantizer.stages)
    assert sum(vq.restarts for vq in model.quantizer.stages) == 0
    churn = _cfg(image_folder, tmp_path / "restart", 12)
    churn.restart_after = 2
    model = train_image(churn)
    assert sum(vq.restarts for vq in model.quantizer.stages) > 0
