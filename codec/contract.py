"""What the public API (vqcodec.api) and the model registry expect of a codec, and the checks both codecs share.

A codec is one modality's loaded model + integer prior (vqcodec.image.codec.ImageCodec,
vqcodec.audio.codec.AudioCodec). The registry builds it from the two weights files a file names; the API
encodes with it and decodes with it:

    encode(source, quality=None, *, progress=None, verify=False, ...) -> .vq bytes
    decode(data, layers=None, progress=None) -> the modality's signal
    decode_indices(data, layers=None, progress=None) -> int64 indices (layers first)

Shared here: the `Progress` callback type, how a codec names its components (`read_components`: model ids
and weights hashes, as .vq files record them), and the check that a parsed file is one the codec decodes
(`check_file`: modality, components, layer count).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from vqcodec.bitstream import ModelComponent, VQFile, VQFormatError, hash_matches, hash_weights

if TYPE_CHECKING:
    import torch

__all__ = ["Progress", "Codec", "Components", "check_weight_files", "read_components", "check_file",
           "check_layers"]

Progress = Callable[[int, int], None]
"""progress(done, total): called as a codec's work advances (images: per quality layer; audio: per coded
block or chunk)."""


@runtime_checkable
class Codec(Protocol):
    """One modality's loaded model and integer prior.

    Attributes:
        modality: "image" or "audio" (the container's modality name).
        components: the (vqvae, prior) ModelComponents new files name, 16-byte weights hashes.
        max_quality: top of the `quality` scale of `encode` (1..max_quality).
        max_layers: most quality layers a file of this model holds (the range of `layers` when decoding).
    """

    modality: str
    components: tuple[ModelComponent, ...]

    @property
    def max_quality(self) -> int: ...

    @property
    def max_layers(self) -> int: ...

    def encode(self, source: object, quality: int | None = None, *, progress: Progress | None = None,
               verify: bool = False) -> bytes:
        """The modality's input (a prepared image, samples or an audio stream) -> .vq bytes. verify: decode
        the bytes again and raise RuntimeError unless they give the encoder's indices."""
        ...

    def decode(self, data: "bytes | VQFile", layers: int | None = None, progress: Progress | None = None) -> object:
        """.vq bytes (or a parsed file) of this codec's components -> the signal of its first `layers` layers."""
        ...

    def decode_indices(self, data: "bytes | VQFile", layers: int | None = None,
                       progress: Progress | None = None) -> torch.Tensor:
        """.vq bytes (or a parsed file) -> int64 indices, quality layers first, exact on any machine."""
        ...


@dataclass(frozen=True)
class Components:
    """What a codec's two weights files are called in .vq files.

    Attributes:
        named: (vqvae, prior[, decoder]) ModelComponents: model id and 16-byte weights hash (`hash_weights`) of
            each file; a decoder-stage file (role "decoder") when the codec renders with one.
        v1_hash: the format-version-1 name of the pair: hash_weights of the vqvae file's bytes followed by
            the prior file's.
    """

    named: tuple[ModelComponent, ...]
    v1_hash: bytes


def check_weight_files(paths: tuple[Path, ...], how_to_train: str) -> None:
    """Raise FileNotFoundError naming the first missing weights file; `how_to_train` ends the message (the
    `vqcodec train ...` commands that make them)."""
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"model weights not found: {p}. Reinstall vqcodec, or train them with "
                                    f"{how_to_train}.")


def read_components(model_path: Path, model_id: str, prior_path: Path, prior_id: str | None = None,
                    decoder: tuple[Path, str] | None = None, refinement: tuple[Path, str] | None = None) -> Components:
    """The components of a codec's vqvae file (whose id is `model_id`) and prior file (id `prior_id`, default:
    the file's metadata, else derived from its hash), and of its decoder-stage file and refinement-model file
    (path, model id) if any."""
    from vqcodec.weights.io import file_model_id  # torch: imported when a codec is built, not with the contract

    model_bytes, prior_bytes = model_path.read_bytes(), prior_path.read_bytes()
    named = (
        ModelComponent("vqvae", model_id, hash_weights(model_bytes)),
        ModelComponent("prior", prior_id or file_model_id(prior_path, prior_bytes), hash_weights(prior_bytes)),
    )
    if decoder is not None:
        named += (ModelComponent("decoder", decoder[1], hash_weights(decoder[0].read_bytes())),)
    if refinement is not None:
        named += (ModelComponent("refinement", refinement[1], hash_weights(refinement[0].read_bytes())),)
    return Components(named, hash_weights(model_bytes + prior_bytes))


def check_file(vqfile: VQFile, codec: Codec, v1_hash: bytes | None = None, ignore_roles: tuple[str, ...] = ()) -> None:
    """Raise VQFormatError unless `vqfile` holds `codec.modality`, names exactly `codec.components` (a
    version-1 file: the pair's `v1_hash`; components of `ignore_roles` left out on both sides) and holds at
    most `codec.max_layers` quality layers."""
    if vqfile.modality_name != codec.modality:
        raise VQFormatError(f"file holds {vqfile.modality_name}, not {'an image' if codec.modality == 'image' else codec.modality}")
    if vqfile.version == 1:
        (named,) = vqfile.components
        ok = v1_hash is not None and bytes(named.weights_hash) == v1_hash
    else:
        have = {c.role: c.weights_hash for c in codec.components if c.role not in ignore_roles}
        named = [c for c in vqfile.components if c.role not in ignore_roles]
        ok = {c.role for c in named} == set(have) and all(hash_matches(have[c.role], c.weights_hash) for c in named)
    if not ok:
        named_text = ", ".join(f"{c.role} {c.model_id} ({bytes(c.weights_hash).hex()})" for c in vqfile.components)
        raise VQFormatError(f"file was made with {named_text}, which this codec does not have; decode it with "
                            "vqcodec.decode, which finds the installed model the file names")
    if vqfile.layers > codec.max_layers:
        raise VQFormatError(f"file has {vqfile.layers} quality layers; this model has {codec.max_layers}")


def check_layers(layers: int | None, available: int) -> int:
    """The quality layers to decode: `layers` (None: all) capped at the `available` ones; ValueError if < 1."""
    if layers is not None and int(layers) < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    return available if layers is None else min(int(layers), available)
