"""Voice conversion by a low-rate content code and a speaker-conditioned decoder (the VQ-VAE paper's
speaker-conversion experiment, van den Oord et al. 2017, trained end to end).

    source samples x (B, T) --ContentEncoder--> (B, Nc, D) --residual VQ--> content indices (B, Nc, S)
    any utterance of a voice --ReferenceEncoder--> speaker embedding (B, speaker_dim), unit length
    content codes + speaker embedding + f0 / voicing per control point --ConversionDecoder--> samples (B, T)

The content code is one index of K = `num_codes` every `hop * content_stride` samples (default 640 samples,
25 Hz: 9 bits x 25 = 225 bit/s), or `content_stages` indices of a residual VQ (each stage quantizes what the
stages before it left; 2 stages: 450 bit/s). At that rate the code cannot carry the voice, so the decoder has to take it
from the speaker embedding, which is trained from *another* utterance of the same speaker (the trainer,
`vqcodec.training.conversion`). Pitch is not left to the code or the embedding: the decoder is given an f0
contour and voicing per control point and renders the harmonics at exactly that f0 with an oscillator bank
(`vqcodec.audio.harmonic`), plus an inverse-STFT noise branch (as `vqcodec.audio.hn_decoder.HNDecoder`).

Conversion: encode the source; take the target's embedding (the speaker table of a trained model, or the
reference encoder on any utterance of the target); map the source's f0 contour to the target's range
(`retarget_f0`: z-scores of log2 f0 over the utterance's voiced points, re-scaled to the target speaker's
log2-f0 mean and std); decode. The converted pitch is the target's by construction.

Units and shapes: samples float32 in [-1, 1] at `sample_rate` (16 kHz), T a multiple of `content_hop` samples;
frames of `hop` samples (50 Hz); content frames of `content_hop` = hop * content_stride samples; control points
every `harmonic.ctrl_hop` samples (80: 5 ms), M = T / ctrl_hop, point j centred on sample j * ctrl_hop; f0 in
Hz (float32), voiced in {0, 1} (bool or float); pitch statistics in log2 Hz (octaves).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqcodec.audio.harmonic import HarmonicConfig, harmonic_amplitudes, synthesize
from vqcodec.audio.layers import ConvNeXtBlock
from vqcodec.audio.model import AudioModelConfig, ISTFTDecoder, STFTEncoder, _blocks_input_range
from vqcodec.audio.noise import filtered_noise
from vqcodec.audio.spectral import mel_filterbank
from vqcodec.quantization.residual_vq import TRAINING_ONLY_BUFFERS, VectorQuantizer, VQOutput
from vqcodec.weights.io import load_weights, save_weights

__all__ = ["ConversionConfig", "ContentEncoder", "ReferenceEncoder", "ConversionDecoder", "ConversionModel",
           "pitch_stats", "retarget_f0", "save_conversion_model", "load_conversion_model", "CONVERSION_MODEL_ID",
           "PITCH_STD_FLOOR"]

CONVERSION_MODEL_ID = "audio-conversion-v3"
"""The default model id of an exported conversion model."""

PITCH_STD_FLOOR = 0.05
"""Smallest standard deviation of log2 f0 (octaves) `pitch_stats` reports: a monotone source would
otherwise blow its contour up when re-scaled."""


@dataclass(frozen=True)
class ConversionConfig:
    """Hyper-parameters of the conversion model (stored beside its weights). Units: samples at `sample_rate`.

    hop: samples per frame of the encoder and decoder (320: 50 Hz). content_stride: frames merged into one
    content code (2: 25 Hz). latent_dim, num_codes: D and K of the content codebooks. content_stages: S, the
    residual-VQ stages of the content code (S indices per content frame; models before the field have 1). width, mlp_ratio, kernel:
    the ConvNeXt blocks (all three networks). enc_blocks / dec_blocks / ref_blocks: blocks of the content encoder,
    the decoder and the reference encoder. enc_stft_hop, enc_n_fft: the content encoder's STFT features (as the
    codec's STFT encoder); istft_hop, istft_n_fft: the decoder's inverse-STFT noise branch. speaker_dim: length of
    the speaker embedding. ref_n_fft, ref_hop, ref_n_mels: the reference encoder's log-mel frames; ref_floor_db:
    frames more than this far below the utterance's loudest frame are silence and not pooled. harmonic: the
    oscillator bank (its ctrl_hop is the f0 control-point spacing). env_init: initial natural-log harmonic
    envelope (the harmonic branch starts quiet). f0_ref: Hz; the decoder's pitch feature is log2(f0 / f0_ref).
    speakers: ids of the rows of the speaker table (empty until a trainer exports one). pitch: the pitch
    tracker its f0 inputs and speaker pitch statistics come from (`vqcodec.audio.pitch.pitch_labels`
    methods): a source must be tracked the same way.
    """

    sample_rate: int = 16000
    hop: int = 320
    content_stride: int = 2
    latent_dim: int = 64
    num_codes: int = 512
    content_stages: int = 1
    width: int = 256
    mlp_ratio: float = 3.0
    kernel: int = 7
    enc_blocks: int = 3
    dec_blocks: int = 6
    enc_stft_hop: int = 80
    enc_n_fft: int = 320
    istft_hop: int = 80
    istft_n_fft: int = 320
    speaker_dim: int = 128
    ref_blocks: int = 2
    ref_n_fft: int = 1024
    ref_hop: int = 256
    ref_n_mels: int = 80
    ref_floor_db: float = 40.0
    harmonic: HarmonicConfig = field(default_factory=HarmonicConfig)
    env_init: float = -7.0
    f0_ref: float = 100.0
    speakers: tuple[str, ...] = ()
    pitch: str = "harvest"  # how its pitch tracks are made: "harvest" or "dio" (files without the field: "dio")

    def __post_init__(self) -> None:
        bad = []
        for name in ("sample_rate", "hop", "content_stride", "latent_dim", "num_codes", "content_stages", "width",
                     "speaker_dim",
                     "enc_stft_hop", "enc_n_fft", "istft_hop", "istft_n_fft", "ref_n_fft", "ref_hop", "ref_n_mels"):
            if getattr(self, name) < 1:
                bad.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("enc_blocks", "dec_blocks", "ref_blocks"):
            if getattr(self, name) < 0:
                bad.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            bad.append(f"kernel must be odd, got {self.kernel}")
        if not self.mlp_ratio > 0:
            bad.append(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.harmonic.sample_rate != self.sample_rate:
            bad.append(f"harmonic.sample_rate={self.harmonic.sample_rate} must equal sample_rate={self.sample_rate}")
        for name, value in (("enc_stft_hop", self.enc_stft_hop), ("istft_hop", self.istft_hop),
                            ("harmonic.ctrl_hop", self.harmonic.ctrl_hop)):
            if value >= 1 and self.hop % value:
                bad.append(f"{name}={value} must divide hop={self.hop}")
        if self.istft_n_fft < 2 * self.istft_hop or self.enc_n_fft < self.enc_stft_hop:
            bad.append("need istft_n_fft >= 2 * istft_hop and enc_n_fft >= enc_stft_hop")
        if not self.ref_floor_db > 0 or not self.f0_ref > 0:
            bad.append(f"ref_floor_db and f0_ref must be > 0, got {self.ref_floor_db}, {self.f0_ref}")
        if any(not isinstance(s, str) or not s for s in self.speakers) or len(set(self.speakers)) != len(self.speakers):
            bad.append("speakers must be non-empty strings, each listed once")
        if self.pitch not in ("harvest", "dio"):
            bad.append(f"pitch must be 'harvest' or 'dio', got {self.pitch!r}")
        if bad:
            raise ValueError("invalid conversion model config: " + "; ".join(bad))

    @property
    def content_hop(self) -> int:
        """Samples per content code (hop * content_stride)."""
        return self.hop * self.content_stride

    @property
    def content_rate(self) -> float:
        """Content codes per second (Hz)."""
        return self.sample_rate / self.content_hop

    @property
    def bits_per_second(self) -> float:
        """Raw rate of the content code before entropy coding, bit/s."""
        return self.content_rate * self.content_stages * math.log2(self.num_codes)

    def audio_config(self, latent_dim: int) -> AudioModelConfig:
        """The codec's model config with this model's frame, block and STFT fields (for `STFTEncoder` and
        `ISTFTDecoder`), its latent width set to `latent_dim`."""
        return AudioModelConfig(hop=self.hop, latent_dim=latent_dim, num_stages=1, num_codes=self.num_codes,
                                encoder="stft", decoder="istft", width=self.width, mlp_ratio=self.mlp_ratio,
                                kernel=self.kernel, enc_blocks=self.enc_blocks, dec_blocks=self.dec_blocks,
                                enc_stft_hop=self.enc_stft_hop, enc_n_fft=self.enc_n_fft, istft_hop=self.istft_hop,
                                istft_n_fft=self.istft_n_fft, ratios=(self.hop,))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["speakers"] = list(self.speakers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ConversionConfig":
        """Inverse of `to_dict`; `harmonic` may be a dict of HarmonicConfig fields (missing ones default)."""
        d = dict(d)
        d.setdefault("pitch", "dio")  # the tracker of the models written before the field
        if isinstance(d.get("harmonic"), dict):
            d["harmonic"] = HarmonicConfig(**d["harmonic"])
        if "speakers" in d:
            d["speakers"] = tuple(str(s) for s in d["speakers"])
        return cls(**d)


def _layer_blocks(cfg: ConversionConfig, n: int) -> nn.ModuleList:
    return nn.ModuleList(ConvNeXtBlock(cfg.width, cfg.kernel, cfg.mlp_ratio, layer_scale=1.0 / max(n, 1))
                         for _ in range(n))


# ------------------------------------------------------------------------------------------ pitch helpers

def pitch_stats(f0: torch.Tensor, voiced: torch.Tensor, floor: float = PITCH_STD_FLOOR
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of log2 f0 over the voiced points: f0 (..., M) Hz, voiced (..., M) in {0, 1}
    -> (mean (...), std (...)) float32 in log2 Hz (octaves), std floored at `floor`.

    A row without voiced points uses all its points (the pitch labels fill unvoiced points by interpolation).
    """
    if f0.shape != voiced.shape or f0.dim() < 1:
        raise ValueError(f"f0 {tuple(f0.shape)} and voiced {tuple(voiced.shape)} must have the same shape (..., M)")
    lf = torch.log2(f0.float().clamp_min(1e-3))
    w = (voiced > 0.5).float()
    w = torch.where(w.sum(-1, keepdim=True) > 0, w, torch.ones_like(w))
    n = w.sum(-1)
    mean = (lf * w).sum(-1) / n
    var = (((lf - mean[..., None]) ** 2) * w).sum(-1) / n
    return mean, var.sqrt().clamp_min(floor)


