"""The speaker-conditioned decoder: the shipped speech model's decoder with a learned speaker embedding, so
an utterance's indices can be decoded in the voice of another *training* speaker (the VQ-VAE paper's
speaker-conversion experiment). It is an optional extra, not part of the codec: the codec's own decoder
stays unconditioned and codes any speaker.

What it is:
  * the base model's quantizer codebooks (frozen; the speaker decoder reads the indices of ordinary .vq
    files made with that base model) and its ISTFT decoder;
  * a speaker embedding table, one row of `speaker_dim` floats per training speaker (LibriSpeech
    train-clean-100 speaker ids, in `SpeakerDecoderConfig.speakers` order);
  * FiLM per decoder block: before block i the hidden frames h (B, N, width) become
    h * (1 + g_i) + b_i with (g_i, b_i) = Linear_i(embedding), initialised to zero (so the untrained
    variant is exactly the base decoder);
  * the last `tuned_blocks` blocks, the output norm and the head fine-tuned (the earlier blocks are the
    base model's, unchanged).

The weights file (`save_speaker_decoder`) holds only the tensors that differ from the base model (the
embedding, the FiLM layers, the tuned blocks and the head, float16) and names the base model by id and
weights hash; `load_speaker_decoder` rebuilds the rest from the base model and refuses another one.

Shapes: indices (B, s, N) int64 (s <= S stages, -1 = absent stage), speaker (B,) int64 rows of the table,
audio (B, N * hop) float32 in [-1, 1] at 16 kHz.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from vqcodec.audio.model import AudioModelConfig, AudioVQVAE, ISTFTDecoder
from vqcodec.audio.spectral import istft_exact
from vqcodec.quantization.residual_vq import ResidualVQ
from vqcodec.weights.io import load_weights, save_weights

__all__ = ["SPEAKER_ROLE", "SpeakerDecoderConfig", "SpeakerISTFTDecoder", "SpeakerDecoder", "speaker_of",
           "heldout_start", "read_speaker_sexes", "build_speaker_decoder", "save_speaker_decoder",
           "load_speaker_decoder", "read_speaker_config", "describe"]

SPEAKER_ROLE = "speaker-decoder"
"""The registry role of a speaker decoder component (optional: the codec works without it)."""

HELDOUT_FRACTION = 0.2
"""Fraction at the end of every training utterance that the speaker decoder never trains on."""


def speaker_of(path: str | Path) -> str:
    """The speaker id of a LibriSpeech file name "SPEAKER-CHAPTER-UTTERANCE.flac" -> "SPEAKER"."""
    stem = Path(path).stem
    speaker = stem.split("-", 1)[0]
    if not speaker.isdigit():
        raise ValueError(f"{path}: not a LibriSpeech file name (SPEAKER-CHAPTER-UTTERANCE); the speaker decoder "
                         "learns its speakers from these names")
    return speaker


def heldout_start(num_samples: int, hop: int, fraction: float = HELDOUT_FRACTION) -> int:
    """First sample of an utterance's held-out end part: a multiple of `hop`, so that the training part is
    whole frames. Samples [0, start) may be trained on, [start, num_samples) are held out."""
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    return int(num_samples * (1 - fraction)) // hop * hop


def read_speaker_sexes(folder: str | Path) -> dict[str, str]:
    """speaker id -> "F" / "M" from a LibriSpeech SPEAKERS.TXT in `folder` ({} when there is none)."""
    path = Path(folder) / "SPEAKERS.TXT"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = [p.strip() for p in line.split("|")]
        if line.startswith(";") or len(parts) < 2:
            continue
        out[parts[0]] = parts[1]
    return out


@dataclass(frozen=True)
class SpeakerDecoderConfig:
    """What a speaker decoder is, stored in its weights file beside the tensors.

    speakers: the training speakers' ids (LibriSpeech reader ids as strings), one embedding row each, in order.
    sexes: "F", "M" or "?" per speaker (from SPEAKERS.TXT; informational).
    speaker_dim: floats per embedding row. tuned_blocks: last decoder blocks fine-tuned (plus norm and head).
    default_stages: stages `convert` decodes by default (the count the benchmark found best for conversion).
    base_model_id, base_weights_hash (32 hex): the audio model whose indices it decodes.
    """

    speakers: tuple[str, ...]
    sexes: tuple[str, ...] = ()
    speaker_dim: int = 32
    tuned_blocks: int = 3
    default_stages: int = 3
    base_model_id: str = ""
    base_weights_hash: str = ""

    def __post_init__(self) -> None:
        if not self.speakers or len(set(self.speakers)) != len(self.speakers):
            raise ValueError("a speaker decoder needs at least one speaker id, each listed once")
        if self.sexes and len(self.sexes) != len(self.speakers):
            raise ValueError(f"{len(self.sexes)} sexes for {len(self.speakers)} speakers")
        if self.speaker_dim < 1 or self.tuned_blocks < 0 or self.default_stages < 1:
            raise ValueError("speaker_dim and default_stages must be >= 1, tuned_blocks >= 0")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["speakers"], d["sexes"] = list(self.speakers), list(self.sexes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SpeakerDecoderConfig":
        d = dict(d)
        d["speakers"] = tuple(str(s) for s in d.get("speakers", ()))
        d["sexes"] = tuple(d.get("sexes", ()))
        return cls(**d)

    def index(self, speaker: str | int) -> int:
        """The embedding row of a speaker id (str or int). ValueError listing the valid ids otherwise."""
        key = str(speaker).strip()
        try:
            return self.speakers.index(key)
        except ValueError:
            raise ValueError(f"unknown speaker {speaker!r}: the speaker decoder knows the {len(self.speakers)} "
                             f"training speakers {', '.join(self.speakers)}") from None


class SpeakerISTFTDecoder(ISTFTDecoder):
    """`ISTFTDecoder` with FiLM from a speaker embedding before every block.

    forward(z (B, N, D) float32, speaker (B,) int64) -> (B, N * hop) float32 (not clamped)."""

    def __init__(self, cfg: AudioModelConfig, spk: SpeakerDecoderConfig) -> None:
        if cfg.decoder != "istft":
            raise ValueError(f"the speaker decoder extends the 'istft' decoder, the base model has {cfg.decoder!r}")
        if spk.tuned_blocks > cfg.dec_blocks:
            raise ValueError(f"tuned_blocks={spk.tuned_blocks} but the decoder has {cfg.dec_blocks} blocks")
        super().__init__(cfg)
        self.spk = spk
        self.speaker_embedding = nn.Embedding(len(spk.speakers), spk.speaker_dim)
        nn.init.normal_(self.speaker_embedding.weight, std=1.0)
        self.film = nn.ModuleList(nn.Linear(spk.speaker_dim, 2 * cfg.width) for _ in range(cfg.dec_blocks))
        for lin in self.film:  # zero: the untrained variant is the base decoder
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def conditioned_spectrum(self, z: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """(B, N, D) latents, (B,) speaker rows -> (B, bins, N * sub) complex64 spectrum."""
        if speaker.shape != (z.shape[0],):
            raise ValueError(f"expected one speaker per clip, shape ({z.shape[0]},), got {tuple(speaker.shape)}")
        e = self.speaker_embedding(speaker)  # (B, dim)
        h = self.norm_in(self.from_latent(z))
        for block, film in zip(self.blocks, self.film):
            gain, bias = film(e)[:, None].chunk(2, dim=-1)  # (B, 1, width) each
            h = block(h * (1 + gain) + bias)
        return self.head_spectrum(h)

    def forward(self, z: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return istft_exact(self.conditioned_spectrum(z, speaker), self.cfg.istft_n_fft, self.cfg.istft_hop,
                           self.window)

    def tuned_prefixes(self) -> tuple[str, ...]:
        """State-dict key prefixes of the tensors that differ from the base decoder (trained, shipped)."""
        first = self.cfg.dec_blocks - self.spk.tuned_blocks
        return ("speaker_embedding.", "film.", *(f"blocks.{i}." for i in range(first, self.cfg.dec_blocks)),
                "norm_out.", "head.")

    def tuned_state(self) -> dict[str, torch.Tensor]:
        """The tensors a weights file holds (see `tuned_prefixes`)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(self.tuned_prefixes())}


