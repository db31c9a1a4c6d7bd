"""Released models, and which codec decodes a file.

A .vq file names every model component that made it: its role ("vqvae", "prior"), its model id and the
first bytes of the SHA-256 of its weights file (8 in format version 2, 16 in version 1; matched as a
prefix of the installed file's hash, `vqcodec.bitstream.hash_matches`). This module maps those names to installed weights
files and builds the codec of the file's modality from them, so

* retraining one component (say the image prior) gives it a new id and a new file, and files made with
  the previous component keep decoding as long as that component is installed beside the new one;
* a file whose component is not installed gets a `VQFormatError` that names the component and the
  vqcodec releases that shipped it (from the manifest's `retired` list, or the release the file says
  made it).

The installed components are listed in `codec/weights/MANIFEST.json`:

    {"release": "0.2.0",
     "components": [{"modality": "image", "role": "vqvae", "model_id": "...", "file": "...",
                     "weights_hash": "<32 hex>", "release": "<first release that shipped it>",
                     "default": true}, ...],
     "retired": [{"modality": ..., "role": ..., "model_id": ..., "weights_hash": ..., "releases": "0.1.0"}]}

`$VQCODEC_WEIGHTS_DIR` names another folder: with a MANIFEST.json it is read the same way; without one,
the files `<modality>_vqvae.safetensors` and `<modality>_prior.safetensors` found there are that
modality's default components (their ids from the files' metadata), which is what training writes.

Format-version-1 files name one model id and a hash of the model and prior files together; they resolve to
the installed (vqvae, prior) pair of that combined hash.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

from vqcodec import __version__
from vqcodec.bitstream import hash_matches
from vqcodec.bitstream.errors import VQFormatError
from vqcodec.weights.io import WEIGHTS_DIR, file_model_id, weights_hash

__all__ = [
    "MODALITIES",
    "ROLES",
    "OPTIONAL_ROLES",
    "WEIGHTS_ENV",
    "InstalledComponent",
    "ModelRegistry",
    "ComponentName",
    "default_registry",
    "codec_class",
]

MODALITIES = ("image", "audio")
ROLES = ("vqvae", "prior")
OPTIONAL_ROLES = ("speaker-decoder",)
"""Components a codec does not need (no file names them): found with `ModelRegistry.optional`. A folder without
a manifest holds them as `<modality>_<role with '_' for '-'>.safetensors`."""
WEIGHTS_ENV = "VQCODEC_WEIGHTS_DIR"
MANIFEST = "MANIFEST.json"

# modality -> "module:Class" of its codec, imported only when a file of that modality is coded
_CODECS = {"image": "vqcodec.image.codec:ImageCodec", "audio": "vqcodec.audio.codec:AudioCodec"}


class ComponentName(Protocol):
    """What a .vq file says about one component (vqcodec.bitstream's ModelComponent has these fields)."""

    role: str
    model_id: str
    weights_hash: bytes


@dataclass(frozen=True)
class InstalledComponent:
    """One installed weights file.

    Attributes:
        modality: "image" or "audio".
        role: "vqvae" (encoder, quantizer, decoder) or "prior" (integer prior for range coding).
        model_id: human-readable id, e.g. "image-f8-s8-k512-v3"; a retrained component gets a new one.
        path: the safetensors file.
        weights_hash: first 16 bytes of the SHA-256 of the file (what .vq files record).
        release: the first vqcodec release that shipped it ("" for a local, unreleased file).
        default: whether the encoder uses it for new files.
    """

    modality: str
    role: str
    model_id: str
    path: Path
    weights_hash: bytes
    release: str = ""
    default: bool = False


_file_hash = weights_hash  # first 16 bytes of the file's SHA-256


class ModelRegistry:
    """The components installed in one weights folder (see the module docstring for its two forms)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        manifest = self.folder / MANIFEST
        self.retired: list[dict[str, str]] = []
        if manifest.is_file():
            self.components = self._from_manifest(manifest)
        else:
            self.components = self._discover()
        if not self.folder.is_dir():
            raise FileNotFoundError(f"weights folder not found: {self.folder}; unset ${WEIGHTS_ENV} or point it at "
                                    "a folder holding vqcodec weights")

    def _from_manifest(self, manifest: Path) -> list[InstalledComponent]:
        try:
            doc = json.loads(manifest.read_text())
            self.retired = list(doc.get("retired", []))
            return [
                InstalledComponent(c["modality"], c["role"], c["model_id"], self.folder / c["file"],
                                   bytes.fromhex(c["weights_hash"]), c.get("release", ""), bool(c.get("default")))
                for c in doc["components"]
            ]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{manifest} is damaged ({e}); reinstall vqcodec") from None

    def _discover(self) -> list[InstalledComponent]:
        found = []
        for modality in MODALITIES:
            for role in ROLES:
                path = self.folder / f"{modality}_{role}.safetensors"
                if path.is_file():
                    found.append(InstalledComponent(modality, role, file_model_id(path), path,
                                                    _file_hash(path), "", True))
            for role in OPTIONAL_ROLES:
                path = self.folder / f"{modality}_{role.replace('-', '_')}.safetensors"
                if path.is_file():
                    found.append(InstalledComponent(modality, role, file_model_id(path), path,
                                                    _file_hash(path), "", True))
        return found

    # ------------------------------------------------------------------------------------------ lookup
    def defaults(self, modality: str) -> dict[str, InstalledComponent]:
        """role -> the component new files of `modality` are encoded with."""
        _check_modality(modality)
        chosen = {c.role: c for c in self.components if c.modality == modality and c.default and c.role in ROLES}
        missing = [r for r in ROLES if r not in chosen]
        if missing:
            raise FileNotFoundError(
                f"no {modality} model installed in {self.folder} (missing: {', '.join(missing)}); reinstall vqcodec, "
                f"or train one with `vqcodec train {modality}` and point ${WEIGHTS_ENV} at its folder")
        for c in chosen.values():
            _check_present(c)
        return chosen

    def optional(self, modality: str, role: str) -> InstalledComponent | None:
        """The default installed component of an optional role (OPTIONAL_ROLES, e.g. "speaker-decoder"), or
        None when none is installed (its file missing counts as not installed)."""
        _check_modality(modality)
        if role not in OPTIONAL_ROLES:
            raise ValueError(f"unknown optional role {role!r}; choose one of {', '.join(OPTIONAL_ROLES)}")
        found = [c for c in self.components if c.modality == modality and c.role == role and c.path.is_file()]
        return next((c for c in found if c.default), found[0] if found else None)

    def resolve(self, modality: str, names: Iterable[ComponentName], made_by: str = "") -> dict[str, InstalledComponent]:
        """The installed components a file names, role -> component.

        Raises:
            VQFormatError: a named component is not installed (or its file's hash differs); the message
                names the component and the release that decodes it.
        """
        _check_modality(modality)
        chosen: dict[str, InstalledComponent] = {}
        for name in names:
            match = next((c for c in self.components if c.modality == modality and c.role == name.role
                          and hash_matches(c.weights_hash, name.weights_hash)), None)
            if match is None:
                raise VQFormatError(self._missing_message(modality, name, made_by))
            chosen[name.role] = match
        missing = [r for r in ROLES if r not in chosen]
        if missing:
            raise VQFormatError(f"file names no {' or '.join(missing)} model for its {modality} data; it is damaged "
                                "or was not written by vqcodec")
        for c in chosen.values():
            _check_present(c)
        return chosen

    def resolve_v1(self, modality: str, model_id: str, combined_hash: bytes) -> dict[str, InstalledComponent]:
        """Components of a format-version-1 file: the (vqvae, prior) pair whose files hash to `combined_hash`
        (SHA-256 of the vqvae file's bytes followed by the prior file's, first 16 bytes)."""
        _check_modality(modality)
        models = [c for c in self.components if c.modality == modality and c.role == "vqvae"]
        priors = [c for c in self.components if c.modality == modality and c.role == "prior"]
        for m in models:
            for p in priors:
                if _pair_hash(m.path, p.path) == bytes(combined_hash):
                    return {"vqvae": m, "prior": p}
        retired = [r for r in self.retired if r.get("model_id") == model_id and r.get("role") == "v1-pair"]
        where = f"vqcodec {retired[0]['releases']}" if retired else "the vqcodec release that made it"
        raise VQFormatError(
            f"file was made with {modality} model {model_id} (format version 1, weights hash {bytes(combined_hash).hex()}), "
            f"which this install (vqcodec {__version__}) does not have; decode it with {where}")

    def _missing_message(self, modality: str, name: ComponentName, made_by: str) -> str:
        what = f"{modality} {name.role} model {name.model_id} (weights hash {bytes(name.weights_hash).hex()})"
        retired = [r for r in self.retired  # the manifest holds 32 hex digits; a v2 file names their first 16
                   if str(r.get("weights_hash", "")).lower().startswith(bytes(name.weights_hash).hex())]
        if retired:
            where = f"vqcodec {retired[0].get('releases', '?')}, which shipped it"
        elif made_by:
            where = f"{made_by}, which made the file, or a later release that still ships it"
        else:
            where = "the vqcodec release that made the file"
        have = ", ".join(sorted({c.model_id for c in self.components if c.modality == modality and c.role == name.role}))
        return (f"file needs the {what}, which this install (vqcodec {__version__}) does not have "
                f"(it has: {have or 'none'}); decode it with {where}")


@functools.lru_cache(maxsize=64)
def _pair_hash_cached(model_path: str, prior_path: str, m_mtime: float, p_mtime: float) -> bytes:
    return hashlib.sha256(Path(model_path).read_bytes() + Path(prior_path).read_bytes()).digest()[:16]


def _pair_hash(model_path: Path, prior_path: Path) -> bytes:
    return _pair_hash_cached(str(model_path), str(prior_path), model_path.stat().st_mtime, prior_path.stat().st_mtime)


def _check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")


def _check_present(c: InstalledComponent) -> None:
    if not c.path.is_file():
        raise FileNotFoundError(f"model weights not found: {c.path}; reinstall vqcodec")


@functools.lru_cache(maxsize=8)
def _registry_for(folder: str) -> ModelRegistry:
    return ModelRegistry(folder)


def default_registry() -> ModelRegistry:
    """The shipped weights folder, or the one named by $VQCODEC_WEIGHTS_DIR (read once per process and folder)."""
    return _registry_for(os.environ.get(WEIGHTS_ENV) or str(WEIGHTS_DIR))


def codec_class(modality: str) -> Any:
    """The codec class of `modality` (imported on first use)."""
    _check_modality(modality)
    module, name = _CODECS[modality].split(":")
    return getattr(importlib.import_module(module), name)
