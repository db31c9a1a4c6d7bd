"""Shipped weights: safetensors files inside the package, never pickle.

A weights file holds the tensors of one model plus string metadata: the model id and its config
(JSON). The weights hash (first 16 bytes of SHA-256 of the file; a .vq file of format version 2 records
its first 8) is written into every .vq file so a decoder can tell whether it has the model a file was made with.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from vqcodec.files import atomic_write

__all__ = ["WEIGHTS_DIR", "save_safetensors", "save_weights", "load_weights", "load_release", "weights_hash",
           "file_model_id"]

_M = TypeVar("_M")

WEIGHTS_DIR = Path(__file__).resolve().parent


def save_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write `tensors` and string `metadata` to `path` atomically (`atomic_write`), with the usual file
    mode: safetensors alone creates files 0600, and weights are meant to be shared."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}  # CPU, no shared storage
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor], model_id: str, config: dict,
                 half: bool = False) -> None:
    """Write a model's `tensors` with its model id and JSON config as metadata.

    half: store float32 tensors as float16 (half the file; `load_weights` gives float32 back, and the
    model is then exactly what the file holds on every machine)."""
    if half:
        tensors = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
    save_safetensors(path, tensors, {"model_id": model_id, "config": json.dumps(config)})


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], str, dict]:
    """Read a weights file -> (tensors, model_id, config)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    tensors = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            for k in f.keys():
                t = f.get_tensor(k)
                tensors[k] = t.float() if t.dtype == torch.float16 else t  # half storage, float32 compute
        config = json.loads(meta.get("config", "{}"))
    except (SafetensorError, ValueError) as e:
        raise ValueError(f"{path} is not a vqcodec weights file (safetensors with a model config): {e}") from None
    return tensors, meta.get("model_id", ""), config


def load_release(path: str | Path, build: Callable[[dict[str, torch.Tensor], dict], _M]) -> tuple[_M, str]:
    """A released model file -> (build(tensors, config), model id); a file that does not fit raises ValueError
    naming the path (`build` raises TypeError or ValueError for it)."""
    tensors, model_id, config = load_weights(path)
    try:
        return build(tensors, config), model_id
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None


def weights_hash(path: str | Path) -> bytes:
    """First 16 bytes of the SHA-256 of a weights file."""
    return hashlib.sha256(Path(path).read_bytes()).digest()[:16]


def file_model_id(path: str | Path, blob: bytes | None = None) -> str:
    """A weights file's model id: its metadata's "model_id", else "<file stem>-<8 hex of its SHA-256>".
    `blob`: the file's bytes, if already read."""
    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("model_id"):
        return meta["model_id"]
    return f"{path.stem}-{hashlib.sha256(path.read_bytes() if blob is None else blob).hexdigest()[:8]}"