class SpeakerDecoder(nn.Module):
    """The base model's quantizer (frozen) + `SpeakerISTFTDecoder`. See the module docstring for shapes."""

    def __init__(self, quantizer: ResidualVQ, decoder: SpeakerISTFTDecoder) -> None:
        super().__init__()
        self.quantizer, self.decoder = quantizer, decoder
        for p in self.quantizer.parameters():
            p.requires_grad_(False)

    @property
    def config(self) -> SpeakerDecoderConfig:
        return self.decoder.spk

    @property
    def hop(self) -> int:
        return self.decoder.cfg.hop

    def forward(self, indices: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """Training pass: (B, s, N) int64 indices (-1: stage absent), (B,) speaker rows -> (B, N * hop) float32."""
        if indices.dim() != 3:
            raise ValueError(f"expected indices of shape (B, stages, frames), got {tuple(indices.shape)}")
        z = self.quantizer.decode(indices.transpose(1, 2))  # (B, N, D)
        return self.decoder(z, speaker)

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor, speaker: torch.Tensor | int) -> torch.Tensor:
        """(B, s, N) int64 indices, speaker row(s) (int or (B,) int64) -> (B, N * hop) float32 in [-1, 1]."""
        n = len(self.config.speakers)
        speaker = torch.as_tensor(speaker, dtype=torch.long)
        if speaker.dim() == 0:
            speaker = speaker.expand(indices.shape[0])
        if bool(((speaker < 0) | (speaker >= n)).any()):
            raise ValueError(f"speaker rows must be in 0..{n - 1}, got {speaker.tolist()}")
        return self(indices, speaker).clamp(-1.0, 1.0)


