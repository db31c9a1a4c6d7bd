"""The pitch labels of a trainer's cached training utterances: kept, or relabelled with another tracker.

`vqcodec train audio-decoder` and `vqcodec train conversion` cache their utterances' audio with pitch labels
(`vqcodec.audio.pitch.pitch_labels`) once per run folder; a resume that asks for another tracker keeps the audio
and relabels it (`labels_as_asked`).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import torch

from vqcodec.audio.pitch import pitch_labels
from vqcodec.files import atomic_write

__all__ = ["labels_as_asked"]

log = logging.getLogger(__name__)


def labels_as_asked(path: Path, cache: dict, pitch: str | None, rank: int,
                    samples_of: Callable[[Any], torch.Tensor]) -> dict:
    """An existing cache (`path`'s contents: "audio" a list of utterances, "f0" / "voiced" their labels, "pitch"
    the tracker; a cache without "pitch" was labelled by DIO, the only method then) with the labels `pitch` asks
    for: unchanged when `pitch` is None or its own method; else relabelled (samples_of(utterance) -> (T,) float32
    16 kHz) and written back atomically, on rank 0 only (another rank raises RuntimeError)."""
    cache.setdefault("pitch", "dio")
    if pitch is None or cache["pitch"] == pitch:
        return cache
    if rank != 0:
        raise RuntimeError(f"{path} has {cache['pitch']} pitch labels; relabel it with one process first")
    t0 = time.perf_counter()
    labels = [pitch_labels(samples_of(a), pitch) for a in cache["audio"]]
    cache.update(pitch=pitch, f0=[f for f, _ in labels], voiced=[v for _, v in labels])
    atomic_write(path, lambda tmp: torch.save(cache, tmp))
    log.info("relabelled the pitch of %d training utterances with %s in %.0f s", len(labels), pitch,
             time.perf_counter() - t0)
    return cache
