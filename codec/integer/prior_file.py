"""The integer-prior file format: one safetensors file of plain integer tensors plus a format tag.

    metadata  {"format": <tag>}          e.g. "vqcodec-integer-image-prior-v1"; one tag per prior kind
    tensors   int16 / int32 only         weights, biases, multipliers, shifts, lookup tables, and the
                                         network's config and fixed-point format as int32 scalars
                                         "config.<name>", "format.<name>" (`int_scalars`)

No float and no pickle is stored: every number the decoder uses is an integer written by the encoder's
side, so the file alone fixes the decoder's arithmetic (see `vqcodec.integer.layers` for why that
arithmetic is exact). Which tensor names a prior needs is the prior's business (its `state_dict`); this
module writes and reads files, checks the tag and the dtypes, and says clearly when a file is not the
expected kind (`PriorFileError`, a ValueError).
"""
from __future__ import annotations

from pathlib import Path

import torch

from vqcodec.weights.io import save_safetensors

__all__ = ["PriorFileError", "STORED_DTYPES", "int_scalars", "read_int_scalars", "check_stored_dtypes",
           "save_prior_file", "load_prior_file"]

STORED_DTYPES = (torch.int16, torch.int32)


class PriorFileError(ValueError):
    """A file is not an integer prior of the expected kind (wrong format tag, not safetensors, bad dtypes)."""


def int_scalars(prefix: str, values: dict[str, int]) -> dict[str, torch.Tensor]:
    """{name: int} -> {prefix.name: int32 scalar tensor} (config and format entries of a prior file)."""
    return {f"{prefix}.{k}": torch.tensor(int(v), dtype=torch.int32) for k, v in values.items()}


def read_int_scalars(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, int]:
    """Inverse of `int_scalars`: every tensor named prefix.<name> -> {name: int}."""
    p = prefix + "."
    return {k[len(p):]: int(v) for k, v in tensors.items() if k.startswith(p)}


def check_stored_dtypes(tensors: dict[str, torch.Tensor]) -> None:
    """Raise PriorFileError unless every tensor is int16 or int32."""
    for k, v in tensors.items():
        if v.dtype not in STORED_DTYPES:
            raise PriorFileError(f"integer prior tensor {k} is {v.dtype}; only int16 / int32 are stored")


def save_prior_file(path: str | Path, tensors: dict[str, torch.Tensor], format_tag: str) -> None:
    """Write `tensors` (int16 / int32 only) with metadata {"format": format_tag}, atomically."""
    check_stored_dtypes(tensors)
    save_safetensors(path, tensors, {"format": format_tag})


def load_prior_file(path: str | Path, format_tag: str, export_hint: str = "") -> dict[str, torch.Tensor]:
    """Read a file written by `save_prior_file` with the same `format_tag` -> {name: tensor}.

    Raises FileNotFoundError for a missing file and PriorFileError (naming the file, the tag found and
    the tag expected; `export_hint` says how to make a right one) for anything else.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"integer prior file not found: {path}")
    hint = f"; {export_hint}" if export_hint else ""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for non-safetensors data
        raise PriorFileError(f"{path} is not a safetensors file ({e}), so not an integer prior "
                             f"({format_tag}){hint}") from e
    found = meta.get("format")
    if found != format_tag:
        what = f"its format tag is {found!r}" if found else "it has no format tag"
        raise PriorFileError(f"{path} is not an integer prior of kind {format_tag} ({what}){hint}")
    tensors = load_file(str(path))
    check_stored_dtypes(tensors)
    return tensors
