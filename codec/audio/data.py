"""Audio folders for training and validation: loading at 16 kHz mono, a held-out split by utterance,
and random crops with a resumable sampler.

Clips are held in memory as float32 tensors (T,) in [-1, 1] at `SAMPLE_RATE`; crops come out as
float32 (B, L) with L samples.
"""
from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from vqcodec.audio.model import SAMPLE_RATE
from vqcodec.files import list_files

__all__ = ["AUDIO_SUFFIXES", "list_audio", "load_audio", "load_folder", "split_holdout", "RandomAudioCrops"]

log = logging.getLogger(__name__)
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3", ".aiff", ".aif", ".opus")


def list_audio(folder: str | Path) -> list[Path]:
    """Sorted audio files in `folder` and its subfolders. Raises FileNotFoundError/ValueError with advice."""
    return list_files(folder, AUDIO_SUFFIXES, "audio", recursive=True)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """One audio file -> (T,) float32 mono at `sample_rate` Hz (channels averaged, soxr resampling)."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if sr != sample_rate:
        import soxr  # only needed for files at other rates

        mono = soxr.resample(mono, sr, sample_rate, quality="HQ").astype(np.float32)
    if not np.isfinite(mono).all():
        raise ValueError(f"{path}: NaN or inf samples; repair or drop the file")
    return torch.from_numpy(np.ascontiguousarray(mono))


def split_holdout(files: list[Path], holdout: int, salt: str = "vqcodec-audio") -> tuple[list[Path], list[Path]]:
    """Split by utterance: (train files, held-out files), `holdout` files held out.

    The choice depends only on the file names (a CRC of salt + name ranks them), so it is the same on
    every machine, in every process, and does not change when files are added elsewhere in the list.
    """
    if not 0 <= holdout < len(files):
        raise ValueError(f"cannot hold out {holdout} of {len(files)} files: keep at least one for training")
    ranked = sorted(files, key=lambda p: (zlib.crc32(f"{salt}/{p.name}".encode()), p.name))
    held = set(ranked[:holdout])
    return [p for p in files if p not in held], [p for p in files if p in held]


def load_folder(folder: str | Path, files: list[Path] | None = None) -> list[torch.Tensor]:
    """The clips of `folder` (or just `files`) as (T,) float32 tensors at 16 kHz."""
    paths = list_audio(folder) if files is None else files
    clips = [load_audio(p) for p in paths]
    log.info("loaded %d clips, %.1f min", len(clips), sum(c.numel() for c in clips) / SAMPLE_RATE / 60)
    return clips


class RandomAudioCrops:
    """Draws batches of random crops of `length` samples, clips chosen in proportion to their length.

    Clips shorter than the crop are zero-padded at the end. Each crop gets a random gain, uniform in
    `gain_db` (dB), lowered where needed so that its peak stays below 0.99: levels vary in the wild and
    the evaluation sets are louder than LibriSpeech. Sampling uses its own torch.Generator, so a resumed
    run continues with exactly the same stream (see `state()` / `load_state()`).
    """

    def __init__(self, clips: list[torch.Tensor], length: int, seed: int = 0,
                 gain_db: tuple[float, float] = (-6.0, 6.0)) -> None:
        if not clips:
            raise ValueError("RandomAudioCrops needs at least one clip")
        if length < 1:
            raise ValueError(f"crop length must be positive, got {length} samples")
        self.clips, self.length, self.gain_db = clips, length, gain_db
        self.gen = torch.Generator().manual_seed(seed)
        lengths = torch.tensor([float(max(c.numel(), 1)) for c in clips])
        self.weights = lengths / lengths.sum()

    def _crop(self, clip: torch.Tensor) -> torch.Tensor:
        n = self.length
        start = int(torch.randint(0, max(clip.numel() - n, 0) + 1, (1,), generator=self.gen))
        out = clip[start : start + n]
        if out.numel() < n:
            out = torch.nn.functional.pad(out, (0, n - out.numel()))
        lo, hi = self.gain_db
        gain = 10.0 ** ((lo + (hi - lo) * float(torch.rand(1, generator=self.gen))) / 20.0)
        peak = float(out.abs().max())
        if peak > 0:
            gain = min(gain, 0.99 / peak)
        return out * gain

    def batch(self, batch_size: int) -> torch.Tensor:
        """(B, length) float32."""
        picks = torch.multinomial(self.weights, batch_size, replacement=True, generator=self.gen)
        return torch.stack([self._crop(self.clips[int(i)]) for i in picks])

    def state(self) -> torch.Tensor:
        return self.gen.get_state()

    def load_state(self, state: torch.Tensor) -> None:
        self.gen.set_state(state)
