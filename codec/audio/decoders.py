"""Speech decoders trained on a frozen base model (decoder-stage weights files) and how to load them.

A decoder-stage file (`vqcodec train audio-decoder`) holds only a decoder: its tensors, a config
{"decoder": "istft" | "hn", ..., "base_model_id", "base_weights_hash"} and its own model id. It reads the
indices of files coded with the base model it names, through that model's codebooks.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch.nn as nn

from vqcodec.audio.hn_decoder import HNDecoder, HNDecoderConfig
from vqcodec.audio.model import AudioModelConfig, ISTFTDecoder
from vqcodec.weights.io import load_weights, weights_hash

__all__ = ["build_audio_decoder", "load_audio_decoder"]


def build_audio_decoder(config: dict) -> nn.Module:
    """An untrained decoder of a decoder-stage config (see the module docstring)."""
    kind = config.get("decoder")
    if kind == "istft":
        return ISTFTDecoder(AudioModelConfig.from_dict(config["model"]))
    if kind == "hn":
        return HNDecoder(HNDecoderConfig.from_dict(config))
    raise ValueError(f"unknown decoder kind {kind!r}: this vqcodec knows 'istft' and 'hn'; a newer release may "
                     "read this file")


def load_audio_decoder(path: str | Path, base_path: str | Path | None = None) -> tuple[nn.Module, str, dict]:
    """A decoder-stage weights file -> (decoder in eval mode, its model id, its config).

    With `base_path`, refuses a base model file whose weights hash differs from the one the decoder was
    trained on (its indices would mean other codes). The last few (file, base) pairs are kept loaded, keyed
    by the files' paths, sizes and modification times: decoding many files with one decoder reads and checks
    it once. The decoder returned is shared: use it for inference only."""
    path = Path(path)
    base = None if base_path is None else Path(base_path)
    stamp = (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None
    base_stamp = (base.stat().st_size, base.stat().st_mtime_ns) if base is not None and base.is_file() else None
    if stamp is None:
        raise FileNotFoundError(f"decoder weights not found: {path}")
    decoder, model_id, config = _load_cached(str(path.resolve()), stamp, None if base is None else str(base.resolve()),
                                             base_stamp)
    return decoder, model_id, dict(config)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, stamp: tuple, base_path: str | None, base_stamp: tuple | None
                 ) -> tuple[nn.Module, str, dict]:
    tensors, model_id, config = load_weights(path)
    decoder = build_audio_decoder(config)
    try:
        decoder.load_state_dict(tensors)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match their decoder config ({e})") from None
    if base_path is not None and config.get("base_weights_hash") != weights_hash(base_path).hex():
        raise ValueError(f"{path} decodes the indices of {config.get('base_model_id')!r}, not of {base_path}; "
                         "pass the base model it was trained on")
    return decoder.eval(), model_id, config
