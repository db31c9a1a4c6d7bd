"""Training on a device (`LoopConfig.device`, `vqcodec train ... --device`) and the one-command GPU scripts of
benchmarks/gpu/: the flag's check, CPU runs unchanged, batches moved through nested structures, a checkpoint
written with CUDA tensors resuming on the CPU, the photo packer, the device scripts' smoke runs on the CPU, and
(on a machine with CUDA only) runs on the GPU that resume on the CPU."""
from __future__ import annotations

import collections
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vqcodec.image.model import load_image_model
from vqcodec.training.image_model import TrainImageConfig, split_holdout, train_image
from vqcodec.training.loop import LoopConfig, module_device, resolve_device, to_device
from vqcodec.weights.io import load_weights

REPO = Path(__file__).resolve().parents[1]
GPU = REPO / "benchmarks" / "gpu"
SMALL = dict(latent_dim=8, num_stages=3, num_codes=16, width_low=32, width_mid=16, width_high=8,
             enc_blocks=1, dec_blocks=1)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_shell = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                 reason="needs bash and timeout (coreutils)")


def _script(name: str):
    """A benchmarks/gpu/ script imported as a module."""
    spec = importlib.util.spec_from_file_location(f"vqcodec_gpu_{name}", GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _cfg(data, out, steps, **kw) -> TrainImageConfig:
    base = dict(data=str(data), out=str(out), steps=steps, batch_size=2, crop=32, warmup_steps=2,
                checkpoint_every=0.0, threads=1, bf16=False, model=SMALL, val_every=1000)
    return TrainImageConfig(**{**base, **kw})


def _same_tensors(sa: dict, sb: dict) -> bool:
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def _same_params(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return _same_tensors(a.state_dict(), b.state_dict())


def _same_export(run_a: Path, run_b: Path) -> bool:
    """The two runs exported the same tensors and id (the files' metadata order may differ)."""
    ta, ida, _ = load_weights(run_a / "image_model.safetensors")
    tb, idb, _ = load_weights(run_b / "image_model.safetensors")
    return ida == idb and _same_tensors(ta, tb)


# ------------------------------------------------------------------------------------------ the flag
def test_device_flag_is_shared_and_checked(tmp_path):
    from vqcodec.cli.train import LOOP_FLAGS, train

    assert "device" in LOOP_FLAGS
    for command in ("image", "image-decoder", "prior", "audio"):
        res = CliRunner().invoke(train, [command, "--help"], terminal_width=200)
        assert res.exit_code == 0 and "--device" in res.output, command
    bad = ["bogus", "cuda:x"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:0"])
    for device in bad:
        res = CliRunner().invoke(train, ["image", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                                         "--device", device])
        assert res.exit_code == 2, res.output
        assert "--device" in res.output and ("cpu" in res.output or "cuda" in res.output), res.output
    assert not (tmp_path / "run").exists()


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cpu"):
            resolve_device("cuda")
    else:
        with pytest.raises(ValueError, match="cuda:0"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_loop_refuses_a_device_the_task_does_not_handle(image_folder, tmp_path):
    """`meta` is a device torch has, but no trainer lists it in Task.devices: refused before anything is written."""
    with pytest.raises(ValueError, match="runs on cpu or cuda only"):
        train_image(_cfg(image_folder, tmp_path / "run", 1, device="meta"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="invalid training settings: device 'tpu7'"):
        train_image(_cfg(image_folder, tmp_path / "run", 1, device="tpu7"))


# ------------------------------------------------------------------------------------------ the loop
def test_cpu_device_run_equals_the_default(image_folder, tmp_path):
    """device="cpu" is the run it always was (the refinement noise, the depth rule, the weight average and the
    validation all took device-aware paths), and the device is recorded but not run-defining."""
    kw = dict(refine_prob=0.5, depth_mode="rd", weight_ema=0.9, holdout=1, val_every=3, schedule="constant")
    default = train_image(_cfg(image_folder, tmp_path / "a", 3, **kw))
    explicit = train_image(_cfg(image_folder, tmp_path / "b", 3, device="cpu", **kw))
    assert module_device(explicit) == torch.device("cpu") and _same_params(default, explicit)
    assert _same_export(tmp_path / "a", tmp_path / "b")
    ckpt = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert ckpt["config"]["device"] == "cpu" and "device" not in LoopConfig.RUN_DEFINING


def test_to_device_moves_nested_batches():
    Pair = collections.namedtuple("Pair", "a b")
    state = collections.OrderedDict(w=torch.ones(2))
    state._metadata = {"": {"version": 1}}  # as a state_dict carries
    x = torch.zeros(1, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    batch = {"x": x, "pair": Pair(torch.arange(3), None), "list": [torch.ones(1), 3, "s"],
             "tuple": (torch.zeros(2, dtype=torch.int64), 1.5), "state": state}
    moved = to_device(batch, "meta")
    assert type(moved["pair"]) is Pair and moved["pair"].b is None and moved["pair"].a.device.type == "meta"
    assert moved["list"][1:] == [3, "s"] and moved["list"][0].is_meta and isinstance(moved["tuple"], tuple)
    assert moved["tuple"][0].dtype == torch.int64 and moved["tuple"][1] == 1.5
    assert type(moved["state"]) is collections.OrderedDict and moved["state"]._metadata == state._metadata
    assert moved["x"].is_meta and moved["x"].is_contiguous(memory_format=torch.channels_last)
    assert batch["x"].device.type == "cpu"  # the input is left as it was
    same = to_device(batch, "cpu")
    assert same["x"] is x and same["pair"].a is batch["pair"].a  # already there: the same tensors


def _relocate_to_cuda(path: Path) -> None:
    """Rewrite a checkpoint so that its tensors are stored as CUDA tensors (as torch.save of GPU tensors writes
    them), without a GPU: the storage location tags say cuda:0."""
    import torch.serialization as ser

    state = torch.load(path, map_location="cpu", weights_only=True)
    tag = ser.location_tag
    ser.location_tag = lambda storage: "cuda:0"
    try:
        buf = io.BytesIO()
        torch.save(state, buf)
    finally:
        ser.location_tag = tag
    path.write_bytes(buf.getvalue())


def test_checkpoint_with_cuda_tensors_resumes_on_cpu(image_folder, tmp_path):
    kw = dict(weight_ema=0.9, schedule="constant", refine_prob=0.5)
    straight = train_image(_cfg(image_folder, tmp_path / "a", 4, **kw))
    train_image(_cfg(image_folder, tmp_path / "b", 2, **kw))
    _relocate_to_cuda(tmp_path / "b" / "checkpoint.pt")
    if not torch.cuda.is_available():  # the file really names CUDA: a plain load fails here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    resumed = train_image(_cfg(image_folder, tmp_path / "b", 4, resume=True, **kw))
    assert _same_params(straight, resumed)
    assert _same_export(tmp_path / "a", tmp_path / "b")  # the weight average resumed too


# ------------------------------------------------------------------------------------------ pack_photos.py
def _noise_photos(folder: Path, n: int = 3, size: tuple[int, int] = (72, 96)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = []
    for i in range(n):
        yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
        base = np.stack([np.sin(xx / (4 + i)), np.cos(yy / (3 + i)), np.sin((xx + yy) / 7)], -1) * 0.4 + 0.5
        arr = (base * 255 + rng.normal(0, 20, base.shape)).clip(0, 255).astype(np.uint8)
        paths.append(folder / f"{i:03d}_photo-{i}.png")
        Image.fromarray(arr).save(paths[-1])
    return paths


def test_pack_photos_keeps_names_and_fits_the_limit(tmp_path, capsys):
    pack = _script("pack_photos")
    src = tmp_path / "photos"
    _noise_photos(src)
    (src / "MANIFEST.csv").write_text("file,license\n")
    out = tmp_path / "pack"
    assert pack.main(["--data", str(src), "--out", str(out), "--max-mib", "5"]) == 0
    text = capsys.readouterr().out
    assert "JPEG quality 95" in text and "mean PSNR" in text
    names = sorted(p.name for p in out.glob("*.jpg"))
    assert [Path(n).stem for n in names] == sorted(p.stem for p in src.glob("*.png"))
    assert (out / "MANIFEST.csv").is_file() and json.loads((out / "PACK.json").read_text())["quality"] == 95
    # the held-out split by name is the same
    assert [p.stem for p in split_holdout(out, 1)[1]] == [p.stem for p in split_holdout(src, 1)[1]]
    big = sum(p.stat().st_size for p in out.iterdir())

    limit = 0.7 * big / 2**20
    assert pack.main(["--data", str(src), "--out", str(out), "--max-mib", f"{limit:.6f}"]) == 0  # replaces the pack
    summary = json.loads((out / "PACK.json").read_text())
    assert summary["quality"] < 95 and sum(p.stat().st_size for p in out.iterdir()) <= limit * 2**20
    assert len(list(out.glob("*.jpg"))) == 3 and 20 < summary["mean_psnr_db"] < 60

    assert pack.main(["--data", str(src), "--out", str(out), "--max-mib", "0.001"]) == 1
    assert "larger --max-mib" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    assert pack.main(["--data", str(src), "--out", str(tmp_path / "other"), "--max-mib", "5"]) == 1
    assert (tmp_path / "other" / "keep.txt").is_file()  # never empties a folder it did not write


def test_pack_photos_copies_jpeg_originals(tmp_path):
    pack = _script("pack_photos")
    src = tmp_path / "photos"
    png = _noise_photos(src, n=2)
    Image.open(png[1]).save(src / "001_photo-1.jpg", quality=80)  # a JPEG original (same stem: refused)
    with pytest.raises(ValueError, match="same stem"):
        pack.pack(src, tmp_path / "x", 5)
    png[1].unlink()
    summary = pack.pack(src, tmp_path / "pack", 5)
    assert (tmp_path / "pack" / "001_photo-1.jpg").read_bytes() == (src / "001_photo-1.jpg").read_bytes()
    assert summary["copied"] == 1 and summary["reencoded"] == 1


# ------------------------------------------------------------------------------------------ collect_run.py
def test_collect_run_splits_keeps_and_joins(tmp_path):
    collect = _script("collect_run")
    run, keep = tmp_path / "run", tmp_path / "keep"
    run.mkdir()
    rng = np.random.default_rng(0)
    files = {"train.log": 100, "log.jsonl": 200, "image_model.safetensors": 2500, "checkpoint.pt": 9000}
    for name, size in files.items():
        (run / name).write_bytes(rng.bytes(size))
    (keep / "cache").mkdir(parents=True)
    (run / "cache").symlink_to(keep / "cache")
    record = collect.pack_run(run, keep, part_mib=1024 / 2**20, max_files=6, max_mib=1)
    assert record["returned"]["image_model.safetensors"]["parts"] == [f"image_model.safetensors.part{i}"
                                                                       for i in (1, 2, 3)]
    assert set(record["kept_on_device"]) == {"checkpoint.pt", "cache"}  # 9 parts do not fit; the link is dropped
    assert (keep / "checkpoint.pt").stat().st_size == 9000 and (keep / "cache").is_dir()
    assert not (run / "cache").exists() and not (run / "checkpoint.pt").exists()
    joined = collect.join_run(run, tmp_path / "joined")
    assert {p.name for p in joined} == {"train.log", "log.jsonl", "image_model.safetensors"}
    assert (tmp_path / "joined" / "image_model.safetensors").stat().st_size == 2500
    (run / "image_model.safetensors.part2").write_bytes(b"changed")
    with pytest.raises(ValueError, match="sha256"):
        collect.join_run(run, tmp_path / "joined2")


# ------------------------------------------------------------------------------------------ the device scripts
def _run_script(name: str, data: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    """One of benchmarks/gpu/*.sh on the CPU (VQ_DEVICE=cpu), one thread, never installing anything."""
    env = {**os.environ, "VQ_DEVICE": "cpu", "VQ_DATA": str(data), "OUT": str(out), "VQ_KEEP_DIR": str(out / "keep"),
           "VQ_INSTALL": "0", "VQ_THREADS": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(GPU / name), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


@needs_shell
def test_image_device_script_smoke_run_on_cpu(image_folder, tmp_path):
    out = tmp_path / "out"
    proc = _run_script("train_image_on_device.sh", image_folder, out, "--holdout", "1", "--steps", "2",
                       "--batch-size", "2", "--crop", "32", "--model-id", "gpu-smoke")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = out / "run"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2 and "val" in log[-1] and "live_val" in log[-1]
    assert "--device cpu" in (run / "train.log").read_text() and "torch" in (run / "train.log").read_text()
    returned = json.loads((run / "RETURNED.json").read_text())["returned"]
    assert all(size <= 16 * 2**20 for size in (p.stat().st_size for p in run.iterdir()))
    assert len(list(run.iterdir())) <= 8 and "image_model.safetensors" in returned
    joined = _script("collect_run").join_run(run, tmp_path / "joined")
    model, model_id = load_image_model(tmp_path / "joined" / "image_model.safetensors")
    assert model_id == "gpu-smoke" and any(p.name == "image_model.safetensors" for p in joined)
    assert (out / "keep" / "checkpoint.pt").is_file() or "checkpoint.pt" in returned


@needs_shell
def test_decoder_device_script_smoke_run_on_cpu(tmp_path):
    photos = tmp_path / "photos"
    _noise_photos(photos, size=(80, 72))
    out = tmp_path / "out"
    proc = _run_script("train_image_decoder_on_device.sh", photos, out, "--holdout", "1", "--steps", "2",
                       "--batch-size", "2", "--crop", "32", "--vq-qualities", "6", "--refined-qualities", "26",
                       "--loss", "kind")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (out / "run" / "log.jsonl").read_text()
    assert '"step": 2' in log and '"codec_mean"' in log
    assert len(list((out / "keep" / "codec_inputs").glob("*.npz"))) == 3  # the cache stayed on the "device"
    assert not (out / "run" / "codec_inputs").exists()


def test_device_script_without_out_or_data_says_what_to_do(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run(["bash", str(GPU / "train_image_on_device.sh")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "set OUT" in proc.stderr
    proc = _run_script("train_image_on_device.sh", tmp_path / "missing", tmp_path / "out")
    assert proc.returncode == 1 and "pack_photos.py" in proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------ on a GPU
@needs_cuda
def test_gpu_image_run_resumes_on_cpu(image_folder, tmp_path):
    """On CUDA: bf16 autocast, the refinement levels, per-block depths, weight average, validation and export; the
    checkpoint holds CPU tensors and the run continues on the CPU."""
    kw = dict(refine_prob=0.5, depth_mode="rd", weight_ema=0.9, holdout=1, val_every=2, schedule="constant",
              bf16=True, model={**SMALL, "refine_levels": 2, "depth_input": True})
    model = train_image(_cfg(image_folder, tmp_path / "g", 2, device="cuda", **kw))
    assert module_device(model).type == "cuda"
    ckpt = torch.load(tmp_path / "g" / "checkpoint.pt", weights_only=True)  # no map_location needed

    def devices(value):
        if isinstance(value, torch.Tensor):
            return {value.device.type}
        items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else []
        return set().union(*(devices(v) for v in items)) if items else set()

    assert devices(ckpt) == {"cpu"}
    assert '"val"' in (tmp_path / "g" / "log.jsonl").read_text()
    load_image_model(tmp_path / "g" / "image_model.safetensors")
    resumed = train_image(_cfg(image_folder, tmp_path / "g", 4, device="cpu", resume=True, **kw))
    assert module_device(resumed).type == "cpu"
    assert '"step": 4' in (tmp_path / "g" / "log.jsonl").read_text()


@needs_cuda
def test_gpu_decoder_run(tmp_path):
    """On CUDA: the decoder fine-tuning (batches made on the CPU from the cached codec inputs, the "kind" loss)."""
    from vqcodec.training.image_decoder import TrainImageDecoderConfig, train_image_decoder

    photos = tmp_path / "photos"
    _noise_photos(photos, size=(80, 72))
    cfg = TrainImageDecoderConfig(data=str(photos), out=str(tmp_path / "run"), steps=2, batch_size=2, crop=32,
                                  holdout=1, warmup_steps=1, checkpoint_every=0.0, threads=1, val_every=2,
                                  vq_qualities=(6,), refined_qualities=(26,), loss="kind", device="cuda")
    model = train_image_decoder(cfg)
    assert module_device(model).type == "cuda"
    assert '"codec_mean"' in (tmp_path / "run" / "log.jsonl").read_text()
    load_image_model(tmp_path / "run" / "image_model.safetensors")
