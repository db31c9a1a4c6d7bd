"""Speech decoders trained on a frozen base model (decoder-stage weights files) and how to load them.

A decoder-stage file (`vqcodec train audio-decoder`) holds only a decoder: its tensors, a config
{"decoder": "istft" | "hn", ..., "base_model_id", "base_weights_hash"} and its own model id. It reads the
indices of files coded with the base model it names, through that model's codebooks.
"""
from __future__ import annotations

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
    trained on (its indices would mean other codes)."""
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
