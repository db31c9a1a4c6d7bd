"""Released models, which codec decodes a file, and the loaded codecs (`default_codec`, `codec_for_file`).

A .vq file names every model component that made it: its role ("vqvae", "prior", and a file may name a
"decoder", an image file with refinement layers a "refinement": `FILE_OPTIONAL_ROLES_OF`), its model id and the
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

Codecs are loaded here, once per process and pair of weights files (`load_codec`, a small cache): the image
codec (vqcodec.image.codec) and the audio codec (vqcodec.audio.codec), each a `vqcodec.contract.Codec`,
imported when a file of their modality is first coded.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Literal, Protocol, overload

from vqcodec.bitstream import VQFile, hash_matches
from vqcodec.bitstream.errors import VQFormatError
from vqcodec.contract import Codec
from vqcodec.version import __version__
from vqcodec.weights.io import WEIGHTS_DIR, file_model_id, weights_hash

if TYPE_CHECKING:
    from vqcodec.audio.codec import AudioCodec
    from vqcodec.image.codec import ImageCodec

__all__ = [
    "MODALITIES",
    "ROLES",
    "FILE_OPTIONAL_ROLES",
    "OPTIONAL_ROLES",
    "WEIGHTS_ENV",
    "InstalledComponent",
    "ModelRegistry",
    "ComponentName",
    "default_registry",
    "load_codec",
    "default_codec",
    "codec_for_file",
    "MODEL_DECODER",
]

MODALITIES = ("image", "audio")
ROLES = ("vqvae", "prior")
FILE_OPTIONAL_ROLES_OF = {"audio": ("decoder",), "image": ("refinement", "decoder")}
"""Components a file of a modality may name beside its ROLES. "decoder" (both modalities): a decoder-stage model
(`vqcodec train audio-decoder`, `vqcodec train image-decoder`) that renders the vqvae's indices in place of the
vqvae's own decoder; a file that names none decodes with the vqvae's decoder (every audio file of 0.4.x, every
image file of 0.6.0 and earlier); new files name the default one when one is installed. Image: "refinement",
the entropy model of scalar refinement layers (`vqcodec train refinement`), named by files that have refinement
layers (a REFINEMENT chunk); new files are encoded with the default one when one is installed. A folder without
a manifest holds them as `<modality>_<role>.safetensors`."""
FILE_OPTIONAL_ROLES = tuple(r for roles in FILE_OPTIONAL_ROLES_OF.values() for r in roles)
MODEL_DECODER = "model"
"""`decoder_path`'s name for a vqvae's own decoder (no decoder-stage component)."""

OPTIONAL_ROLES = ("conversion", "speaker-decoder")
"""Components a codec does not need (no file names them): found with `ModelRegistry.optional`. A folder without
a manifest holds them as `<modality>_<role with '_' for '-'>.safetensors`. Audio: "conversion", the speaker
conversion model (`vqcodec.audio.conversion`, `vqcodec train conversion`; `audio_conversion.safetensors`) that
`vqcodec.convert_speaker` uses; "speaker-decoder", the earlier speaker-conditioned decoder of the codec's indices
(`vqcodec train speaker-decoder`), which nothing in the API uses any more."""
WEIGHTS_ENV = "VQCODEC_WEIGHTS_DIR"
MANIFEST = "MANIFEST.json"


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
            for role in ROLES + FILE_OPTIONAL_ROLES_OF[modality]:
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
        """role -> the component new files of `modality` are encoded with: one per ROLES, and a "decoder" when
        a default one is installed."""
        _check_modality(modality)
        chosen = {c.role: c for c in self.components
                  if c.modality == modality and c.default and c.role in ROLES + FILE_OPTIONAL_ROLES_OF[modality]}
        missing = [r for r in ROLES if r not in chosen]
        if missing:
            raise FileNotFoundError(
                f"no {modality} model installed in {self.folder} (missing: {', '.join(missing)}); reinstall vqcodec, "
                f"or train one with `vqcodec train {modality}` and point ${WEIGHTS_ENV} at its folder")
        for c in chosen.values():
            _check_present(c)
        return chosen

    def optional(self, modality: str, role: str) -> InstalledComponent | None:
        """The default installed component of an optional role (OPTIONAL_ROLES, e.g. "conversion"), or
        None when none is installed (its file missing counts as not installed)."""
        _check_modality(modality)
        if role not in OPTIONAL_ROLES:
            raise ValueError(f"unknown optional role {role!r}; choose one of {', '.join(OPTIONAL_ROLES)}")
        found = [c for c in self.components if c.modality == modality and c.role == role and c.path.is_file()]
        return next((c for c in found if c.default), found[0] if found else None)

    def decoder_path(self, name: str | Path, modality: str = "audio") -> Path | None:
        """The `modality` decoder `name` asks for (`vqcodec decode --decoder NAME`): MODEL_DECODER -> None (the
        vqvae's own decoder: how audio files of 0.4.x and image files of 0.6.0 render); the model id of an
        installed "decoder" component of `modality` (e.g. "audio-decoder-hn-v1") -> its file; else `name` as a
        path to a decoder-stage weights file (`vqcodec train audio-decoder` / `image-decoder`).
        FileNotFoundError, listing the choices, when it is none of these."""
        _check_modality(modality)
        if str(name) == MODEL_DECODER:
            return None
        installed = [c for c in self.components if c.modality == modality and c.role == "decoder"]
        match = next((c for c in installed if c.model_id == str(name)), None)
        if match is not None:
            _check_present(match)
            return match.path
        if Path(name).is_file():
            return Path(name)
        choices = ", ".join([MODEL_DECODER] + [c.model_id for c in installed])
        raise FileNotFoundError(f"no {modality} decoder {str(name)!r}: name an installed one ({choices}) or a "
                                f"decoder weights file (`vqcodec train {modality}-decoder`)")

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


@overload
def load_codec(modality: Literal["image"], vqvae: InstalledComponent, prior: InstalledComponent,
               decoder: InstalledComponent | None = None, refinement: InstalledComponent | None = None) -> "ImageCodec": ...
@overload
def load_codec(modality: Literal["audio"], vqvae: InstalledComponent, prior: InstalledComponent,
               decoder: InstalledComponent | None = None, refinement: None = None) -> "AudioCodec": ...
@overload
def load_codec(modality: str, vqvae: InstalledComponent, prior: InstalledComponent,
               decoder: InstalledComponent | None = None, refinement: InstalledComponent | None = None) -> Codec: ...


def load_codec(modality: str, vqvae: InstalledComponent, prior: InstalledComponent,
               decoder: InstalledComponent | None = None, refinement: InstalledComponent | None = None) -> Codec:
    """The `modality` codec of the installed `vqvae` and `prior` components, rendering with `decoder` and
    coding refinement layers with `refinement` (image) when given (loaded once per process and set of files;
    the last 8 are kept)."""
    _check_modality(modality)
    for role, c in (("decoder", decoder), ("refinement", refinement)):
        if c is not None and role not in FILE_OPTIONAL_ROLES_OF[modality]:
            raise VQFormatError(f"a {modality} file names a {role} component ({c.model_id}); this vqcodec has none "
                                f"for {modality}: decode it with the release that made it")
    return _load_codec(modality, str(vqvae.path), str(prior.path), prior.model_id,
                       None if decoder is None else str(decoder.path),
                       None if refinement is None else str(refinement.path))


@functools.lru_cache(maxsize=8)
def _load_codec(modality: str, model_path: str, prior_path: str, prior_id: str, decoder_path: str | None,
                refinement_path: str | None = None) -> Codec:
    if modality == "image":
        from vqcodec.image.codec import ImageCodec

        return ImageCodec(Path(model_path), Path(prior_path), prior_id=prior_id, refinement_path=refinement_path,
                          decoder_path=decoder_path)
    from vqcodec.audio.codec import AudioCodec

    return AudioCodec(Path(model_path), Path(prior_path), prior_id=prior_id, decoder_path=decoder_path)


@overload
def default_codec(modality: Literal["image"]) -> "ImageCodec": ...
@overload
def default_codec(modality: Literal["audio"]) -> "AudioCodec": ...
@overload
def default_codec(modality: str) -> Codec: ...


def default_codec(modality: str) -> Codec:
    """The codec new `modality` files are encoded with: the default registry's default components."""
    c = default_registry().defaults(modality)
    return load_codec(modality, c["vqvae"], c["prior"], c.get("decoder"), c.get("refinement"))


def codec_for_file(vqfile: VQFile, without_decoder: bool = False) -> Codec:
    """The codec that decodes `vqfile`, from the model components its header names (`without_decoder`: all
    but a decoder component, for a caller that renders with a decoder of its own).

    Raises:
        VQFormatError: a named component is not installed; the message names it and the release to use.
    """
    registry = default_registry()
    modality = vqfile.modality_name
    if vqfile.version == 1:
        (legacy,) = vqfile.components
        c = registry.resolve_v1(modality, legacy.model_id, legacy.weights_hash)
    else:
        names = [n for n in vqfile.components if not (without_decoder and n.role == "decoder")]
        c = registry.resolve(modality, names, made_by=vqfile.encoder_name)
    return load_codec(modality, c["vqvae"], c["prior"], c.get("decoder"), c.get("refinement"))