def retarget_f0(f0: torch.Tensor, voiced: torch.Tensor, source_stats: tuple[torch.Tensor | float, torch.Tensor | float],
                target_stats: tuple[torch.Tensor | float, torch.Tensor | float]) -> torch.Tensor:
    """Move a contour into another speaker's range: f0 (..., M) Hz -> (..., M) Hz,
    2 ** (target_mean + target_std * (log2 f0 - source_mean) / source_std).

    source_stats / target_stats: (mean, std) in log2 Hz, scalars or shaped (...) like f0 without its last axis
    (e.g. `pitch_stats` of the source utterance, and a row of a model's `speaker_f0`). Every point is mapped the
    same way; on the voiced points the result has exactly the target's log2 mean and std (when the source stats
    are those points' own). `voiced` (..., M) only checks the shape: unvoiced points are harmless, the
    oscillators are silent there.
    """
    if f0.shape != voiced.shape:
        raise ValueError(f"f0 {tuple(f0.shape)} and voiced {tuple(voiced.shape)} must have the same shape")

    def col(v) -> torch.Tensor:
        t = torch.as_tensor(v, dtype=torch.float32, device=f0.device)
        return t[..., None] if t.dim() else t

    (sm, ss), (tm, ts) = [(col(a), col(b)) for a, b in (source_stats, target_stats)]
    z = (torch.log2(f0.float().clamp_min(1e-3)) - sm) / ss
    return torch.exp2(tm + ts * z)


