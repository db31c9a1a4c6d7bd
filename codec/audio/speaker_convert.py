"""Speaker conversion of coded speech: decode an audio .vq file's indices with the speaker-conditioned
decoder (`vqcodec.audio.speaker_model`) in the voice of one of its training speakers.

The file's indices are decoded exactly as for ordinary decoding (the audio codec, its prior, the file's
first `stages` quality layers); only the rendering differs: chunks of frames with the codec's halo, each
through the speaker decoder, resampled back to the file's rate and cut to its length (`AudioCodec.render_blocks`).
Every channel is converted to the same speaker.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from vqcodec.audio.codec import AudioCodec
from vqcodec.contract import Progress
from vqcodec.audio.speaker_model import SpeakerDecoderConfig, load_speaker_decoder
from vqcodec.bitstream import VQFile

__all__ = ["SpeakerConverter"]


class SpeakerConverter:
    """A speaker decoder loaded on the audio codec whose indices it decodes.

    Args:
        codec: the audio codec of the files to convert (its model must be the speaker decoder's base).
        path: the speaker decoder weights file (registry role "speaker-decoder").
    Raises:
        ValueError: the file is not a speaker decoder, or it was trained on another base model.
    """

    def __init__(self, codec: AudioCodec, path: str | Path) -> None:
        vqvae = next(c for c in codec.components if c.role == "vqvae")
        self.codec = codec
        self.model, self.model_id = load_speaker_decoder(path, codec.model, bytes(vqvae.weights_hash))

    @property
    def config(self) -> SpeakerDecoderConfig:
        return self.model.config

    def _stages(self, stages: int | None) -> int:
        top = self.codec.max_quality
        s = self.config.default_stages if stages is None else int(stages)
        if not 1 <= s <= top:
            raise ValueError(f"stages must be 1..{top}, got {stages}")
        return s

    def convert_blocks(self, vqfile: VQFile, speaker: str | int, stages: int | None = None,
                       progress: Progress | None = None) -> tuple[int, int, int, Iterator[np.ndarray]]:
        """Convert lazily: -> (sample_rate Hz, channels C, num_samples T, blocks of float32 (n, C)).

        speaker: a training speaker id (see `config.speakers`); ValueError listing them otherwise.
        stages: quality layers decoded (default `config.default_stages`; a file holding fewer gives all it
        holds). The file is checked and its indices decoded here (VQFormatError for a damaged file)."""
        row = self.config.index(speaker)
        s = self._stages(stages)
        indices = self.codec.decode_indices(vqfile, s, progress, compact=True)  # (C, s, N) int16
        g = vqfile.geometry

        def decode(idx: torch.Tensor) -> torch.Tensor:
            return self.model.decode_indices(idx, row)

        return g.sample_rate, g.channels, g.num_samples, self.codec.render_blocks(indices, g.sample_rate,
                                                                                  g.num_samples, decode)

    def convert(self, vqfile: VQFile, speaker: str | int, stages: int | None = None,
                progress: Progress | None = None) -> tuple[np.ndarray, int]:
        """-> (float32 (T, C) samples at the file's rate, the rate in Hz). See `convert_blocks`."""
        rate, channels, n, blocks = self.convert_blocks(vqfile, speaker, stages, progress)
        out = np.empty((n, channels), np.float32)
        pos = 0
        for block in blocks:
            out[pos:pos + len(block)] = block
            pos += len(block)
        return out, rate
