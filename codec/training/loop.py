"""One training loop for every trainer (after audiocraft's StandardSolver, but small).

`TrainingLoop` owns everything that is not specific to a model: the learning-rate schedule (linear
warm-up, then cosine decay to `min_lr_fraction` x lr or a constant rate with an optional linear cooldown,
see `vqcodec.training.schedule`; per-group multipliers), the optimizer step (Adam or AdamW, optional
gradient-norm clipping), an optional exponential moving average of the weights (validated and exported
in place of the live weights), checkpoints (every `checkpoint_every` seconds and when the run
ends or stops, written atomically), exact resume (model, optimizer, step, elapsed time, Python/NumPy/torch
random states and the task's own sampler state, one per rank), the JSONL log, the progress bar, the stop
conditions (`stop_at_step`, `max_minutes`, SIGTERM/SIGINT), DistributedDataParallel under torchrun and the
device (`device`: the model, its train module and the weight average live there, each batch is moved there
after the task drew it on the CPU, checkpoints hold CPU tensors, so a run resumes on any device).

A trainer is a `Task`: it builds its model, draws batches, computes the loss, validates and exports.

    class MyTask(Task):
        name = "my-model"
        run_defining = ("batch_size",)           # settings a resumed run keeps from its checkpoint
        def build(self, ctx): ...                # -> Built(model, param groups, optimizer spec)
        def batch(self, step): ...               # -> whatever loss() takes, from the task's own RNG
        def loss(self, model, batch): ...        # -> (scalar loss tensor, {"name": float or [floats]})

    @dataclass(kw_only=True)
    class MyConfig(LoopConfig):
        batch_size: int = 8

    result = TrainingLoop(MyTask(MyConfig(out="runs/x", steps=1000))).run()

On a device other than the CPU (`device="cuda"`), `loss`, `validate` and `export` receive the model on that
device: a task that creates tensors there moves them to `module_device(model)` itself, and lists the device
types it supports in `Task.devices`.

Files in `config.out`: checkpoint.pt (see `vqcodec.training.checkpoint`), log.jsonl (see
`vqcodec.training.runlog`) and whatever `Task.export` writes (at every checkpoint).
"""
from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import random
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from vqcodec.training.checkpoint import (CHECKPOINT_FORMAT, capture_rng, keep_run_settings, load_checkpoint, plain,
                                         restore_rng, save_checkpoint)
from vqcodec.training.distributed import any_rank, barrier, gather_objects, init_distributed
from vqcodec.training.runlog import Metric, MetricMeans, RunLog
from vqcodec.training.schedule import SCHEDULES, lr_at
from vqcodec.training.signals import StopRequests
from vqcodec.training.weight_average import WeightAverage

