"""Decoder-stage components of the image model (registry role "decoder"): another decoder net for the latents of
one vqvae file.

A decoder-stage file holds the tensors of a `vqcodec.image.model.Decoder` (float16 or float32; computed in
float32), its model id, and a config: the image model config it was built with, plus `base_model_id` and
`base_weights_hash` (32 hex digits), the vqvae file whose encoder and codebooks made the latents it renders
(`vqcodec train image-decoder` trains one with both frozen). At a given quality a file's indices and streams do
not depend on it (it only renders them); the file names it in its header (56 bytes), so a size target
(`max_bytes`) can land on another quality. A file that names no decoder renders with its vqvae's own decoder (every file of 0.6.0 and
earlier).
"""
from __future__ import annotations

import functools
from pathlib import Path

from vqcodec.image.model import Decoder, ImageModelConfig
from vqcodec.weights.io import load_weights, save_weights, weights_hash

__all__ = ["load_image_decoder", "save_image_decoder", "DECODER_ONLY_KEYS"]


def save_image_decoder(path: str | Path, decoder: Decoder, cfg: ImageModelConfig, model_id: str,
                       base_path: str | Path, base_model_id: str, half: bool = True) -> None:
    """Write `decoder` (built from `cfg`: the config of the vqvae file `base_path`, whose model id is
    `base_model_id`, with at most DECODER_ONLY_KEYS changed) as a decoder-stage file; half: float16 storage (the
    file is then exactly what loads, on every machine)."""
    config = {**cfg.to_dict(), "base_model_id": base_model_id, "base_weights_hash": weights_hash(base_path).hex()}
    state = {k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}
    save_weights(path, state, model_id, config, half=half)


def load_image_decoder(path: str | Path, base_path: str | Path, base_cfg: ImageModelConfig) -> tuple[Decoder, str]:
    """A decoder-stage file -> (its decoder in eval mode, its model id), for the vqvae file `base_path` whose
    config is `base_cfg`.

    Raises ValueError when the file renders another vqvae's latents (its `base_weights_hash` differs from
    `base_path`'s), was built for another model config (beyond DECODER_ONLY_KEYS), or its tensors do not fit
    its config. The last few
    loads are kept, keyed by both files' paths, sizes and modification times; the decoder returned is shared:
    use it for inference only."""
    path, base = Path(path), Path(base_path)
    if not path.is_file():
        raise FileNotFoundError(f"decoder weights not found: {path}")
    stamp = (path.stat().st_size, path.stat().st_mtime_ns)
    base_stamp = (base.stat().st_size, base.stat().st_mtime_ns)
    return _load_cached(str(path.resolve()), stamp, str(base.resolve()), base_stamp,
                        tuple(sorted(base_cfg.to_dict().items())))


DECODER_ONLY_KEYS = ("dec_blocks",)
"""Config keys in which a decoder-stage file may differ from its base model (the decoder's own depth); the rest
(latent size, stages, depth and level inputs) is the interface both share."""


def _interface(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in DECODER_ONLY_KEYS}


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, stamp: tuple, base_path: str, base_stamp: tuple, base_cfg: tuple) -> tuple[Decoder, str]:
    tensors, model_id, config = load_weights(path)
    base_id = config.pop("base_model_id", None)
    base_hash = config.pop("base_weights_hash", None)
    if base_hash is None:
        raise ValueError(f"{path} is not an image decoder-stage file (its config names no base model); "
                         "write one with `vqcodec train image-decoder`")
    if base_hash != weights_hash(base_path).hex():
        raise ValueError(f"{path} renders the latents of model {base_id!r}, not those of the image model {base_path}; "
                         "use it with the model it was trained on")
    if _interface(config) != _interface(dict(base_cfg)):
        raise ValueError(f"{path} was built for another image model config than {base_path}'s")
    decoder = Decoder(ImageModelConfig(**config))
    try:
        decoder.load_state_dict(tensors)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match their decoder config ({e})") from None
    for p in decoder.parameters():
        p.requires_grad_(False)
    return decoder.eval(), model_id

