"""Speaker conversion of any audio with the conversion model (`vqcodec.audio.conversion`), in bounded memory.

    samples (T, C) at any rate --soxr, per channel--> 16 kHz (T16,)
        --pitch track (`vqcodec.audio.pitch.pitch_track`, the model's tracker) --retarget_f0--> the target's range
        --content encoder, chunks of content frames with a halo--> content indices (T16 / content_hop,)
        --decoder, chunks with a halo (`ConversionDecoder.render_span`), the target's embedding--> 16 kHz
    --soxr--> the input's rate, cut or zero-padded to exactly T samples; every channel the same way.

The target (`Target`) is a row of the model's speaker table (`Converter.table_target`) or any voice given by a
reference recording (`Converter.reference_target`: `embed_speaker` of its first MAX_REFERENCE_SECONDS at 16 kHz
mono, and the log2-f0 mean / std of its pitch track by `pitch_stats`).

Memory: the nets see CHUNK_SECONDS of content frames at a time (plus their halo: `ConversionDecoder.context()`
and the content encoder's receptive field), and the pitch tracker pieces of `pitch.TRACK_CHUNK_SECONDS`, so
what grows with the length is the samples themselves (input, its 16 kHz copy, output), the pitch track (two
floats per 80 samples) and the content indices. The content indices and the output do not depend on the chunk
size (the halos cover the receptive fields; the decoder's noise is keyed by absolute position and its oscillator
phase is carried from chunk to chunk), up to float rounding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vqcodec.audio.codec import MAX_CHANNELS, MAX_SAMPLE_RATE
from vqcodec.audio.conversion import ConversionModel, load_conversion_model, pitch_stats, retarget_f0
from vqcodec.audio.pitch import PITCH_HOP, SAMPLE_RATE, pitch_track
from vqcodec.contract import Progress

__all__ = ["Target", "Converter", "CHUNK_SECONDS", "MAX_REFERENCE_SECONDS", "MIN_REFERENCE_SECONDS"]

CHUNK_SECONDS = 20.0
"""Content frames the nets process at once (plus their halos), in seconds of 16 kHz audio."""
MAX_REFERENCE_SECONDS = 60.0
"""A reference recording's first this many seconds give the target's embedding and pitch range."""
MIN_REFERENCE_SECONDS = 0.25
"""Shortest reference recording accepted."""


@dataclass(frozen=True)
class Target:
    """A voice to convert to.

    embedding: (speaker_dim,) float32, unit length. f0: (2,) float32, log2-f0 mean and std (octaves) of its voiced
    speech. name: the speaker id, or a description of the reference it came from.
    """

    embedding: torch.Tensor
    f0: torch.Tensor
    name: str

    @property
    def median_hz(self) -> float:
        """The target's typical pitch, 2 ** (log2-f0 mean), in Hz."""
        return float(2.0 ** float(self.f0[0]))


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """(T,) float32 at rate_in Hz -> float32 at rate_out Hz (soxr; the same array when the rates are equal)."""
    if rate_in == rate_out:
        return x
    import soxr

    return soxr.resample(x, rate_in, rate_out).astype(np.float32, copy=False)