__all__ = ["LoopConfig", "OptimizerSpec", "Built", "RunContext", "Task", "RunResult", "TrainingLoop", "resolve_device",
           "module_device", "to_device"]

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class LoopConfig:
    """Settings of the loop; a task's config subclasses this and adds its own fields.

    out: run folder. steps: optimizer steps of the whole run (the schedule ends there).
    lr: peak learning rate; warmup_steps: linear warm-up length; min_lr_fraction: floor of the cosine
    decay, as a fraction of lr. seed: seeds Python, NumPy and torch before `Task.build`.
    schedule: "cosine" or "constant" (see `vqcodec.training.schedule`); cooldown_steps: length of the
    constant schedule's final linear decay. A constant-schedule run may be resumed with a larger `steps`
    (extended), or copied and resumed with `steps` = its step + N and `cooldown_steps` = N (a cooldown
    branch). weight_ema: decay per step of an exponential moving average of the trainable parameters
    (0: none); validation and export then use the averaged weights (buffers, e.g. codebooks, are the
    live ones), and validation also reports the live weights under "live_<key>".
    resume: continue the run in `out` from its checkpoint. stop_at_step: stop there (checkpoint written,
    schedule unchanged) so a later --resume continues. max_minutes: stop after this much wall time in this
    invocation. checkpoint_every: seconds between checkpoints. log_every / val_every: steps between log
    lines / validations. threads: torch.set_num_threads. progress: progress bar on stderr (None: only
    when stderr is a terminal). device: where the model trains ("cpu", "cuda", "cuda:1"; see
    `resolve_device`); not run-defining: a run checkpointed on one device resumes on another.
    """

    out: str | None = None
    steps: int = 10000
    lr: float = 1e-3
    warmup_steps: int = 200
    min_lr_fraction: float = 0.05
    schedule: str = "cosine"
    cooldown_steps: int = 0
    weight_ema: float = 0.0
    seed: int = 0
    resume: bool = False
    stop_at_step: int | None = None
    max_minutes: float | None = None
    checkpoint_every: float = 180.0
    log_every: int = 25
    val_every: int = 500
    threads: int | None = None
    progress: bool | None = None
    device: str = "cpu"

    RUN_DEFINING: ClassVar[tuple[str, ...]] = ("seed", "steps", "lr", "warmup_steps", "min_lr_fraction",
                                               "schedule", "cooldown_steps", "weight_ema")
    """Loop settings a resumed run keeps from its checkpoint (random streams and schedule); a
    constant-schedule run takes `steps` and `cooldown_steps` from the command line (extension, cooldown)."""

    def check(self) -> None:
        """Raise ValueError naming every out-of-range setting."""
        bad = []
        if not self.out:
            bad.append("out (the run folder) must be given")
        if self.steps < 0:
            bad.append(f"steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            bad.append(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            bad.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule not in SCHEDULES:
            bad.append(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.cooldown_steps < 0 or self.cooldown_steps > self.steps:
            bad.append(f"cooldown_steps must be in [0, steps={self.steps}], got {self.cooldown_steps}")
        if not 0 <= self.weight_ema < 1:
            bad.append(f"weight_ema must be in [0, 1), got {self.weight_ema}")
        if not 0 <= self.min_lr_fraction <= 1:
            bad.append(f"min_lr_fraction must be in [0, 1], got {self.min_lr_fraction}")
        if self.stop_at_step is not None and self.stop_at_step < 1:
            bad.append(f"stop_at_step must be >= 1, got {self.stop_at_step}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            bad.append(f"max_minutes must be > 0, got {self.max_minutes}")
        if self.checkpoint_every < 0:
            bad.append(f"checkpoint_every must be >= 0 seconds, got {self.checkpoint_every}")
        if self.log_every < 1 or self.val_every < 1:
            bad.append(f"log_every and val_every must be >= 1, got {self.log_every} and {self.val_every}")
        if self.threads is not None and self.threads < 1:
            bad.append(f"threads must be >= 1, got {self.threads}")
        try:
            resolve_device(self.device)
        except ValueError as e:
            bad.append(str(e))
        if bad:
            raise ValueError("invalid training settings: " + "; ".join(bad))


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimizer a task wants. grad_clip: max global gradient norm (0: no clipping)."""

    kind: Literal["adam", "adamw"] = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 0.0

    def make(self, groups: list[dict], lr: float) -> torch.optim.Optimizer:
        kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
        if self.kind not in kinds:
            raise ValueError(f"optimizer kind must be one of {sorted(kinds)}, got {self.kind!r}")
        return kinds[self.kind](groups, lr=lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)


@dataclass
class Built:
    """What `Task.build` returns.

    model: the module whose state is checkpointed and handed to validate/export.
    param_groups: [{"params": [...], "lr_scale": float}, ...]; each group trains at lr_scale x the
        scheduled lr (empty groups are dropped). None: all parameters with requires_grad, scale 1.
    optimizer: the optimizer to build over the groups.
    train_module: the module whose forward() the loss calls, if not `model` (e.g. a wrapper whose
        forward returns the loss); under DDP this is the module that gets wrapped.
    """

    model: nn.Module
    param_groups: list[dict] | None = None
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    train_module: nn.Module | None = None


@dataclass(frozen=True)
class RunContext:
    """What a task may need to know when building: its process, and whether the run is resumed (then
    the loop loads model/optimizer/sampler state after build, so build may skip initialisations)."""

    rank: int
    world_size: int
    resuming: bool
    out_dir: Path


class Task(ABC):
    """One trainer's model-specific part. `config` is a `LoopConfig` subclass with the task's settings.

    Randomness: draw from the global torch/NumPy/Python generators or from generators the task keeps
    in `state_dict()`; both are restored exactly on resume. Under DDP the task runs once per rank
    (`ctx.rank`); give each rank its own sampler seed.
    """

    name: ClassVar[str] = "task"
    """Shown on the progress bar and stored in checkpoints (a run resumes only with the same task)."""
    run_defining: ClassVar[tuple[str, ...]] = ()
    """Config fields a resumed run keeps from its checkpoint (with a warning when given differently)."""
    progress_keys: ClassVar[tuple[str, ...]] = ()
    """Scalar metrics shown on the progress bar beside the loss."""
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    """Device types (`torch.device.type`) the task trains on; its loss, validate and export then handle a model
    on such a device (see the module docstring)."""

    def __init__(self, config: LoopConfig) -> None:
        self.config = config

    @abstractmethod
    def build(self, ctx: RunContext) -> Built:
        """Load data, build the model (global RNGs are seeded with config.seed) and its param groups."""

    @abstractmethod
    def batch(self, step: int) -> Any:
        """The batch of optimizer step `step` (0-based) for this rank."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Metric]]:
        """(scalar loss to minimise, metrics to log). `model` is Built.train_module (or .model),
        DDP-wrapped under torchrun: call it, not its other methods, so gradients are synchronised."""

    def train_mode(self, model: nn.Module) -> None:
        """Put `model` in the mode for a training step (called before every step)."""
        model.train()

    def validate(self, model: nn.Module) -> dict[str, Any]:
        """JSON-able validation results, merged into the log line (rank 0 only). {}: no validation."""
        return {}

    def log_fields(self, model: nn.Module) -> dict[str, Any]:
        """Extra JSON-able values for each log line (state at that step, not averaged; rank 0 only)."""
        return {}

    def export(self, model: nn.Module, out_dir: Path) -> None:
        """Write the release files to `out_dir` (rank 0, at every checkpoint)."""

    def state_dict(self) -> dict:
        """This rank's task state (sampler generators...): tensors and plain values."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()` of the same rank."""

    def samples_per_step(self) -> int:
        """Training samples one rank consumes per step (for samples/s): config.batch_size if any."""
        return int(getattr(self.config, "batch_size", 1))


@dataclass
class RunResult:
    """model: the trained model; step: steps done; finished: step == config.steps;
    stop_reason: "done", "stop_at_step", "max_minutes" or the signal's name ("SIGTERM", "SIGINT")."""

    model: nn.Module
    step: int
    finished: bool
    stop_reason: str


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _param_groups(model: nn.Module, groups: list[dict] | None) -> list[dict]:
    if groups is None:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    groups = [{**g, "params": list(g["params"]), "lr_scale": float(g.get("lr_scale", 1.0))} for g in groups]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the task has no trainable parameters")
    return groups


def _end_reason(step: int, end: int, steps: int) -> str | None:
    if step >= steps:
        return "done"
    return "stop_at_step" if step >= end else None


def resolve_device(name: str) -> torch.device:
    """`torch.device(name)` ("cpu", "cuda", "cuda:1", ...) if this process can train there; else ValueError
    saying what to give instead."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"device {name!r} is not a torch device; give cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        build = f"torch {torch.__version__}" + ("" if torch.version.cuda else " (a CPU-only build)")
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: {build} sees no CUDA GPU here; train with --device cpu, or on a "
                             f"machine with an NVIDIA GPU and a CUDA build of torch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"cuda:0..cuda:{torch.cuda.device_count() - 1}; give one of those")
    elif device.type != "cpu":
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError):
            raise ValueError(f"device {name!r}: torch {torch.__version__} cannot use it here; train with --device cpu "
                             f"or cuda") from None
    return device


def module_device(module: nn.Module) -> torch.device:
    """The device of `module`'s first parameter (or buffer); the CPU for a module without tensors."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


def to_device(value: Any, device: torch.device | str) -> Any:
    """`value` with every tensor in it moved to `device` (dtype and memory format kept; a tensor already there
    is returned as is), recursively through dicts (their type and attributes kept, e.g. a state_dict's
    metadata), lists, tuples and named tuples; any other value is returned unchanged."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        out = copy.copy(value)
        for key, item in value.items():
            out[key] = to_device(item, device)
        return out
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(to_device(item, device) for item in value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(item, device) for item in value)
    return value


class TrainingLoop:
    """Runs a `Task` for `task.config`. `clock` (seconds, monotonic) can be replaced in tests."""

    CHECKPOINT = "checkpoint.pt"
    LOG = "log.jsonl"

    def __init__(self, task: Task, clock: Callable[[], float] = time.monotonic) -> None:
        self.task, self.clock = task, clock
        self.ema: WeightAverage | None = None
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------------------------------ resume
    def _read_checkpoint(self, path: Path) -> dict:
        """Load the checkpoint and adopt its run-defining settings (before the task builds)."""
        state = load_checkpoint(path)
        if state["task"] != self.task.name:
            raise ValueError(f"{path} is a checkpoint of a '{state['task']}' run, this is a '{self.task.name}' "
                             f"run; resume it with its own command or choose another --out")
        keys = LoopConfig.RUN_DEFINING + self.task.run_defining
        if state["config"].get("schedule") == "constant":
            keys = tuple(k for k in keys if k not in ("steps", "cooldown_steps"))
        self.task.config = keep_run_settings(self.task.config, state["config"], keys)
        if state["step"] > self.task.config.steps:
            raise ValueError(f"{path} is at step {state['step']}, past --steps {self.task.config.steps}; "
                             f"give a larger --steps to extend the run")
        return state

    def _load_state(self, state: dict, path: Path, model: nn.Module, opt: torch.optim.Optimizer,
                    rank: int, world: int) -> dict:
        """Load model, optimizer and this rank's task state; returns this rank's entry of state["ranks"]."""
        ranks = state["ranks"]
        if len(ranks) != world:
            raise ValueError(f"{path} was written by {len(ranks)} process(es); resume it with the same number "
                             f"(this run has {world})")
        model.load_state_dict(state["model"])
        try:
            opt.load_state_dict(state["optimizer"])
        except ValueError as e:
            raise ValueError(f"{path}: the optimizer state does not fit this run's parameters ({e}); resume with "
                             f"the settings the run started with, or start a new run") from None
        self.task.load_state_dict(ranks[rank]["task"])
        return ranks[rank]

    # ------------------------------------------------------------------------------------------ output
    def _checkpoint(self, path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int, elapsed: float,
                    rank: int, cpu_s: float | None = None) -> None:
        """Write checkpoint + exports (rank 0); collective: every rank must call it."""
        ranks = gather_objects({"rng": capture_rng(), "task": self.task.state_dict()})
        if rank == 0:
            payload = {
                "format": CHECKPOINT_FORMAT, "task": self.task.name, "step": step, "elapsed_s": elapsed,
                "cpu_s": cpu_s, "config": plain(asdict(self.task.config)), "model": model.state_dict(),
                "optimizer": opt.state_dict(), "ranks": ranks,
                "weight_ema": self.ema.state_dict() if self.ema is not None else None,
            }
            if self.device.type != "cpu":  # CPU tensors: the checkpoint loads anywhere, with or without map_location
                payload = to_device(payload, "cpu")
            save_checkpoint(path, payload)
            with self._exported_weights(model):
                self.task.export(model, path.parent)
        barrier()

    def _exported_weights(self, model: nn.Module):
        """Context in which `model` holds the weights to validate and export (the average, if any)."""
        return self.ema.swapped_in(model) if self.ema is not None else contextlib.nullcontext()

    def _validate(self, model: nn.Module) -> dict[str, Any]:
        """The task's validation of the exported weights, plus the live weights' as live_<key>."""
        with self._exported_weights(model):
            record = self.task.validate(model)
        if self.ema is not None and record:
            record.update({f"live_{k}": v for k, v in self.task.validate(model).items()})
        return record

    # ------------------------------------------------------------------------------------------ run
    def run(self) -> RunResult:
        """Train until config.steps, stop_at_step, max_minutes or a signal; checkpoint; return."""
        task = self.task
        task.config.check()
        self.device = resolve_device(task.config.device)
        if self.device.type not in task.devices:
            raise ValueError(f"the {task.name} trainer runs on {' or '.join(task.devices)} only, not on "
                             f"{task.config.device}; leave out --device (or give --device cpu)")
        rank, world = init_distributed()
        if task.config.threads:
            torch.set_num_threads(task.config.threads)
        out = Path(task.config.out)
        out.mkdir(parents=True, exist_ok=True)
        ckpt_path = out / self.CHECKPOINT
        state = self._read_checkpoint(ckpt_path) if task.config.resume else None
        cfg = task.config

        _seed_everything(cfg.seed)
        built = task.build(RunContext(rank=rank, world_size=world, resuming=state is not None, out_dir=out))
        model = built.model.to(self.device)  # before the optimizer and the weight average are made over it
        if built.train_module is not None:
            built.train_module.to(self.device)
        opt = built.optimizer.make(_param_groups(model, built.param_groups), cfg.lr)
        self.ema = WeightAverage(model, cfg.weight_ema) if cfg.weight_ema > 0 else None
        step, elapsed0, rank_state, cpu0_total = 0, 0.0, None, 0.0
        if state is not None:
            rank_state = self._load_state(state, ckpt_path, model, opt, rank, world)
            step, elapsed0 = int(state["step"]), float(state["elapsed_s"])
            cpu0_total = float(state.get("cpu_s") or elapsed0)  # runs before CPU time was kept: wall time
            if self.ema is not None:
                if state.get("weight_ema") is not None:
                    self.ema.load_state_dict(state["weight_ema"])
                else:  # a run that had no average starts one from its current weights
                    self.ema = WeightAverage(model, cfg.weight_ema)
        module = built.train_module or model
        if world > 1:
            module = nn.parallel.DistributedDataParallel(module)
        if rank_state is not None:
            restore_rng(rank_state["rng"])  # last: nothing above may draw from the restored streams
            log.info("resumed from %s at step %d", ckpt_path, step)

        runlog = RunLog(out / self.LOG, enabled=rank == 0)
        if state is not None:
            runlog.drop_after(step)
        end = cfg.steps if cfg.stop_at_step is None else min(cfg.steps, cfg.stop_at_step)
        params = [p for g in opt.param_groups for p in g["params"]]
        clip = built.optimizer.grad_clip
        samples = task.samples_per_step() * world
        means = MetricMeans()
        show = rank == 0 and (cfg.progress if cfg.progress is not None else sys.stderr.isatty())
        t0 = last_ckpt = interval_t0 = self.clock()
        cpu_t0 = time.process_time()

        def cpu_s() -> float:
            """CPU seconds this process (all its threads) has spent on the run, over all invocations."""
            return cpu0_total + time.process_time() - cpu_t0

        reason = _end_reason(step, end, cfg.steps)
        with StopRequests() as stop, tqdm(total=cfg.steps, initial=step, disable=not show, desc=task.name,
                                          unit="step", dynamic_ncols=True) as bar:
            while reason is None:
                task.train_mode(model)
                lr = lr_at(step, steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                           min_lr_fraction=cfg.min_lr_fraction, schedule=cfg.schedule,
                           cooldown_steps=cfg.cooldown_steps)
                for g in opt.param_groups:
                    g["lr"] = lr * g["lr_scale"]
                loss, metrics = task.loss(module, to_device(task.batch(step), self.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if clip > 0:
                    nn.utils.clip_grad_norm_(params, clip)
                opt.step()
                if self.ema is not None:
                    self.ema.update(model)
                step += 1
                means.add({"loss": loss.item(), **metrics})
                bar.update(1)

                now = self.clock()
                # rank 0's clock decides, any rank's signal counts: every rank takes the same branch
                due, out_of_time, signalled = any_rank([
                    rank == 0 and now - last_ckpt >= cfg.checkpoint_every,
                    rank == 0 and cfg.max_minutes is not None and now - t0 >= 60 * cfg.max_minutes,
                    stop.received is not None,
                ])
                reason = (_end_reason(step, end, cfg.steps) or ("max_minutes" if out_of_time else None)
                          or ((stop.received or "signal") if signalled else None))

                record: dict[str, Any] = {}
                if step % cfg.log_every == 0 or reason is not None:
                    dt = now - interval_t0
                    record = {"lr": lr, **means.means(),
                              "samples_per_s": round(means.count * samples / dt, 3) if dt > 0 else None}
                    if rank == 0:
                        record.update(task.log_fields(model))
                        bar.set_postfix({k: f"{record[k]:.4g}" for k in ("loss", *task.progress_keys)
                                         if isinstance(record.get(k), float)})
                    means.reset()
                    interval_t0 = now
                if rank == 0 and (step % cfg.val_every == 0 or step == end):
                    record.update(self._validate(model))
                if record:
                    runlog.write({**record, "step": step, "time_s": round(elapsed0 + now - t0, 3),
                                  "cpu_s": round(cpu_s(), 3)})  # the loop's clocks: a task cannot restart them
                if due and reason is None:
                    self._checkpoint(ckpt_path, model, opt, step, elapsed0 + self.clock() - t0, rank, cpu_s())
                    last_ckpt = self.clock()
            self._checkpoint(ckpt_path, model, opt, step, elapsed0 + self.clock() - t0, rank, cpu_s())

        if reason in ("done", "stop_at_step"):
            log.info("%s: %s at step %d%s", task.name, "finished" if reason == "done" else "stopped", step,
                     "" if reason == "done" else "; continue with --resume")
        else:
            log.warning("%s: stopped (%s) at step %d of %d with a checkpoint in %s; continue with --resume",
                        task.name, reason, step, cfg.steps, out)
        return RunResult(model=model, step=step, finished=step >= cfg.steps, stop_reason=reason)