# ------------------------------------------------------------------------------------------ networks

class ContentEncoder(nn.Module):
    """(B, T) samples -> (B, T / content_hop, D) pre-quantization content latents, float32.

    The codec's `STFTEncoder` at frame rate (its per-frame output projection dropped, so frames leave it at
    `width` channels after its output norm), then each `content_stride` consecutive frames concatenated and
    projected to D by one Linear.
    """

    def __init__(self, cfg: ConversionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frames = STFTEncoder(cfg.audio_config(cfg.width))
        self.frames.to_latent = nn.Identity()
        self.merge = nn.Linear(cfg.content_stride * cfg.width, cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ch = self.cfg.content_hop
        if x.dim() != 2 or x.shape[-1] == 0 or x.shape[-1] % ch:
            raise ValueError(f"expected audio of shape (B, T) with T a positive multiple of {ch} samples (one "
                             f"content code), got {tuple(x.shape)}; pad the signal to whole content frames first")
        h = self.frames(x)  # (B, N, width)
        b, n, c = h.shape
        return self.merge(h.reshape(b, n // self.cfg.content_stride, self.cfg.content_stride * c))


class ReferenceEncoder(nn.Module):
    """(B, T) samples of any voice (any T >= 1) -> (B, speaker_dim) unit-length speaker embedding, float32.

    Log-mel frames (`ref_n_mels` bands, `ref_n_fft` window, `ref_hop` hop, natural log of magnitudes clamped at
    1e-5) -> Linear -> `ref_blocks` ConvNeXt blocks -> mean over the frames that are not silence (frame power
    within `ref_floor_db` dB of the utterance's loudest frame; all frames if none qualifies) -> Linear -> L2
    normalisation. `lengths` (B,) int: valid samples per row of a zero-padded batch (frames centred past the
    end are left out); None: all T.
    """

    def __init__(self, cfg: ConversionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.ref_n_fft), persistent=False)
        self.register_buffer("mel", mel_filterbank(cfg.sample_rate, cfg.ref_n_fft, cfg.ref_n_mels), persistent=False)
        self.proj = nn.Linear(cfg.ref_n_mels, cfg.width)
        self.norm_in = nn.LayerNorm(cfg.width)
        self.blocks = _layer_blocks(cfg, cfg.ref_blocks)
        self.norm_out = nn.LayerNorm(cfg.width)
        self.out = nn.Linear(cfg.width, cfg.speaker_dim)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) -> (log-mel (B, F, n_mels) float32, frame power (B, F) in dB), F = T // ref_hop + 1."""
        with torch.autocast(x.device.type, enabled=False):
            spec = torch.stft(x.float(), self.cfg.ref_n_fft, self.cfg.ref_hop, window=self.window, center=True,
                              pad_mode="constant", return_complex=True).abs()  # (B, bins, F)
            logmel = torch.matmul(self.mel, spec).clamp_min(1e-5).log().transpose(1, 2)
            power_db = 10 * torch.log10(spec.square().sum(1) + 1e-10)
        return logmel, power_db

    def pooling_mask(self, power_db: torch.Tensor, lengths: torch.Tensor | None, num_samples: int) -> torch.Tensor:
        """(B, F) bool: the frames the embedding averages (see the class docstring)."""
        b, f = power_db.shape
        centres = torch.arange(f, device=power_db.device) * self.cfg.ref_hop
        if lengths is None:
            valid = (centres < num_samples).expand(b, f)
        else:
            valid = centres[None] < torch.as_tensor(lengths, device=power_db.device).reshape(b, 1)
        valid = torch.where(valid.any(1, keepdim=True), valid, torch.ones_like(valid))
        loudest = power_db.masked_fill(~valid, -math.inf).amax(1, keepdim=True)
        keep = valid & (power_db >= loudest - self.cfg.ref_floor_db)
        return torch.where(keep.any(1, keepdim=True), keep, valid)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 2 or x.shape[-1] == 0:
            raise ValueError(f"expected reference audio of shape (B, T) with T >= 1 samples, got {tuple(x.shape)}")
        logmel, power_db = self.features(x)
        h = self.norm_in(self.proj(logmel))
        for block in self.blocks:
            h = block(h)
        h = self.norm_out(h).float()
        keep = self.pooling_mask(power_db, lengths, x.shape[-1]).float()
        pooled = (h * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)
        return F.normalize(self.out(pooled).float(), dim=-1)


class ConversionDecoder(ISTFTDecoder):
    """Content latents + speaker embedding + f0 / voicing -> samples; see the module docstring.

    content (B, Nc, D) float (quantized latents), speaker (B, speaker_dim) float, f0 (B, M) Hz and voiced (B, M)
    in {0, 1} per control point, M = Nc * content_hop / ctrl_hop -> (B, Nc * content_hop) float32 samples.

    Frames: the content latents are projected to `width` and repeated `content_stride` times (frame rate);
    each frame adds Linear([mean of log2(f0 / f0_ref) over its control points, its voiced fraction]); before
    every ConvNeXt block the frames get FiLM from the speaker, h * (1 + g) + b with (g, b) = Linear(speaker)
    (initialised to zero). Heads, as `HNDecoder`'s (noise "filtered"): the noise branch is the inverse STFT of
    predicted log magnitudes with the phase of position-keyed white noise (`vqcodec.audio.noise`), so it cannot
    render the harmonics itself; the harmonic branch predicts a natural-log envelope of
    `n_env` bins per control point, read off at k * f0 (`harmonic_amplitudes`, gated by `voiced`) and rendered
    by the oscillator bank at the GIVEN f0 (`synthesize`): there is no f0 prediction, the pitch is the caller's.
    """

    def __init__(self, cfg: ConversionConfig) -> None:
        super().__init__(cfg.audio_config(cfg.latent_dim))
        self.conv_cfg = cfg
        h = cfg.harmonic
        self.ctrl_sub = cfg.hop // h.ctrl_hop  # control points per frame
        self.pitch_proj = nn.Linear(2, cfg.width)
        self.film = nn.ModuleList(nn.Linear(cfg.speaker_dim, 2 * cfg.width) for _ in range(cfg.dec_blocks))
        for lin in self.film:  # zero: until trained, the speaker input changes nothing
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.head = nn.Linear(cfg.width, self.sub * self.bins)  # noise: log magnitudes only
        self.harm_head = nn.Linear(cfg.width, self.ctrl_sub * h.n_env)
        with torch.no_grad():
            self.harm_head.weight.mul_(0.1)
            self.harm_head.bias.fill_(cfg.env_init)

    def _check(self, content: torch.Tensor, speaker: torch.Tensor, f0: torch.Tensor, voiced: torch.Tensor) -> None:
        cfg = self.conv_cfg
        if content.dim() != 3 or content.shape[-1] != cfg.latent_dim or content.shape[1] == 0:
            raise ValueError(f"content must be (B, Nc >= 1, {cfg.latent_dim}), got {tuple(content.shape)}")
        b, nc = content.shape[:2]
        m = nc * cfg.content_stride * self.ctrl_sub
        if speaker.shape != (b, cfg.speaker_dim):
            raise ValueError(f"speaker embedding must be ({b}, {cfg.speaker_dim}), got {tuple(speaker.shape)}")
        if f0.shape != (b, m) or voiced.shape != (b, m):
            raise ValueError(f"f0 {tuple(f0.shape)} and voiced {tuple(voiced.shape)} must be ({b}, {m}): one value per "
                             f"{cfg.harmonic.ctrl_hop} samples of the {nc} content frames")

    def hidden(self, content: torch.Tensor, speaker: torch.Tensor, f0: torch.Tensor, voiced: torch.Tensor
               ) -> torch.Tensor:
        """The blocks' output (B, Nc * content_stride, width) (see the class docstring; shapes checked)."""
        self._check(content, speaker, f0, voiced)
        cfg = self.conv_cfg
        b, nc = content.shape[:2]
        n = nc * cfg.content_stride
        h = self.from_latent(content).repeat_interleave(cfg.content_stride, dim=1)  # (B, N, width)
        hc = cfg.harmonic
        lf = torch.log2(f0.float().clamp(hc.f0_min, hc.f0_max) / cfg.f0_ref).reshape(b, n, self.ctrl_sub).mean(-1)
        vf = voiced.float().reshape(b, n, self.ctrl_sub).mean(-1)
        h = self.norm_in(h + self.pitch_proj(torch.stack([lf, vf], -1)))
        for block, film in zip(self.blocks, self.film):
            gain, bias = film(speaker)[:, None].chunk(2, dim=-1)  # (B, 1, width) each
            h = block(h * (1 + gain) + bias)
        return h

    def log_envelope(self, h: torch.Tensor) -> torch.Tensor:
        """(B, N, width) blocks' output -> (B, N * ctrl_sub, n_env) float32 natural-log harmonic envelope."""
        out = self.harm_head(self.norm_out(h)).float()
        b, n, _ = out.shape
        return out.reshape(b, n * self.ctrl_sub, self.conv_cfg.harmonic.n_env)

    def render_span(self, content: torch.Tensor, speaker: torch.Tensor, f0: torch.Tensor, voiced: torch.Tensor,
                    own: tuple[int, int], phase0: torch.Tensor | None = None, start: "int | torch.Tensor" = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Render content frames own = (a, b) of a chunk with its halo.

        content (B, n, D): n consecutive content frames; f0, voiced (B, n * content_hop / ctrl_hop): their control
        points; own: the content frames whose samples are wanted (the others are halo, at least `context()` each
        side for chunk-exact output); phase0 (B,) float64: the oscillators' phase in cycles at frame a's first
        sample (None: 0, the signal's start). Returns (samples (B, (b - a) * content_hop) float32, phase_end (B,)
        float64: the phase at frame b's first sample, the next chunk's phase0). start: the absolute index of the
        chunk's first sample (int, or (B,) int64), which keys the noise.

        When b < n the control point at frame b's start continues the interpolation of the last samples, so
        consecutive chunks give the samples of one pass over all frames up to float rounding (bit for bit where the
        CPU's convolution kernels round alike for every span length; 1 ulp off with AVX-512); at b == n (the
        signal's end) the last control point is held.
        """
        a, b = own
        n = content.shape[1] if content.dim() == 3 else 0
        if not 0 <= a < b <= n:
            raise ValueError(f"own content frames {own} are not a non-empty span of the {n} frames given")
        h = self.hidden(content, speaker, f0, voiced)
        cfg, hc = self.conv_cfg, self.conv_cfg.harmonic
        log_env = self.log_envelope(h)
        out = self.head(self.norm_out(h)).float()
        bsz, frames, _ = out.shape
        mag = torch.exp(out.reshape(bsz, frames * self.sub, self.bins).clamp(max=6.0).double()).float().transpose(1, 2)
        with torch.autocast(content.device.type, enabled=False):  # the oscillators and iSTFT in float32/64
            noise = filtered_noise(mag, start, self.cfg.istft_n_fft, self.cfg.istft_hop, self.window)
            f = f0.float()
            amps = harmonic_amplitudes(f, log_env, voiced.float(), hc)
            per = cfg.content_hop // hc.ctrl_hop
            s0, s1 = a * per, b * per
            following = (f[:, s1], amps[:, s1]) if b < n else (None, None)
            harmonic, phase_end = synthesize(f[:, s0:s1], amps[:, s0:s1], hc, phase0, *following)
        ch = cfg.content_hop
        return noise[:, a * ch:b * ch] + harmonic, phase_end

    def forward(self, content: torch.Tensor, speaker: torch.Tensor, f0: torch.Tensor,  # type: ignore[override]
                voiced: torch.Tensor, start: "int | torch.Tensor" = 0) -> torch.Tensor:
        """The whole signal in one pass: (B, Nc * content_hop) float32 samples (not clamped); start keys the noise."""
        return self.render_span(content, speaker, f0, voiced, (0, content.shape[1]), start=start)[0]

    def input_range(self, lo: int, hi: int) -> tuple[int, int]:
        """Content frames read by samples lo..hi (inclusive both): the noise branch's, and the harmonic
        envelope's (the blocks' range of the frames holding those samples, one frame further right for the next
        control point). f0 / voicing are read at the same content frames (pitch features per frame)."""
        nlo, nhi = super().input_range(lo, hi)  # frames
        flo, fhi = _blocks_input_range(self.blocks, lo // self.cfg.hop, hi // self.cfg.hop + 1)
        stride = self.conv_cfg.content_stride
        return min(nlo, flo) // stride, max(nhi, fhi) // stride

    def context(self) -> tuple[int, int]:
        """(left, right) content frames: the samples of content frame f read content frames [f - left, f + right]
        only (given the oscillator phase at f's start). A chunk needs this halo either side."""
        f, ch = 1000, self.conv_cfg.content_hop
        lo, hi = self.input_range(f * ch, (f + 1) * ch - 1)
        return f - lo, hi - f


# ------------------------------------------------------------------------------------------ model

class ConversionModel(nn.Module):
    """Content encoder + content codebooks + reference encoder + speaker-conditioned decoder + a speaker table.

    The content code's stage 1 is `quantizer`, stages 2..S are `residual_quantizers` (each quantizes the residual
    the stages before it left; the commitment loss binds the encoder output to the sum of all S stages, as
    `vqcodec.quantization.residual_vq.ResidualVQ`'s does).

    Buffers of the speaker table (S rows, one per id in `cfg.speakers`): `speaker_embeddings` (S, speaker_dim)
    float32 (unit rows) and `speaker_f0` (S, 2) float32 log2-f0 mean and std over the speaker's voiced points.
    """

    def __init__(self, cfg: ConversionConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ConversionConfig()
        self.encoder = ContentEncoder(self.cfg)
        self.quantizer = VectorQuantizer(self.cfg.num_codes, self.cfg.latent_dim)
        self.residual_quantizers = nn.ModuleList(VectorQuantizer(self.cfg.num_codes, self.cfg.latent_dim)
                                                 for _ in range(self.cfg.content_stages - 1))
        self.reference = ReferenceEncoder(self.cfg)
        self.decoder = ConversionDecoder(self.cfg)
        s = len(self.cfg.speakers)
        self.register_buffer("speaker_embeddings", torch.zeros(s, self.cfg.speaker_dim))
        self.register_buffer("speaker_f0", torch.zeros(s, 2))

    pitch_stats = staticmethod(pitch_stats)
    retarget_f0 = staticmethod(retarget_f0)

    @property
    def content_hop(self) -> int:
        """Samples per content code."""
        return self.cfg.content_hop

    @property
    def content_quantizers(self) -> list[VectorQuantizer]:
        """The S content codebooks' quantizers, stage 1 first."""
        return [self.quantizer, *self.residual_quantizers]

    def quantize_content(self, z: torch.Tensor) -> VQOutput:
        """(N, D) float pre-quantization latents -> the residual VQ's output (`VQOutput`): quantized (N, D), the
        sum of the S stages' codes with the straight-through gradient; indices (N, S) int64; loss: beta times the
        commitment of z to that sum; perplexity and usage of stage 1. Updates the codebooks when training."""
        first = self.quantizer(z)
        if not self.residual_quantizers:
            return VQOutput(first.quantized, first.indices[:, None], first.loss, first.codebook_loss,
                            first.perplexity, first.usage)
        total = first.quantized.detach()  # the value of stage 1's codes
        indices = [first.indices]
        for vq in self.residual_quantizers:
            out = vq(z.detach() - total)
            total = total + out.quantized.detach()
            indices.append(out.indices)
        commitment = F.mse_loss(z, total)
        return VQOutput(z + (total - z).detach(), torch.stack(indices, 1), self.quantizer.beta * commitment,
                        first.codebook_loss, first.perplexity, first.usage)

    def content_lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """(..., S) int64 content indices -> (..., D) float, the sum of the S stages' code vectors."""
        s = self.cfg.content_stages
        if indices.dim() < 1 or indices.shape[-1] != s:
            raise ValueError(f"expected content indices of shape (..., {s}) (one per content stage), got "
                             f"{tuple(indices.shape)}")
        out = self.quantizer.lookup(indices[..., 0].long())
        for k, vq in enumerate(self.residual_quantizers, start=1):
            out = out + vq.lookup(indices[..., k].long())
        return out

    # --------------------------------------------------------------------------- speaker table
    def set_speakers(self, ids: list[str] | tuple[str, ...], embeddings: torch.Tensor, f0_stats: torch.Tensor) -> None:
        """Replace the speaker table: ids (S,), embeddings (S, speaker_dim) (normalised here), f0_stats (S, 2)."""
        ids = tuple(str(i) for i in ids)
        if embeddings.shape != (len(ids), self.cfg.speaker_dim) or f0_stats.shape != (len(ids), 2):
            raise ValueError(f"need embeddings ({len(ids)}, {self.cfg.speaker_dim}) and f0 stats ({len(ids)}, 2), got "
                             f"{tuple(embeddings.shape)}, {tuple(f0_stats.shape)}")
        self.cfg = dataclasses.replace(self.cfg, speakers=ids)
        dev = self.speaker_embeddings.device
        self.speaker_embeddings = F.normalize(embeddings.detach().float(), dim=-1).to(dev)
        self.speaker_f0 = f0_stats.detach().float().to(dev)

    def speaker_row(self, speaker: str | int) -> int:
        """The table row of a speaker id (str or int). ValueError listing the known ids otherwise."""
        key = str(speaker).strip()
        if key not in self.cfg.speakers:
            known = ", ".join(self.cfg.speakers) or "none: train or export a table first"
            raise ValueError(f"unknown speaker {speaker!r}; this model's speaker table holds {known}. Pass a "
                             "reference utterance of the voice instead (`embed_speaker`)")
        return self.cfg.speakers.index(key)

    def speaker(self, speaker: str | int) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding (speaker_dim,), log2-f0 (mean, std) (2,)) of a table speaker."""
        row = self.speaker_row(speaker)
        return self.speaker_embeddings[row], self.speaker_f0[row]

    # --------------------------------------------------------------------------- passes
    def forward(self, x: torch.Tensor, reference: torch.Tensor, f0: torch.Tensor, voiced: torch.Tensor,
                reference_lengths: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                start: "int | torch.Tensor" = 0) -> tuple[torch.Tensor, VQOutput]:
        """Training pass: reconstruct x from its content code, the embedding of `reference` and its own pitch.

        x (B, T) float, T a multiple of content_hop; reference (B, R) samples of the same speakers (other
        utterances), reference_lengths (B,) valid samples per row (None: all); f0, voiced (B, T / ctrl_hop);
        positions (B, T / content_hop) int64: content position i reads the code at positions[:, i] (time jitter;
        None: itself); start: absolute first sample per row ((B,) int64 or int; keys the decoder's noise).
        Returns (reconstruction (B, T) float32, the content quantizer's output (`quantize_content`), flat over
        B * Nc).
        """
        z = self.encoder(x)
        b, n, d = z.shape
        q = self.quantize_content(z.reshape(b * n, d).float())
        zq = q.quantized.reshape(b, n, d)
        if positions is not None:
            if positions.shape != (b, n):
                raise ValueError(f"positions must be ({b}, {n}), got {tuple(positions.shape)}")
            zq = torch.gather(zq, 1, positions.to(zq.device)[..., None].expand(b, n, d))
        speaker = self.reference(reference, reference_lengths)
        return self.decoder(zq, speaker, f0, voiced, start), q

    @torch.no_grad()
    def encode_content(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) float samples, T a multiple of content_hop -> (B, T / content_hop, S) int64 indices in [0, K),
        greedy stage by stage."""
        z = self.encoder(x).float()
        b, n, d = z.shape
        residual = z.reshape(b * n, d)
        indices = []
        for vq in self.content_quantizers:
            idx = vq.encode(residual)
            residual = residual - vq.lookup(idx)
            indices.append(idx)
        return torch.stack(indices, 1).reshape(b, n, len(indices))

    @torch.no_grad()
    def embed_speaker(self, reference: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, R) samples of any voice -> (B, speaker_dim) unit-length embeddings (see `ReferenceEncoder`)."""
        return self.reference(reference, lengths)

    @torch.no_grad()
    def decode(self, indices: torch.Tensor, speaker_embedding: torch.Tensor, f0: torch.Tensor, voiced: torch.Tensor
               ) -> torch.Tensor:
        """(B, Nc, S) int64 content indices, speaker embedding (B, speaker_dim) or (speaker_dim,), f0 / voiced
        (B, Nc * content_hop / ctrl_hop) -> (B, Nc * content_hop) float32 samples in [-1, 1]."""
        if indices.dim() != 3:
            raise ValueError(f"expected content indices of shape (B, Nc, {self.cfg.content_stages}), got "
                             f"{tuple(indices.shape)}")
        if speaker_embedding.dim() == 1:
            speaker_embedding = speaker_embedding.expand(indices.shape[0], -1)
        z = self.content_lookup(indices)
        return self.decoder(z, speaker_embedding.float(), f0, voiced).clamp(-1.0, 1.0)

    @torch.no_grad()
    def convert(self, x: torch.Tensor, f0: torch.Tensor, voiced: torch.Tensor, target: str | int | torch.Tensor,
                target_f0: tuple[float, float] | torch.Tensor | None = None) -> torch.Tensor:
        """Speak `x` in the target's voice and pitch range.

        x (B, T) samples, T a multiple of ctrl_hop (padded here to whole content frames and cut back); f0, voiced
        (B, T / ctrl_hop): the source's pitch track (e.g. `vqcodec.audio.pitch.pitch_labels`). target:
        a table speaker id, or an embedding (speaker_dim,) / (B, speaker_dim) with `target_f0` its log2-f0
        (mean, std), shaped (2,) or (B, 2). The source contour is re-scaled by its own `pitch_stats` (`retarget_f0`).
        Returns (B, T) float32 samples in [-1, 1].
        """
        ctrl = self.cfg.harmonic.ctrl_hop
        if x.dim() != 2 or x.shape[-1] == 0 or x.shape[-1] % ctrl or f0.shape != (x.shape[0], x.shape[-1] // ctrl):
            raise ValueError(f"need x (B, T) with T a positive multiple of {ctrl} and f0, voiced (B, T / {ctrl}); got "
                             f"x {tuple(x.shape)}, f0 {tuple(f0.shape)}")
        if isinstance(target, torch.Tensor):
            if target_f0 is None:
                raise ValueError("an embedding as target needs target_f0 = its log2-f0 (mean, std)")
            emb, tstats = target, torch.as_tensor(target_f0, dtype=torch.float32)
        else:
            emb, tstats = self.speaker(target)
        t = x.shape[-1]
        pad = -t % self.content_hop
        f = retarget_f0(f0, voiced, pitch_stats(f0, voiced), (tstats[..., 0], tstats[..., 1]))
        v = voiced.float()
        if pad:
            x = F.pad(x, (0, pad))
            f = torch.cat([f, f[:, -1:].expand(-1, pad // ctrl)], 1)
            v = F.pad(v, (0, pad // ctrl))
        return self.decode(self.encode_content(x), emb, f, v)[:, :t]


# ------------------------------------------------------------------------------------------ files

def save_conversion_model(path: str | Path, model: ConversionModel, model_id: str = CONVERSION_MODEL_ID) -> None:
    """Write the model's tensors (float16; the training-only codebook statistics left out) with its config (and
    so its speaker ids) as metadata."""
    tensors = {k: v for k, v in model.state_dict().items() if not k.endswith(TRAINING_ONLY_BUFFERS)}
    save_weights(path, tensors, model_id, {"conversion": model.cfg.to_dict()}, half=True)


def load_conversion_model(path: str | Path) -> tuple[ConversionModel, str]:
    """A conversion weights file -> (ConversionModel in eval mode, model id). ValueError when the file is not
    one or does not match its config."""
    tensors, model_id, config = load_weights(path)
    try:
        cfg = ConversionConfig.from_dict(config["conversion"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a conversion model weights file ({e}); train one with "
                         "`vqcodec.training.conversion.train_conversion`") from None
    model = ConversionModel(cfg)
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"{path}: the weights do not match its config ({e}); the file is damaged") from None
    missing = [k for k in missing if not k.endswith(TRAINING_ONLY_BUFFERS)]
    if missing or unexpected:
        raise ValueError(f"{path}: the weights do not match its config (missing {missing[:4]}, unexpected "
                         f"{unexpected[:4]}); the file is damaged")
    for vq in model.content_quantizers:
        vq.reset_training_state()
    return model.eval(), model_id