class Converter:
    """A loaded conversion model that converts audio of any rate, channel count and length.

    Args:
        model: the conversion model (eval mode; its pitch points must be `pitch.PITCH_HOP` samples apart).
        chunk_seconds: content frames rendered at once (memory; the result does not depend on it).
    """

    def __init__(self, model: ConversionModel, chunk_seconds: float = CHUNK_SECONDS) -> None:
        cfg = model.cfg
        if cfg.harmonic.ctrl_hop != PITCH_HOP or cfg.sample_rate != SAMPLE_RATE:
            raise ValueError(f"this conversion model takes f0 every {cfg.harmonic.ctrl_hop} samples at "
                             f"{cfg.sample_rate} Hz; conversion tracks pitch every {PITCH_HOP} at {SAMPLE_RATE} Hz")
        self.model = model.eval()
        self.chunk = max(1, int(chunk_seconds * SAMPLE_RATE) // cfg.content_hop)  # content frames
        self.enc_halo = self._encoder_halo()
        self.dec_context = model.decoder.context()

    @classmethod
    def load(cls, path: str | Path, chunk_seconds: float = CHUNK_SECONDS) -> "Converter":
        """The converter of a conversion weights file (ValueError when it is not one)."""
        return cls(load_conversion_model(path)[0], chunk_seconds)

    def _encoder_halo(self) -> int:
        """Content frames each side of a chunk that cover the content encoder's receptive field."""
        cfg = self.model.cfg
        f, s, ch = 1000, cfg.content_stride, cfg.content_hop
        lo, hi = self.model.encoder.frames.input_range(f * s, f * s + s - 1)  # samples read by content frame f
        left, right = f * ch - lo, hi - ((f + 1) * ch - 1)
        return math.ceil(max(left, right, 0) / ch) + 1

    # ------------------------------------------------------------------------------------------ targets
    @property
    def speakers(self) -> list[tuple[str, float]]:
        """The speaker table: [(id, median pitch in Hz = 2 ** its log2-f0 mean), ...] in table order."""
        means = self.model.speaker_f0[:, 0].tolist()
        return [(sid, 2.0 ** m) for sid, m in zip(self.model.cfg.speakers, means)]

    def table_target(self, speaker: str | int, shown: int = 8) -> Target:
        """The table speaker `speaker` (an id, str or int). ValueError naming a few ids otherwise."""
        key = str(speaker).strip()
        ids = self.model.cfg.speakers
        if key not in ids:
            if f"ls{key}" in ids:  # 0.4..0.6's speaker decoder took bare LibriSpeech reader ids
                raise ValueError(f"unknown speaker {key!r}: LibriSpeech readers are 'ls<reader id>' in the conversion "
                                 f"model's table since 0.7.0: use 'ls{key}'")
            examples = ", ".join(ids[:shown]) + (", ..." if len(ids) > shown else "")
            raise ValueError(f"unknown speaker {key!r}: not one of the conversion model's {len(ids)} speaker ids "
                             f"({examples or 'its table is empty'}); vqcodec.list_speakers() lists them, or give a "
                             "reference recording of the voice instead")
        emb, f0 = self.model.speaker(key)
        return Target(emb.float().clone(), f0.float().clone(), key)

    def reference_target(self, samples: np.ndarray, sample_rate: int, name: str = "reference") -> Target:
        """The voice of a reference recording: samples float (T,) or (T, C) (mixed to mono) at sample_rate Hz.
        Its first MAX_REFERENCE_SECONDS are used. ValueError when it is shorter than MIN_REFERENCE_SECONDS."""
        x = _as_channels(samples, sample_rate, "reference")
        seconds = len(x) / sample_rate
        if seconds < MIN_REFERENCE_SECONDS:
            raise ValueError(f"the reference recording {name} is {seconds:.2f} s long; give at least "
                             f"{MIN_REFERENCE_SECONDS} s of the voice (a few seconds of speech work best)")
        x = x[: int(math.ceil(MAX_REFERENCE_SECONDS * sample_rate))].mean(1)
        x16 = torch.from_numpy(np.ascontiguousarray(_resample(x, sample_rate, SAMPLE_RATE)))
        x16 = x16[: int(MAX_REFERENCE_SECONDS * SAMPLE_RATE)]
        f0, voiced = pitch_track(x16, self.model.cfg.pitch)
        if not bool(voiced.any()):
            raise ValueError(f"the reference recording {name} holds no voiced speech (silence or noise); give a few "
                             "seconds of the voice speaking")
        mean, std = pitch_stats(f0, voiced)
        emb = self.model.embed_speaker(x16[None])[0]
        return Target(emb.float(), torch.stack([mean, std]).float(), name)

    # ------------------------------------------------------------------------------------------ conversion
    @torch.no_grad()
    def convert_16k(self, x: torch.Tensor, target: Target, progress: Progress | None = None) -> torch.Tensor:
        """(T,) float32 samples at 16 kHz -> (T,) float32 in [-1, 1], spoken in `target`'s voice and pitch range.
        progress(done, total): content frames rendered."""
        if x.dim() != 1 or x.numel() == 0:
            raise ValueError(f"expected (T,) samples with T >= 1, got {tuple(x.shape)}")
        model, cfg = self.model, self.model.cfg
        t, ch, ctrl = x.numel(), cfg.content_hop, cfg.harmonic.ctrl_hop
        n = -(-t // ch)  # content frames
        xp = F.pad(x.float(), (0, n * ch - t))
        m = -(-t // ctrl)  # pitch points of the signal (its last partial one included)
        f0, voiced = pitch_track(xp[: m * ctrl], cfg.pitch)
        v = voiced.float()[None]
        f = retarget_f0(f0[None], v, pitch_stats(f0, v[0]), (target.f0[0], target.f0[1]))
        per = ch // ctrl
        pad = n * per - m  # points of the padding: the last f0 held, unvoiced (as ConversionModel.convert)
        f = torch.cat([f, f[:, -1:].expand(1, pad)], 1)
        v = F.pad(v, (0, pad))
        z = model.content_lookup(self._content(xp, n))[None]  # (1, n, D)
        emb = target.embedding.float()[None]
        left, right = self.dec_context
        out = torch.empty(n * ch)
        phase = None
        for a, b in _chunks(n, self.chunk):
            lo, hi = max(0, a - left), min(n, b + right)
            y, phase = model.decoder.render_span(z[:, lo:hi], emb, f[:, lo * per:hi * per], v[:, lo * per:hi * per],
                                                 (a - lo, b - lo), phase, start=lo * ch)
            out[a * ch:b * ch] = y[0].clamp(-1.0, 1.0)
            if progress:
                progress(b, n)
        return out[:t]

    def _content(self, xp: torch.Tensor, n: int) -> torch.Tensor:
        """(n * content_hop,) samples -> (n, S) int64 content indices, chunk by chunk with the encoder's halo."""
        ch, halo = self.model.cfg.content_hop, self.enc_halo
        idx = torch.empty(n, self.model.cfg.content_stages, dtype=torch.long)
        for a, b in _chunks(n, self.chunk):
            lo, hi = max(0, a - halo), min(n, b + halo)
            idx[a:b] = self.model.encode_content(xp[None, lo * ch:hi * ch])[0, a - lo:b - lo]
        return idx

    def convert(self, samples: np.ndarray, sample_rate: int, target: Target,
                progress: Progress | None = None) -> np.ndarray:
        """Float samples (T,) or (T, C) at sample_rate Hz -> float32 (T, C) in [-1, 1] at the same rate: each
        channel resampled to 16 kHz, converted (`convert_16k`), resampled back and cut or zero-padded to exactly
        T samples. progress(done, total): content frames rendered over all channels."""
        x = _as_channels(samples, sample_rate, "audio")
        t, c = x.shape
        out = np.empty((t, c), np.float32)
        for k in range(c):
            x16 = torch.from_numpy(np.ascontiguousarray(_resample(np.ascontiguousarray(x[:, k]), sample_rate,
                                                                  SAMPLE_RATE)))
            if x16.numel() == 0:  # a few samples at a high rate resample to none: nothing to speak
                out[:, k] = 0.0
                continue
            report = None if progress is None else (lambda done, total, k=k: progress(k * total + done, c * total))
            y = _resample(self.convert_16k(x16, target, report).numpy(), SAMPLE_RATE, sample_rate)[:t]
            out[:len(y), k] = y
            out[len(y):, k] = 0.0
        return np.clip(out, -1.0, 1.0, out=out)


def _as_channels(samples: np.ndarray, sample_rate: int, what: str) -> np.ndarray:
    """float samples (T,) or (T, C) -> float32 (T, C), checked (T, C >= 1, finite, a positive rate)."""
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"expected {what} samples of shape (T,) or (T, C) with T, C >= 1, got {np.shape(samples)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"expected float {what} samples (nominally in [-1, 1]), got {x.dtype}; divide integer PCM "
                         "by its full scale first")
    if int(sample_rate) != sample_rate or not 1 <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample rate must be a whole number of Hz in 1..{MAX_SAMPLE_RATE}, got {sample_rate}")
    if x.shape[1] > MAX_CHANNELS:
        raise ValueError(f"{what} of {x.shape[1]} channels ({x.shape[0]} samples each); vqcodec converts 1.."
                         f"{MAX_CHANNELS}: samples are (T, C), time first (pass samples.T for a (C, T) array)")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError(f"the {what} holds NaN or infinite samples")
    return x