def build_speaker_decoder(base: AudioVQVAE, spk: SpeakerDecoderConfig) -> SpeakerDecoder:
    """A new speaker decoder on `base`: its quantizer, a decoder initialised from its decoder (FiLM at zero,
    so it decodes exactly as the base does until trained)."""
    decoder = SpeakerISTFTDecoder(base.cfg, spk)
    missing, unexpected = decoder.load_state_dict(base.decoder.state_dict(), strict=False)
    if unexpected or any(not k.startswith(("speaker_embedding.", "film.")) for k in missing):
        raise ValueError(f"base decoder does not fit: missing {missing}, unexpected {unexpected}")
    return SpeakerDecoder(base.quantizer, decoder)


def save_speaker_decoder(path: str | Path, model: SpeakerDecoder, model_id: str) -> None:
    """Write the tensors that differ from the base model (float16) with the base model config and the
    speaker config as metadata."""
    config = {"model": model.decoder.cfg.to_dict(), "speaker": model.config.to_dict()}
    save_weights(path, model.decoder.tuned_state(), model_id, config, half=True)


def read_speaker_config(path: str | Path) -> tuple[SpeakerDecoderConfig, str]:
    """(speaker config, model id) of a speaker decoder weights file, without building the model."""
    _, model_id, config = load_weights(path)
    try:
        return SpeakerDecoderConfig.from_dict(config["speaker"]), model_id
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a speaker decoder weights file ({e}); reinstall vqcodec or train one "
                         "with `vqcodec train speaker-decoder`") from None


def load_speaker_decoder(path: str | Path, base: AudioVQVAE, base_hash: bytes | None = None
                         ) -> tuple[SpeakerDecoder, str]:
    """A speaker decoder weights file + its base model -> (SpeakerDecoder in eval mode, model id).

    base_hash: the base weights file's hash (16 bytes); when given it must be the one the file names.
    Raises ValueError when the file is not a speaker decoder or names another base model."""
    tensors, model_id, config = load_weights(path)
    try:
        spk = SpeakerDecoderConfig.from_dict(config["speaker"])
        base_cfg = AudioModelConfig.from_dict(config["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a speaker decoder weights file ({e}); reinstall vqcodec or train one "
                         "with `vqcodec train speaker-decoder`") from None
    if base_cfg != base.cfg or (base_hash is not None and spk.base_weights_hash
                                and bytes(base_hash).hex()[:32] != spk.base_weights_hash[:32]):
        raise ValueError(f"{path} decodes the indices of audio model {spk.base_model_id} "
                         f"({spk.base_weights_hash}); it cannot decode this model's")
    model = build_speaker_decoder(base, spk)
    expected = set(model.decoder.tuned_state())
    if set(tensors) != expected:
        raise ValueError(f"{path}: tensors {sorted(set(tensors) ^ expected)[:4]}... do not match its config; "
                         "the file is damaged, reinstall vqcodec")
    try:
        model.decoder.load_state_dict(tensors, strict=False)
    except RuntimeError as e:
        raise ValueError(f"{path}: {e}") from None
    return model.eval(), model_id


def describe(spk: SpeakerDecoderConfig) -> str:
    """One line per speaker: "ID SEX" (for --list-speakers)."""
    sexes = spk.sexes or ("?",) * len(spk.speakers)
    return "\n".join(f"{s} {x}" for s, x in zip(spk.speakers, sexes))

