"""Training checkpoints on disk: atomic writes, safe loading, RNG states, run-defining settings.

A checkpoint (`checkpoint.pt`, written by `TrainingLoop`) is a dict:
  format      CHECKPOINT_FORMAT
  task        the task's name (a run of one task cannot be resumed by another)
  step        optimizer steps done; elapsed_s: training wall seconds before the checkpoint
  config      the run's settings (dataclass fields, JSON-plain values)
  model       model.state_dict(); optimizer: optimizer.state_dict()
  ranks       one entry per process, in rank order: {"rng": `capture_rng()`, "task": task.state_dict()}
It holds tensors and plain Python values only, so it loads with torch.load(weights_only=True).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import random
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from vqcodec.files import atomic_write

__all__ = ["CHECKPOINT_FORMAT", "capture_rng", "restore_rng", "save_checkpoint", "load_checkpoint",
           "plain", "keep_run_settings", "saved_config"]

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "vqcodec-train/1"
C = TypeVar("C")


def capture_rng() -> dict:
    """This process's Python, NumPy and torch (CPU) random states, as tensors and plain values."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }


def restore_rng(state: dict) -> None:
    """Undo `capture_rng`: the next random numbers are those the captured process would have drawn."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached"]))
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: Path, payload: dict) -> None:
    """torch.save `payload` to `path` atomically: a crash mid-write leaves the previous checkpoint."""
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by `save_checkpoint` (tensors and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--resume given but no checkpoint at {path}; start the run without --resume")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (an older trainer wrote it?); "
                         f"start a new run in another folder, e.g. with --init-from on exported weights")
    return state


def plain(value: Any) -> Any:
    """`value` as JSON would give it back (tuples -> lists, paths -> str): how configs are stored."""
    return json.loads(json.dumps(value, default=str))


def keep_run_settings(cfg: C, saved: dict, keys: tuple[str, ...]) -> C:
    """`cfg` (a dataclass) with the checkpoint's values of the run-defining settings `keys`.

    A resumed run must continue the random streams, schedule and model it started with, so these keys
    come from the checkpoint's `saved` config. A key given as None silently takes the saved value; a
    different given value is overridden with a warning.
    """
    changes = {}
    for key in keys:
        if key not in saved:
            continue
        given, kept = getattr(cfg, key), saved[key]
        if given is not None and plain(given) != kept:
            log.warning("--resume keeps the checkpoint's %s=%s (given %s); start a new run to change it",
                        key, kept, given)
        if given is None or plain(given) != kept:
            changes[key] = kept
    return dataclasses.replace(cfg, **changes) if changes else cfg


def saved_config(path: Path, cls: type[C]) -> C:
    """The settings a run's checkpoint at `path` was written with, as a `cls` dataclass."""
    saved = load_checkpoint(path)["config"]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in saved.items() if k in names})
