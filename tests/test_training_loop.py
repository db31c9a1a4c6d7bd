"""The shared training loop (codec/training/loop.py) on a toy task (tests/helpers/toy_task.py): exact
resume after every kind of stop, the learning-rate schedule, the JSONL log, atomic checkpoints, resume
safeguards, the CLI flags, and DDP under torchrun."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from vqcodec.training.loop import LoopConfig, TrainingLoop
from vqcodec.training.schedule import lr_at

HELPERS = Path(__file__).parent / "helpers"


def _load_toy():
    spec = importlib.util.spec_from_file_location("toy_task", HELPERS / "toy_task.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_task"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


toy = _load_toy()


def run(out: Path, clock=None, **settings):
    """One invocation of the toy task (fake clock: 60 s per step) -> RunResult."""
    clock = clock or toy.FakeClock()
    cfg = toy.ToyConfig(out=str(out), threads=1, **settings)
    return TrainingLoop(toy.ToyTask(cfg, clock), clock=clock).run()


def checkpoint(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)


def assert_same(a, b, where="checkpoint"):
    """Nested dicts/lists/tensors equal bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_same_run(out_a: Path, out_b: Path) -> None:
    """Model, optimizer, step, elapsed time, RNG and sampler states of two runs' last checkpoints agree."""
    a, b = checkpoint(out_a), checkpoint(out_b)
    for key in ("step", "elapsed_s", "model", "optimizer", "ranks"):
        assert_same(a[key], b[key], key)


def log_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------ schedule
def test_schedule_warmup_cosine_and_floor():
    kw = dict(steps=10, lr=2.0, warmup_steps=4, min_lr_fraction=0.1)
    assert [lr_at(s, **kw) for s in range(4)] == pytest.approx([0.5, 1.0, 1.5, 2.0])  # linear warm-up
    assert lr_at(4, **kw) == pytest.approx(2.0)  # cosine starts at the peak
    assert lr_at(7, **kw) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))  # half way down the cosine
    assert lr_at(10, **kw) == pytest.approx(0.2) and lr_at(25, **kw) == pytest.approx(0.2)  # the floor
    assert lr_at(0, steps=10, lr=1.0, warmup_steps=0, min_lr_fraction=0.0) == 1.0


