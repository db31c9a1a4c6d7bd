"""A harmonic-plus-noise speech decoder: the speech model's frame-rate ConvNeXt decoder with two heads.

    latents z (B, N, D) -> ConvNeXt blocks (B, N, width) -> noise head: inverse STFT of predicted log
                                                            magnitudes with the phase of position-keyed
                                                            white noise (`vqcodec.audio.noise`; noise
                                                            "filtered"), or of predicted magnitude and phase
                                                            (noise "istft", as `ISTFTDecoder`)
                                                         -> harmonic head, per control point (every
                                                            `ctrl_hop` samples, `hop / ctrl_hop` per frame):
                                                            f0 (Hz), voicing logit, log spectral envelope
    samples = noise branch + oscillator bank (`vqcodec.audio.harmonic`) at k * f0, k = 1..H, with
              amplitudes read off the envelope at each harmonic and gated by voicing.

The oscillator's phase is a running sum over the whole signal, so its harmonics stay coherent from one
frame to the next by construction (the iSTFT decoder alone has to predict a phase per sub-frame, and its
regression losses make that phase noise above the first harmonics). The noise branch carries what is not
harmonic: fricatives, breath, the aperiodic part of voiced sounds. With a learned phase ("istft") it can also
render voiced sound by itself, and in training it did (the oscillators fell 35 dB below it: model card), so
the default "filtered" branch shapes noise only.

Shapes and units: z (B, N, D) float; control tensors (B, M) / (B, M, n_env) with M = N * hop / ctrl_hop,
control point j centred on sample j * ctrl_hop; samples (B, N * hop) float32 at 16 kHz.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from vqcodec.audio.harmonic import HarmonicConfig, harmonic_amplitudes, synthesize
from vqcodec.audio.model import AudioModelConfig, ISTFTDecoder
from vqcodec.audio.noise import filtered_noise
from vqcodec.audio.spectral import istft_exact

__all__ = ["HNDecoderConfig", "HNControls", "HNDecoder", "SYNTH_POINTS"]

GATE_SCALE = 25.0
"""The residual branch's gate logits are `gate_scale` (this by default, and for files that do not say) x its
`res_gate` parameters: an optimizer step moves a logit 25 times as far, so the gates settle within hundreds of
steps (with the plain parameter, pilot G1's, they had moved by 0.1 after 500 steps at lr 2e-4)."""

SYNTH_POINTS = 200
"""`HNDecoder.render_span` renders its oscillators this many control points at a time (1 s at 16 kHz with
ctrl_hop 80): the bank's working tensors (about 10 MB a second of audio) are a span's, not the chunk's, and
the samples are those of one pass (`synthesize` splits exactly at control points)."""


@dataclass(frozen=True)
class HNDecoderConfig:
    """The decoder's shape: the base speech model's decoder fields plus the oscillator bank's."""

    model: AudioModelConfig = field(default_factory=AudioModelConfig)
    harmonic: HarmonicConfig = field(default_factory=HarmonicConfig)
    env_init: float = -7.0  # initial log envelope (natural log of amplitude): the harmonic branch starts quiet
    noise: str = "filtered"  # "filtered": magnitude only, phase of position-keyed noise; "istft": learned phase
    f0_bins: int = 192  # f0 as a class over this many log-spaced bins (f0_min..f0_max); 0: one regressed value
    residual: bool = False  # a third branch: learned magnitude and phase (inverse STFT), gated per stage count
    residual_init: float = -4.0  # initial gate logit of every stage count (sigmoid(-4) = 0.018)
    gate_scale: float = GATE_SCALE  # gate logit = gate_scale x its parameter
    residual_detach: bool = False  # the residual branch reads the blocks' output detached (its losses train it alone)

    def __post_init__(self) -> None:
        if self.model.hop % self.harmonic.ctrl_hop:
            raise ValueError(f"ctrl_hop={self.harmonic.ctrl_hop} must divide hop={self.model.hop}")
        if self.noise not in ("filtered", "istft"):
            raise ValueError(f"noise must be 'filtered' or 'istft', got {self.noise!r}")
        if self.f0_bins < 0 or self.f0_bins == 1:
            raise ValueError(f"f0_bins must be 0 (regression) or >= 2, got {self.f0_bins}")

    def to_dict(self) -> dict:
        out = {"model": self.model.to_dict(), "harmonic": asdict(self.harmonic), "env_init": self.env_init,
               "noise": self.noise, "f0_bins": self.f0_bins}
        if self.residual:  # files of decoders without the branch keep their config
            out.update(residual=True, residual_init=self.residual_init, gate_scale=self.gate_scale)
            if self.residual_detach:
                out.update(residual_detach=True)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "HNDecoderConfig":
        return cls(AudioModelConfig.from_dict(d["model"]), HarmonicConfig(**d["harmonic"]), float(d["env_init"]),
                   d.get("noise", "istft"), int(d.get("f0_bins", 0)), bool(d.get("residual", False)),
                   float(d.get("residual_init", -4.0)), float(d.get("gate_scale", GATE_SCALE)),
                   bool(d.get("residual_detach", False)))


def _exp32(x: torch.Tensor) -> torch.Tensor:
    """exp in float64, rounded to float32: the same value for an element whatever the tensor's size (a float32
    exp's vectorised body and scalar tail can differ by an ulp, and which elements fall in the tail depends on
    the size, i.e. on the chunk)."""
    return torch.exp(x.double()).float()


def _sigmoid32(x: torch.Tensor) -> torch.Tensor:
    """sigmoid in float64, rounded to float32 (see `_exp32`)."""
    return torch.sigmoid(x.double()).float()


@dataclass
class HNControls:
    """What the harmonic head predicts per control point: f0 (B, M) Hz, voicing_logit (B, M),
    log_env (B, M, n_env) natural-log amplitude of the harmonic envelope, and with f0 bins the f0 class logits
    (B, M, f0_bins) float32 (else None); from `render` of a decoder with a residual branch, that branch's
    samples (else None)."""

    f0: torch.Tensor
    voicing_logit: torch.Tensor
    log_env: torch.Tensor
    f0_logits: torch.Tensor | None = None
    residual: torch.Tensor | None = None  # `render` with a residual branch: its samples (B, N * hop) float32


class HNDecoder(ISTFTDecoder):
    """`ISTFTDecoder` (blocks, noise head) plus a harmonic head; see the module docstring.

    Its state dict is the iSTFT decoder's plus `harm_head.*`, so a trained `ISTFTDecoder` loads into it
    (non-strict) as the starting point.
    """

    def __init__(self, cfg: HNDecoderConfig) -> None:
        super().__init__(cfg.model)
        self.hn_cfg = cfg
        if cfg.noise == "filtered":  # log magnitudes only: (sub, bins) per frame
            self.head = nn.Linear(cfg.model.width, self.sub * self.bins)
        h = cfg.harmonic
        self.ctrl_sub = cfg.model.hop // h.ctrl_hop
        self.harm_head = nn.Linear(cfg.model.width, self.ctrl_sub * (2 + h.n_env))
        with torch.no_grad():
            self.harm_head.weight.mul_(0.1)
            bias = self.harm_head.bias.view(self.ctrl_sub, 2 + h.n_env)
            bias.zero_()
            bias[:, 2:] = cfg.env_init
        if cfg.f0_bins:  # its own small MLP: pitch needs more than a linear read-out of the shared features
            w = cfg.model.width
            self.f0_head = nn.Sequential(nn.Linear(w, w), nn.GELU(), nn.Linear(w, self.ctrl_sub * cfg.f0_bins))
            self.register_buffer("f0_grid", torch.linspace(math.log2(h.f0_min), math.log2(h.f0_max), cfg.f0_bins),
                                 persistent=False)  # log2 Hz at each bin's centre
        if cfg.residual:  # (log magnitude, phase) per sub-frame and bin, as ISTFTDecoder's head; a gate per stage count
            self.res_head = nn.Linear(cfg.model.width, self.sub * 2 * self.bins)
            self.res_gate = nn.Parameter(torch.full((cfg.model.num_stages + 1,), cfg.residual_init / cfg.gate_scale))

    def f0_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., f0_bins) logits -> (...) f0 in Hz: the softmax-weighted mean of log2 f0 over the bins within
        4 of the most likely one (CREPE's decoding; precise between bins, immune to a far-away second mode).

        Elementwise float64 arithmetic in a fixed order over the 9 bins, rounded to float32 at the end: no
        reduction kernel (whose summation order can depend on the tensor's size) and no float32 transcendental
        (whose vectorised body and scalar tail can differ by an ulp), so a control point gets the same f0 in a
        chunk as in a whole pass."""
        k = logits.shape[-1]
        logits = logits.double()
        top = logits.argmax(-1, keepdim=True)
        offsets = range(-4, 5)
        idx = [(top + o).clamp(0, k - 1) for o in offsets]
        inside = [((top + o) >= 0) & ((top + o) < k) for o in offsets]
        vals = [torch.gather(logits, -1, i) for i in idx]
        peak = torch.gather(logits, -1, top)
        total = torch.zeros_like(peak)
        acc = torch.zeros_like(peak)
        for v, i, ok in zip(vals, idx, inside):
            w = torch.where(ok, torch.exp(v - peak), torch.zeros_like(v))
            total = total + w
            acc = acc + w * self.f0_grid.double()[i]
        return torch.exp2(acc / total)[..., 0].float()

    def noise_branch(self, h: torch.Tensor, start: "int | torch.Tensor") -> torch.Tensor:
        """(B, N, width) output of the blocks -> (B, N * hop) float32 noise samples. start: the absolute index
        of the span's first sample (int, or (B,) int64), which keys the noise of "filtered"."""
        if self.hn_cfg.noise == "istft":
            return istft_exact(self.head_spectrum(h), self.cfg.istft_n_fft, self.cfg.istft_hop, self.window)
        out = self.head(self.norm_out(h)).float()  # (B, N, sub * bins)
        b, n, _ = out.shape
        mag = _exp32(out.reshape(b, n * self.sub, self.bins).clamp(max=6.0)).transpose(1, 2)
        return filtered_noise(mag, start, self.cfg.istft_n_fft, self.cfg.istft_hop, self.window)

    def residual_branch(self, h: torch.Tensor, stages: torch.Tensor) -> torch.Tensor:
        """(B, N, width) output of the blocks, stages (B, N) int64 (present stages per frame, 0..S) -> (B, N * hop)
        float32: the inverse STFT of a learned magnitude and phase, each frame's sub-frames scaled by
        sigmoid(gate_scale * res_gate[stage count]) (how much waveform detail the indices of that many stages can
        place). With `residual_detach` the branch reads `h` detached: in training its loss reaches its own head and
        gates only, not the blocks the harmonic and noise heads read (inference is the same either way)."""
        if self.hn_cfg.residual_detach:
            h = h.detach()
        out = self.res_head(self.norm_out(h)).float()
        b, n, _ = out.shape
        out = out.reshape(b, n * self.sub, 2, self.bins)
        gate = _sigmoid32(self.res_gate * self.hn_cfg.gate_scale)[stages.clamp(0, self.res_gate.numel() - 1)]
        mag = _exp32(out[:, :, 0].clamp(max=6.0)) * gate.repeat_interleave(self.sub, 1)[..., None]
        phase = out[:, :, 1].double()
        spec = torch.complex((mag * torch.cos(phase).float()), (mag * torch.sin(phase).float())).transpose(1, 2)
        return istft_exact(spec, self.cfg.istft_n_fft, self.cfg.istft_hop, self.window)

    def _stages(self, stages: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        if stages is None:
            raise ValueError("this decoder has a residual branch: pass each frame's stage count (B, N)")
        if stages.shape != z.shape[:2]:
            raise ValueError(f"stages must be (B, N) = {tuple(z.shape[:2])}, got {tuple(stages.shape)}")
        return stages.long()

    def controls(self, h: torch.Tensor) -> HNControls:
        """(B, N, width) output of the blocks -> the harmonic head's controls (float32)."""
        cfg = self.hn_cfg.harmonic
        out = self.harm_head(self.norm_out(h)).float()
        b, n, _ = out.shape
        out = out.reshape(b, n * self.ctrl_sub, 2 + cfg.n_env)
        if self.hn_cfg.f0_bins:
            with torch.autocast(h.device.type, enabled=False):  # pitch in float32
                logits = self.f0_head(self.norm_out(h).float()).reshape(b, n * self.ctrl_sub, self.hn_cfg.f0_bins)
            return HNControls(self.f0_from_logits(logits), out[..., 1], out[..., 2:], logits)
        log_ratio = torch.log(torch.tensor(cfg.f0_max / cfg.f0_min))
        f0 = (cfg.f0_min * torch.exp(torch.sigmoid(out[..., 0].double()) * log_ratio.double())).float()
        return HNControls(f0, out[..., 1], out[..., 2:])

    def render(self, z: torch.Tensor, f0: torch.Tensor | None = None, voicing: torch.Tensor | None = None,
               start: "int | torch.Tensor" = 0, stages: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, HNControls]:
        """(B, N, D) latents -> ((B, N * hop) float32 samples, the predicted controls).

        f0, voicing: optional (B, M) values that replace the predicted ones in the oscillator bank (the
        pitch track of the training target, "teacher forcing"); by default the predicted f0 and
        sigmoid(voicing_logit) drive it. The whole signal is one pass (phase from 0, the last control
        point held). start: absolute index of the first sample (keys the noise; (B,) int64 for one per row).
        stages: (B, N) int64 present stages per frame (needed with a residual branch).
        """
        h = self.hidden(z)
        noise = self.noise_branch(h, start)
        residual = self.residual_branch(h, self._stages(stages, z)) if self.hn_cfg.residual else None
        ctrl = self.controls(h)
        ctrl.residual = residual
        f0_used = ctrl.f0 if f0 is None else f0
        v_used = _sigmoid32(ctrl.voicing_logit) if voicing is None else voicing
        amps = harmonic_amplitudes(f0_used.detach(), ctrl.log_env, v_used, self.hn_cfg.harmonic)
        harmonic, _ = synthesize(f0_used.detach(), amps, self.hn_cfg.harmonic)
        out = noise + harmonic
        return (out if residual is None else out + residual), ctrl

    def render_span(self, z: torch.Tensor, own: tuple[int, int], phase0: torch.Tensor | None = None,
                    start_frame: int = 0, stages: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference over a chunk of frames with its halo.

        z: (B, n, D) latents of n consecutive frames; own = (a, b): the frames of z whose samples are wanted
        (the others are halo); phase0: (B,) float64, the oscillators' phase in cycles at frame a's first
        sample (None: 0, the signal's start). Returns (samples (B, (b - a) * hop) float32, phase_end (B,)
        float64: the phase at frame b's first sample, the next chunk's phase0). start_frame: the absolute
        index of z's first frame (it keys the noise). stages: (B, n) int64 present stages per frame (needed
        with a residual branch).

        When b < n, the control point at frame b's start continues the interpolation of frame b - 1's last
        samples, so consecutive chunks (halos at least `input_range`'s) give the samples of one pass over
        all frames, up to float rounding (bit for bit where the CPU's convolution kernels round alike for every
        span length, as with AVX2; within about 1e-7 of the largest sample with AVX-512); when b == n (the
        signal's end) the last control point is held.
        """
        a, b = own
        n = z.shape[1]
        if not 0 <= a < b <= n:
            raise ValueError(f"own frames {own} are not a non-empty span of the {n} frames given")
        h = self.hidden(z)
        hop, sub = self.cfg.hop, self.ctrl_sub
        noise = self.noise_branch(h, start_frame * hop)
        if self.hn_cfg.residual:
            noise = noise + self.residual_branch(h, self._stages(stages, z))
        ctrl = self.controls(h)
        amps = harmonic_amplitudes(ctrl.f0, ctrl.log_env, _sigmoid32(ctrl.voicing_logit), self.hn_cfg.harmonic)
        points = ctrl.f0.shape[1]
        parts, phase = [], phase0
        for p0 in range(a * sub, b * sub, SYNTH_POINTS):  # bounded memory: the bank's tensors are a span's
            p1 = min(p0 + SYNTH_POINTS, b * sub)
            following = (ctrl.f0[:, p1], amps[:, p1]) if p1 < points else (None, None)
            part, phase = synthesize(ctrl.f0[:, p0:p1], amps[:, p0:p1], self.hn_cfg.harmonic, phase, *following)
            parts.append(part)
        return noise[:, a * hop:b * hop] + torch.cat(parts, 1), phase

    def forward(self, z: torch.Tensor, stages: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, D) latents -> (B, N * hop) float32 samples: the whole signal in one pass."""
        return self.render_span(z, (0, z.shape[1]), stages=stages)[0]

    def input_range(self, lo: int, hi: int) -> tuple[int, int]:
        """Frames read by samples lo..hi: the noise branch's, and the harmonic controls' (the blocks' range
        of the frames holding those samples, one frame further right for the next control point)."""
        nlo, nhi = super().input_range(lo, hi)
        flo, fhi = lo // self.cfg.hop, hi // self.cfg.hop + 1
        for block in reversed(self.blocks):
            flo, fhi = block.input_range(flo, fhi)
        return min(nlo, flo), max(nhi, fhi)
