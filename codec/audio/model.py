"""The speech VQ-VAE: an encoder to frame-rate latents, a ResidualVQ, and a decoder back to samples.

Audio inside the model is 16 kHz mono float32 in [-1, 1], tensors (B, T) with T a multiple of the hop
(`cfg.hop` samples per frame; 320 -> 50 frames/s). Latents are channels-last (B, N, D), N = T / hop
frames. Index tensors are int64 (B, S, N): S residual stages of K = 512 codes, 9 bits per index, so each
stage costs 9 * 50 = 450 bit/s before entropy coding.

Two encoders and two decoders, chosen by the config (equal-CPU pilots compared them; the default is
the pick):
  encoder "stft": STFT features (log magnitude + power-compressed real/imag) of `enc_stft_hop` sub-frames,
      stacked per frame, then ConvNeXt blocks at frame rate. Almost all compute runs at 50 Hz.
  encoder "wave": SEANet-style strided convs on the waveform (residual units + downsampling by
      `ratios` reversed), then ConvNeXt blocks at frame rate.
  decoder "istft": ConvNeXt blocks at frame rate and a linear head that predicts, per frame, hop /
      `istft_hop` sub-frames of log magnitude and phase; an inverse STFT turns them into exactly
      N * hop samples (Vocos, Siuzdak 2023).
  decoder "wave": ConvNeXt blocks at frame rate, then SEANet-style transposed-conv upsampling by
      `ratios` with residual units at each rate (EnCodec's decoder shape).

Receptive fields are finite and exact (`encoder_context` in samples, `decoder_context` in frames);
`causal=True` makes every conv causal (the STFT encoder still looks enc_n_fft / 2 - enc_stft_hop samples
past a frame's end, the inverse STFT istft_n_fft / 2 samples before a frame's start).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqcodec.audio.layers import ConvNeXtBlock, DownConv, ResUnit, UpConv, conv_input_range
from vqcodec.audio.spectral import istft_exact, stft_frames
from vqcodec.quantization.residual_vq import TRAINING_ONLY_BUFFERS, ResidualVQ, RVQOutput
from vqcodec.weights.io import load_release

__all__ = ["AudioModelConfig", "AudioVQVAE", "load_audio_model", "SAMPLE_RATE"]

SAMPLE_RATE = 16000
"""Sample rate inside the model, Hz."""


@dataclass(frozen=True)
class AudioModelConfig:
    """Hyper-parameters of the audio VQ-VAE (stored beside the weights). Units: samples at 16 kHz."""

    hop: int = 320  # samples per latent frame (50 Hz)
    latent_dim: int = 64
    num_stages: int = 16
    num_codes: int = 512
    encoder: str = "stft"  # "stft" | "wave"
    decoder: str = "istft"  # "istft" | "wave"
    width: int = 256  # channels of the frame-rate ConvNeXt blocks
    mlp_ratio: float = 3.0
    kernel: int = 7  # depthwise kernel of the ConvNeXt blocks, frames
    enc_blocks: int = 3
    dec_blocks: int = 6
    enc_stft_hop: int = 80  # encoder STFT sub-frame hop, samples (divides hop)
    enc_n_fft: int = 320
    istft_hop: int = 80  # decoder inverse-STFT sub-frame hop, samples (divides hop)
    istft_n_fft: int = 320
    ratios: tuple[int, ...] = (8, 5, 4, 2)  # "wave" nets: up-sampling factors from frame rate to samples
    wave_channels: int = 32  # "wave" nets: channels at sample rate, doubled at each lower rate
    causal: bool = False
    ema: bool = True

    def __post_init__(self) -> None:
        if self.encoder not in ("stft", "wave") or self.decoder not in ("istft", "wave"):
            raise ValueError(f"encoder must be 'stft' or 'wave', decoder 'istft' or 'wave'; got "
                             f"{self.encoder!r}, {self.decoder!r}")
        for name in ("enc_stft_hop", "istft_hop"):
            if self.hop % getattr(self, name):
                raise ValueError(f"{name}={getattr(self, name)} must divide hop={self.hop}")
        if self.istft_n_fft < 2 * self.istft_hop or self.enc_n_fft < self.enc_stft_hop:
            raise ValueError("need istft_n_fft >= 2 * istft_hop and enc_n_fft >= enc_stft_hop")
        if math.prod(self.ratios) != self.hop:
            raise ValueError(f"ratios {self.ratios} multiply to {math.prod(self.ratios)}, not hop={self.hop}")

    @property
    def frame_rate(self) -> float:
        """Latent frames per second (Hz)."""
        return SAMPLE_RATE / self.hop

    def kbps(self, stages: int) -> float:
        """Raw rate of the first `stages` stages before entropy coding, kbit/s."""
        return stages * math.log2(self.num_codes) * self.frame_rate / 1000

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratios"] = list(self.ratios)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AudioModelConfig":
        d = dict(d)
        if "ratios" in d:
            d["ratios"] = tuple(d["ratios"])
        return cls(**d)


def _blocks(cfg: AudioModelConfig, n: int) -> nn.ModuleList:
    return nn.ModuleList(ConvNeXtBlock(cfg.width, cfg.kernel, cfg.mlp_ratio, layer_scale=1.0 / max(n, 1),
                                       causal=cfg.causal) for _ in range(n))


def _blocks_input_range(blocks: nn.ModuleList, lo: int, hi: int) -> tuple[int, int]:
    for b in reversed(blocks):
        lo, hi = b.input_range(lo, hi)
    return lo, hi


# ------------------------------------------------------------------------------------------ encoders

class STFTEncoder(nn.Module):
    """(B, T) samples -> (B, T / hop, D) latents from STFT features at `enc_stft_hop`.

    Per sub-frame and bin: log(|X| + 1e-5) and the real and imaginary parts of |X|^0.3 e^{i phase}
    (power-compressed complex spectrum, which keeps phase); hop / enc_stft_hop sub-frames are stacked
    into one frame-rate feature vector.
    """

    def __init__(self, cfg: AudioModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.sub = cfg.hop // cfg.enc_stft_hop
        bins = cfg.enc_n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(cfg.enc_n_fft), persistent=False)
        self.proj = nn.Linear(3 * bins * self.sub, cfg.width)
        self.norm_in = nn.LayerNorm(cfg.width)
        self.blocks = _blocks(cfg, cfg.enc_blocks)
        self.norm_out = nn.LayerNorm(cfg.width)
        self.to_latent = nn.Linear(cfg.width, cfg.latent_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, N, 3 * bins * sub) float32."""
        spec = stft_frames(x, self.cfg.enc_n_fft, self.cfg.enc_stft_hop, self.window)  # (B, bins, N*sub)
        mag = spec.abs()
        comp = spec * (mag.clamp_min(1e-7) ** -0.7)
        feats = torch.cat([torch.log(mag + 1e-5), comp.real, comp.imag], dim=1)  # (B, 3*bins, N*sub)
        b, c, m = feats.shape
        n = m // self.sub
        return feats.reshape(b, c, n, self.sub).permute(0, 2, 3, 1).reshape(b, n, self.sub * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_in(self.proj(self.features(x)))
        for block in self.blocks:
            h = block(h)
        return self.to_latent(self.norm_out(h))

    def input_range(self, lo: int, hi: int) -> tuple[int, int]:
        lo, hi = _blocks_input_range(self.blocks, lo, hi)
        lo, hi = lo * self.sub, hi * self.sub + self.sub - 1  # frames -> sub-frames
        h, n = self.cfg.enc_stft_hop, self.cfg.enc_n_fft
        # sub-frame j windows samples j*h - n//2 + [0, n); the periodic Hann window is 0 at offset 0
        return lo * h - n // 2 + 1, hi * h + n - n // 2 - 1


class WaveEncoder(nn.Module):
    """(B, T) samples -> (B, T / hop, D): SEANet strided convs, then ConvNeXt blocks at frame rate."""

    def __init__(self, cfg: AudioModelConfig) -> None:
        super().__init__()
        c = cfg.wave_channels
        self.stem = nn.Conv1d(1, c, 7)
        self.stem_pad = (6, 0) if cfg.causal else (3, 3)
        layers: list[nn.Module] = []
        for r in reversed(cfg.ratios):
            layers += [ResUnit(c, 7, causal=cfg.causal), DownConv(c, 2 * c, r, causal=cfg.causal)]
            c *= 2
        self.down = nn.ModuleList(layers)
        self.proj = nn.Linear(c, cfg.width)
        self.norm_in = nn.LayerNorm(cfg.width)
        self.blocks = _blocks(cfg, cfg.enc_blocks)
        self.norm_out = nn.LayerNorm(cfg.width)
        self.to_latent = nn.Linear(cfg.width, cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(F.pad(x[:, None], self.stem_pad))
        for layer in self.down:
            h = layer(h)
        h = self.norm_in(self.proj(h.transpose(1, 2)))
        for block in self.blocks:
            h = block(h)
        return self.to_latent(self.norm_out(h))

    def input_range(self, lo: int, hi: int) -> tuple[int, int]:
        lo, hi = _blocks_input_range(self.blocks, lo, hi)
        for layer in reversed(self.down):
            lo, hi = layer.input_range(lo, hi)
        return conv_input_range(lo, hi, 7, pad_left=self.stem_pad[0])


# ------------------------------------------------------------------------------------------ decoders

class ISTFTDecoder(nn.Module):
    """(B, N, D) latents -> (B, N * hop) samples: ConvNeXt blocks at frame rate, then a linear head to
    hop / istft_hop sub-frames of (log magnitude, phase) per frame and an exact inverse STFT."""

    def __init__(self, cfg: AudioModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.sub = cfg.hop // cfg.istft_hop
        self.bins = cfg.istft_n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(cfg.istft_n_fft), persistent=False)
        self.from_latent = nn.Linear(cfg.latent_dim, cfg.width)
        self.norm_in = nn.LayerNorm(cfg.width)
        self.blocks = _blocks(cfg, cfg.dec_blocks)
        self.norm_out = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, self.sub * 2 * self.bins)

    def hidden(self, z: torch.Tensor) -> torch.Tensor:
        """(B, N, D) latents -> (B, N, width) output of the ConvNeXt blocks (what the heads read)."""
        h = self.norm_in(self.from_latent(z))
        for block in self.blocks:
            h = block(h)
        return h

    def spectrum(self, z: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, bins, N * sub) complex64 spectrum for the inverse STFT."""
        return self.head_spectrum(self.hidden(z))

    def head_spectrum(self, h: torch.Tensor) -> torch.Tensor:
        """(B, N, width) output of the blocks -> (B, bins, N * sub) complex64 spectrum (the head's part)."""
        out = self.head(self.norm_out(h)).float()  # (B, N, sub * 2 * bins)
        b, n, _ = out.shape
        out = out.reshape(b, n * self.sub, 2, self.bins)
        mag = torch.exp(out[:, :, 0].clamp(max=6.0))  # |X| <= e^6 ~ 400: a safeguard as in Vocos
        phase = out[:, :, 1]
        return torch.complex(mag * torch.cos(phase), mag * torch.sin(phase)).transpose(1, 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return istft_exact(self.spectrum(z), self.cfg.istft_n_fft, self.cfg.istft_hop, self.window)

    def input_range(self, lo: int, hi: int) -> tuple[int, int]:
        h, n = self.cfg.istft_hop, self.cfg.istft_n_fft
        # sub-frame j is overlap-added at samples j*h - n//2 + [0, n), with weight 0 at offset 0 (the
        # periodic Hann window), so sample t reads sub-frames j with 1 <= t - j*h + n//2 <= n - 1
        lo, hi = math.ceil((lo + n // 2 - n + 1) / h), (hi + n // 2 - 1) // h
        lo, hi = lo // self.sub, hi // self.sub  # sub-frames -> frames
        lo, hi = conv_input_range(lo, hi, 1)
        return _blocks_input_range(self.blocks, lo, hi)


class WaveDecoder(nn.Module):
    """(B, N, D) latents -> (B, N * hop) samples: ConvNeXt blocks at frame rate, then transposed convs
    up by `ratios`, a residual unit at each rate, and a 7-tap output conv."""

    def __init__(self, cfg: AudioModelConfig) -> None:
        super().__init__()
        c = cfg.wave_channels * 2 ** len(cfg.ratios)
        self.from_latent = nn.Linear(cfg.latent_dim, cfg.width)
        self.norm_in = nn.LayerNorm(cfg.width)
        self.blocks = _blocks(cfg, cfg.dec_blocks)
        self.norm_out = nn.LayerNorm(cfg.width)
        self.to_wave = nn.Linear(cfg.width, c)
        layers: list[nn.Module] = []
        for r in cfg.ratios:
            layers += [UpConv(c, c // 2, r, causal=cfg.causal), ResUnit(c // 2, 7, causal=cfg.causal)]
            c //= 2
        self.up = nn.ModuleList(layers)
        self.out = nn.Conv1d(c, 1, 7)
        self.out_pad = (6, 0) if cfg.causal else (3, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.norm_in(self.from_latent(z))
        for block in self.blocks:
            h = block(h)
        h = self.to_wave(self.norm_out(h)).transpose(1, 2)
        for layer in self.up:
            h = layer(h)
        return self.out(F.pad(F.elu(h), self.out_pad))[:, 0].float()

    def input_range(self, lo: int, hi: int) -> tuple[int, int]:
        lo, hi = conv_input_range(lo, hi, 7, pad_left=self.out_pad[0])
        for layer in reversed(self.up):
            lo, hi = layer.input_range(lo, hi)
        return _blocks_input_range(self.blocks, lo, hi)


# ------------------------------------------------------------------------------------------ model

class AudioVQVAE(nn.Module):
    """Encoder -> ResidualVQ -> Decoder. See the module docstring for shapes and units."""

    def __init__(self, cfg: AudioModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or AudioModelConfig()
        self.encoder = STFTEncoder(self.cfg) if self.cfg.encoder == "stft" else WaveEncoder(self.cfg)
        self.quantizer = ResidualVQ(self.cfg.num_stages, self.cfg.num_codes, self.cfg.latent_dim,
                                    ema=self.cfg.ema)
        self.decoder = ISTFTDecoder(self.cfg) if self.cfg.decoder == "istft" else WaveDecoder(self.cfg)

    @property
    def hop(self) -> int:
        return self.cfg.hop

    # --------------------------------------------------------------------------- receptive fields
    def encoder_context(self) -> tuple[int, int]:
        """(left, right) samples: the latent of frame f reads samples [f*hop - left, (f+1)*hop + right).

        A chunked encoder needs this much real audio either side of a chunk's frames.
        """
        f = 1000  # any frame far from the start: ranges are translation invariant in whole frames
        lo, hi = self.encoder.input_range(f, f)
        return f * self.hop - lo, hi - ((f + 1) * self.hop - 1)

    def decoder_context(self) -> tuple[int, int]:
        """(left, right) frames: every sample of frame f reads only latent frames [f - left, f + right].

        A chunked decoder needs this many frames of indices either side of a chunk.
        """
        f = 1000
        lo, hi = self.decoder.input_range(f * self.hop, (f + 1) * self.hop - 1)
        return f - lo, hi - f

    # --------------------------------------------------------------------------- weights
    def release_state(self) -> dict[str, torch.Tensor]:
        """The tensors a released weights file holds: everything but the training-only buffers."""
        return {k: v for k, v in self.state_dict().items() if not k.endswith(TRAINING_ONLY_BUFFERS)}

    @classmethod
    def from_release(cls, tensors: dict[str, torch.Tensor], config: dict) -> "AudioVQVAE":
        """Build a model from released tensors + config (as `release_state` wrote them), in eval mode.

        The training-only buffers restart from the codebooks, so the model can be trained further.
        Raises ValueError when the tensors do not match the config.
        """
        model = cls(AudioModelConfig.from_dict(config))
        try:
            missing, unexpected = model.load_state_dict(tensors, strict=False)
        except RuntimeError as e:  # shape mismatches
            raise ValueError(f"weights do not match the audio model config: {e}") from None
        missing = [k for k in missing if not k.endswith(TRAINING_ONLY_BUFFERS)]
        if missing or unexpected:
            raise ValueError(f"weights do not match the audio model config: missing {missing}, "
                             f"unexpected {unexpected}")
        for vq in model.quantizer.stages:
            vq.reset_training_state()
        return model.eval()

    # --------------------------------------------------------------------------- passes
    def _check_length(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[-1] % self.hop or x.shape[-1] == 0:
            raise ValueError(f"expected audio of shape (B, T) with T a positive multiple of {self.hop} "
                             f"samples, got {tuple(x.shape)}; pad the signal to whole frames first")

    def forward(self, x: torch.Tensor, active_stages: torch.Tensor | int | None = None
                ) -> tuple[torch.Tensor, RVQOutput]:
        """Training pass. x: (B, T) float in [-1, 1], T a multiple of hop.

        active_stages: None (all), int, or (B,) int64 stage counts per clip (quantizer dropout).
        Returns the reconstruction (B, T) float32 and the quantizer output (flat over B * N frames).
        """
        self._check_length(x)
        z = self.encoder(x)  # (B, N, D)
        b, n, d = z.shape
        if isinstance(active_stages, torch.Tensor):
            active_stages = active_stages.repeat_interleave(n)
        q = self.quantizer(z.reshape(b * n, d).float(), active_stages)
        return self.decoder(q.quantized.reshape(b, n, d)), q

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor, num_stages: int | None = None, beam: int = 1) -> torch.Tensor:
        """(B, T) float, T a multiple of hop -> (B, s, T / hop) int64 indices of the first s stages."""
        self._check_length(x)
        z = self.encoder(x).float()
        b, n, d = z.shape
        idx = self.quantizer.encode(z.reshape(b * n, d), num_stages, beam)
        return idx.reshape(b, n, -1).transpose(1, 2).contiguous()

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, s, N) int64 indices of the first s stages -> (B, N * hop) float32 samples in [-1, 1]."""
        if indices.dim() != 3:
            raise ValueError(f"expected indices of shape (B, stages, frames), got {tuple(indices.shape)}")
        z = self.quantizer.decode(indices.transpose(1, 2))  # (B, N, D)
        return self.decoder(z).clamp(-1.0, 1.0)


def load_audio_model(path) -> tuple[AudioVQVAE, str]:
    """A released audio model file (safetensors) -> (model in eval mode, model id)."""
    return load_release(path, AudioVQVAE.from_release)