def test_param_groups_keep_their_multipliers(tmp_path):
    """Each step's lr (in the log) is the schedule's, and every group trains at its multiple of it."""
    result = run(tmp_path, stop_at_step=5, log_every=1)
    assert result.step == 5 and not result.finished and result.stop_reason == "stop_at_step"
    kw = dict(steps=8, lr=0.05, warmup_steps=2, min_lr_fraction=0.1)
    assert [r["lr"] for r in log_lines(tmp_path) if "lr" in r] == pytest.approx([lr_at(s, **kw) for s in range(5)])
    groups = checkpoint(tmp_path)["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([lr_at(4, **kw), toy.HEAD_LR_SCALE * lr_at(4, **kw)])


# ------------------------------------------------------------------------------------------ exact resume
def test_stop_at_step_then_resume_is_bit_identical(tmp_path):
    straight = run(tmp_path / "a")
    assert straight.finished and straight.step == 8 and straight.stop_reason == "done"
    run(tmp_path / "b", stop_at_step=3)
    assert checkpoint(tmp_path / "b")["step"] == 3
    resumed = run(tmp_path / "b", resume=True)
    assert resumed.finished and resumed.step == 8
    assert_same_run(tmp_path / "a", tmp_path / "b")
    assert checkpoint(tmp_path / "b")["elapsed_s"] == 8 * 60.0  # 3 + 5 steps of the fake clock


def test_max_minutes_then_resume_is_bit_identical(tmp_path):
    run(tmp_path / "a")
    stopped = run(tmp_path / "b", max_minutes=2.5)  # 60 s per step: over the limit after step 3
    assert (stopped.step, stopped.finished, stopped.stop_reason) == (3, False, "max_minutes")
    assert checkpoint(tmp_path / "b")["step"] == 3
    run(tmp_path / "b", resume=True)
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_sigterm_then_resume_is_bit_identical(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    run(tmp_path / "a")
    stopped = run(tmp_path / "b", signal_at_step=4)  # arrives during step 4 (0-based): stops after it
    assert (stopped.step, stopped.stop_reason) == (5, "SIGTERM")
    assert signal.getsignal(signal.SIGTERM) is before  # the loop put the previous handler back
    run(tmp_path / "b", resume=True)
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_resume_keeps_run_defining_settings(tmp_path, caplog):
    """Resumed with another batch size, seed and lr, the run keeps the checkpoint's (with a warning)."""
    run(tmp_path / "a")
    run(tmp_path / "b", stop_at_step=3)
    with caplog.at_level("WARNING"):
        run(tmp_path / "b", resume=True, batch_size=2, seed=7, lr=0.5)
    assert_same_run(tmp_path / "a", tmp_path / "b")
    assert "batch_size=4" in caplog.text and "seed=0" in caplog.text and "lr=0.05" in caplog.text


def test_resume_safeguards(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run(tmp_path / "none", resume=True)
    run(tmp_path / "b", stop_at_step=2)
    state = checkpoint(tmp_path / "b")
    torch.save({**state, "ranks": state["ranks"] * 2}, tmp_path / "b" / "checkpoint.pt")
    with pytest.raises(ValueError, match="written by 2 process"):
        run(tmp_path / "b", resume=True)
    torch.save({**state, "task": "image"}, tmp_path / "b" / "checkpoint.pt")
    with pytest.raises(ValueError, match="'image' run"):
        run(tmp_path / "b", resume=True)
    torch.save({"model": {}}, tmp_path / "b" / "checkpoint.pt")  # e.g. written by the old trainers
    with pytest.raises(ValueError, match="new run"):
        run(tmp_path / "b", resume=True)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="lr must be > 0"):
        LoopConfig(out="x", lr=0.0).check()
    with pytest.raises(ValueError, match="min_lr_fraction"):
        LoopConfig(out="x", min_lr_fraction=1.5).check()
    with pytest.raises(ValueError, match="out"):
        LoopConfig().check()
    LoopConfig(out="x").check()


# ------------------------------------------------------------------------------------------ log
def test_jsonl_log(tmp_path):
    run(tmp_path)
    lines = log_lines(tmp_path)
    assert [r["step"] for r in lines] == [2, 4, 6, 8]
    for r in lines:
        assert {"step", "time_s", "lr", "loss", "mse", "per_half", "samples_per_s"} <= r.keys()
        assert r["time_s"] == 60.0 * r["step"]
        assert r["samples_per_s"] == pytest.approx(2 * 4 / 120.0, abs=1e-3)  # 2 steps x 4 samples in 120 s
        assert r["loss"] == pytest.approx(r["mse"]) and len(r["per_half"]) == 2
    assert [r["step"] for r in lines if "val_mse" in r] == [4, 8]


def test_logged_clocks_are_the_loops_over_all_invocations(tmp_path, monkeypatch):
    """time_s and cpu_s count the whole run across resumes; a task's log fields cannot restart them."""
    monkeypatch.setattr(toy.ToyTask, "log_fields", lambda self, model: {"cpu_s": -1.0, "time_s": -1.0, "x": 1})
    run(tmp_path, stop_at_step=4)
    cpu_at_stop = checkpoint(tmp_path)["cpu_s"]
    run(tmp_path, resume=True)
    lines = log_lines(tmp_path)
    assert all(r["x"] == 1 and r["time_s"] == 60.0 * r["step"] for r in lines)
    cpu = [r["cpu_s"] for r in lines]
    assert min(cpu) >= 0 and cpu == sorted(cpu) and cpu[-1] >= cpu_at_stop


def test_resume_drops_log_lines_of_redone_steps(tmp_path):
    """A run killed after its checkpoint logged steps the resumed run redoes: those lines go."""
    run(tmp_path, stop_at_step=3)
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": 4, "loss": 1.0}) + "\n" + '{"step": 5, "lo')  # + a torn last line
    run(tmp_path, resume=True)
    assert [r["step"] for r in log_lines(tmp_path)] == [2, 3, 4, 6, 8]
    assert log_lines(tmp_path)[2]["loss"] != 1.0


def test_progress_bar_only_when_asked(tmp_path, capsys):
    run(tmp_path / "quiet")  # stderr is not a terminal under pytest
    assert "toy" not in capsys.readouterr().err
    run(tmp_path / "loud", progress=True)
    assert "toy" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "b"
    run(out, stop_at_step=3)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary left behind
    good = (out / "checkpoint.pt").read_bytes()

    real_save = torch.save

    def torn_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        run(out, resume=True)  # the first checkpoint of the resumed run (step 6) fails mid-write
    assert (out / "checkpoint.pt").read_bytes() == good
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(torch, "save", real_save)
    run(out, resume=True)  # the old checkpoint still resumes exactly
    run(tmp_path / "a")
    assert_same_run(tmp_path / "a", out)


# ------------------------------------------------------------------------------------------ CLI
def _help(command: str) -> str:
    from vqcodec.cli.train import train

    res = CliRunner().invoke(train, [command, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.output


def test_cli_flags_are_shared():
    flags = ["--steps", "--stop-at-step", "--max-minutes", "--resume", "--threads", "--lr", "--min-lr-fraction",
             "--warmup-steps", "--checkpoint-every", "--log-every", "--val-every", "--out", "--seed"]
    for command in ("image", "prior"):
        text = _help(command)
        for flag in flags:
            assert flag in text, (command, flag)
        assert "--max-steps-now" not in text and "--checkpoint-minutes" not in text  # hidden aliases


@pytest.mark.parametrize("args", [["--steps", "0"], ["--steps", "5", "--stop-at-step", "6"],
                                  ["--min-lr-fraction", "1.5"], ["--checkpoint-every", "-1"], ["--lr", "0"],
                                  ["--max-minutes", "0"], ["--warmup-steps", "-1"], ["--threads", "0"]])
def test_cli_out_of_range_values_are_usage_errors(tmp_path, args):
    from vqcodec.cli.train import train

    res = CliRunner().invoke(train, ["image", "--data", str(tmp_path), "--out", str(tmp_path / "run"), *args])
    assert res.exit_code == 2, res.output
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------ DDP
# torchrun of the interpreter running the tests (`python -m torch.distributed.run`), never one found on PATH.
needs_torchrun = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def _torchrun_toy(out: Path, mode: str) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(HELPERS / "toy_ddp_worker.py"), str(out), mode],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@needs_torchrun
def test_ddp_replicas_stay_identical(tmp_path):
    """Each rank draws different data (own generator): only gradient averaging keeps them equal."""
    r0, r1 = _torchrun_toy(tmp_path, "straight")
    assert r0["digest"] == r1["digest"] and r0["step"] == r1["step"] == 8
    ranks = checkpoint(tmp_path)["ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["task"]["gen"], ranks[1]["task"]["gen"])


@needs_torchrun
def test_ddp_signal_on_one_rank_stops_all(tmp_path):
    """SIGTERM reaching rank 1 only: both ranks stop after the same step, with one checkpoint."""
    r0, r1 = _torchrun_toy(tmp_path, "sigterm1")
    assert r0["step"] == r1["step"] == 3 and r0["digest"] == r1["digest"]
    assert r1["reason"] == "SIGTERM" and r0["reason"] == "signal"
    assert checkpoint(tmp_path)["step"] == 3
