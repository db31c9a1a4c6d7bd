"""Training of the voice-conversion model (`vqcodec.audio.conversion`): content encoder, content codebook,
reference encoder and speaker-conditioned decoder, jointly, on the shared loop.

Data. Every audio file under `data` (or every row of `speakers_csv`) is one utterance of one speaker:
  * `speakers_csv`: a CSV with columns `file` (path relative to `data`) and `speaker`; its rows are the data set;
  * otherwise every audio file under `data`, its speaker the LibriSpeech file-name prefix (SPEAKER-CHAPTER-UTT,
    `vqcodec.audio.speaker_model.speaker_of`), or, for names without one, the name of the folder holding the
    file (VCTK's wav48/p225/p225_001.wav -> "p225"; files directly in `data` are all one speaker).
Speakers in `exclude_speakers` are dropped before anything else (never trained on, not in the exported table):
the benchmark's held-out speakers. Of every other speaker, `holdout_per_speaker` utterances (fewer if the speaker
has fewer than that plus one) are held out for validation, chosen by a CRC of their file names (as
`vqcodec.audio.data.split_holdout`: the same choice everywhere).

Training utterances are loaded once (16 kHz, cut to whole frames) with their pitch labels
(`vqcodec.audio.pitch.pitch_labels`: f0 and voicing every 80 samples) and cached in
OUT/train_cache.pt (audio as int16, lossless for 16-bit sources; recomputed when the file list changes).

A step. `batch_size` crops of `crop_frames` frames from the training utterances (chosen in proportion to their
length). Each crop gets a reference: `ref_seconds` of ANOTHER training utterance of the same speaker (the whole of
it when shorter, zero-padded and masked), or, for a speaker with one training utterance, the longer of the parts of
that utterance before and after the crop (the whole utterance when the crop is all of it). The model encodes the
crop to its content code, quantizes it (EMA codebook, commitment 0.25, dead-code restarts), applies time jitter
(each code position reads its left or right neighbour's code with probability `jitter`, Chorowski et al. 2019),
embeds the reference and decodes with the crop's own f0 / voicing (teacher forcing). Loss: `AudioLoss` (phase-free
by default: complex 0, wave 0, since the oscillators make their own phase) + the quantizer's commitment loss.

Speaker adversary (`adversary` > 0, off by default). A small classifier (`SpeakerAdversary`, training only: never
exported) guesses each crop's training speaker from its quantized content code (straight-through, before the
jitter) through a gradient-reversal layer: the classifier learns to name the speaker, the encoder receives the
reversed gradient and learns to leave the voice out of the code (as domain-adversarial training, Ganin and
Lempitsky 2015; for voice conversion, e.g. Chou et al. 2018). Its cross-entropy times `adversary` is added to the
loss; the run's checkpoint then holds the model and the classifier (`model.` and `adversary.` keys).

Files written to `out`: checkpoint.pt, log.jsonl (loss terms, commit, usage, perplexity; validation {"val":
{"mel_own", "mel_swap", "usage", "perplexity", "utterances"}}), train_cache.pt, and conversion_model.safetensors
(at every checkpoint, with the speaker table: per training speaker, the normalised mean embedding of the first
`table_seconds` of up to `table_utterances` of its training utterances and its log2-f0 mean / std over all of
them).
"""
from __future__ import annotations

import copy
import csv
import logging
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqcodec.audio.conversion import CONVERSION_MODEL_ID, ConversionConfig, ConversionModel, pitch_stats, \
    retarget_f0, save_conversion_model
from vqcodec.audio.data import AUDIO_SUFFIXES, list_audio, load_audio, split_holdout
from vqcodec.audio.model import SAMPLE_RATE
from vqcodec.audio.pitch import PITCH_HOP, pitch_labels
from vqcodec.audio.speaker_model import speaker_of
from vqcodec.files import atomic_write
from vqcodec.quantization.residual_vq import TRAINING_ONLY_BUFFERS, VQOutput
from vqcodec.training.audio_losses import AudioLoss, AudioLossConfig
from vqcodec.training.loop import Built, LoopConfig, OptimizerSpec, RunContext, Task, TrainingLoop
from vqcodec.training.pitch_cache import labels_as_asked
from vqcodec.weights.io import load_weights

__all__ = ["TrainConversionConfig", "ConversionTask", "train_conversion", "read_speaker_files", "EXPORT_NAME",
           "PHASE_FREE_LOSS", "SpeakerAdversary", "reverse_gradient"]

log = logging.getLogger(__name__)
EXPORT_NAME = "conversion_model.safetensors"
CACHE = "train_cache.pt"
HOLDOUT_SALT = "vqcodec-conversion"
PHASE_FREE_LOSS = {"complex": 0.0, "wave": 0.0}
"""AudioLossConfig fields the trainer sets before `loss` (the oscillators make their own phase)."""


@dataclass(kw_only=True)
class TrainConversionConfig(LoopConfig):
    """Loop settings (see LoopConfig) plus the conversion model's (see the module docstring).

    crop_frames: frames (`hop` samples) per training crop, a multiple of the model's content_stride.
    ref_seconds: length of a reference crop. jitter: probability that a code position reads a neighbour's code.
    adversary: weight of the speaker adversary's cross-entropy (0: no adversary; see the module docstring).
    model: ConversionConfig fields to change ("harmonic" as a dict of HarmonicConfig fields). loss:
    AudioLossConfig fields, applied over PHASE_FREE_LOSS. val_utterances / val_seconds: held-out utterances
    scored at each validation (one per speaker first), and their length. table_utterances (0: all) /
    table_seconds: what the exported speaker table averages per speaker (the export runs at every checkpoint).
    """

    data: str  # folder of training speech (never an evaluation set)
    out: str
    speakers_csv: str | None = None
    holdout_per_speaker: int = 2
    exclude_speakers: tuple[str, ...] = ()
    model_id: str = CONVERSION_MODEL_ID
    steps: int = 20000
    lr: float = 3e-4
    warmup_steps: int = 100
    schedule: str = "constant"
    batch_size: int = 8
    crop_frames: int = 100
    ref_seconds: float = 3.0
    jitter: float = 0.1
    adversary: float = 0.0
    val_utterances: int = 8
    val_seconds: float = 4.0
    table_utterances: int = 8
    table_seconds: float = 6.0
    bf16: bool = True
    grad_clip: float = 10.0
    model: dict = field(default_factory=dict)
    loss: dict = field(default_factory=dict)
    init_from: str | None = None  # a conversion weights file whose same-named, same-shaped tensors start a new run
    pitch: str | None = None  # pitch-label method (`pitch_labels`): None = "harvest" for a new run, the cache's
    # on resume; a method other than the cache's relabels it

    def model_config(self, pitch: str | None = None) -> ConversionConfig:
        """The ConversionConfig of this run (defaults updated by `model`), its tracker `pitch` when given."""
        return ConversionConfig.from_dict({**ConversionConfig().to_dict(), **self.model,
                                           **({"pitch": pitch} if pitch else {})})

    def check(self) -> None:
        super().check()
        bad = []
        try:
            mc = self.model_config()
        except (TypeError, ValueError) as e:
            raise ValueError(f"invalid training settings: model: {e}") from None
        if mc.harmonic.ctrl_hop != PITCH_HOP:
            bad.append(f"model harmonic.ctrl_hop must be {PITCH_HOP} samples (the pitch labels' spacing)")
        if mc.speakers:
            bad.append("model speakers is written by the export; leave it out")
        if self.crop_frames < 1 or self.crop_frames % mc.content_stride:
            bad.append(f"crop_frames must be a positive multiple of content_stride={mc.content_stride}, got "
                       f"{self.crop_frames}")
        if self.batch_size < 1 or self.holdout_per_speaker < 0 or self.val_utterances < 0 or self.table_utterances < 0:
            bad.append("batch_size must be >= 1; holdout_per_speaker, val_utterances, table_utterances >= 0")
        if not 0 <= self.jitter <= 1:
            bad.append(f"jitter must be a probability in [0, 1], got {self.jitter}")
        if not self.adversary >= 0:
            bad.append(f"adversary must be >= 0 (0: off), got {self.adversary}")
        if not (self.ref_seconds > 0 and self.val_seconds > 0 and self.table_seconds > 0):
            bad.append("ref_seconds, val_seconds and table_seconds must be > 0")
        try:
            AudioLossConfig(**{**PHASE_FREE_LOSS, **self.loss})
        except TypeError as e:
            bad.append(f"loss: {e}")
        if bad:
            raise ValueError("invalid training settings: " + "; ".join(bad))


def _speaker_key(s: str) -> tuple:
    return (0, int(s), s) if s.isdigit() else (1, 0, s)


def read_speaker_files(data: str | Path, speakers_csv: str | Path | None = None) -> list[tuple[Path, str]]:
    """[(file, speaker id), ...] of the data set, sorted by file (see the module docstring for the rules)."""
    data = Path(data)
    if speakers_csv is None:
        out = []
        for p in list_audio(data):
            try:
                s = speaker_of(p)
            except ValueError:
                s = p.parent.name
            out.append((p, s))
        return out
    path = Path(speakers_csv)
    if not path.is_file():
        raise FileNotFoundError(f"speakers CSV not found: {path}")
    out = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"file", "speaker"} <= set(reader.fieldnames):
            raise ValueError(f"{path} needs the columns 'file' (relative to {data}) and 'speaker', has "
                             f"{reader.fieldnames}")
        for n, row in enumerate(reader, start=2):
            p, s = data / row["file"].strip(), row["speaker"].strip()
            if not p.is_file() or p.suffix.lower() not in AUDIO_SUFFIXES:
                raise FileNotFoundError(f"{path} line {n}: {p} is not an audio file; fix the row or remove it")
            if not s:
                raise ValueError(f"{path} line {n}: empty speaker id")
            out.append((p, s))
    if not out:
        raise ValueError(f"{path} lists no files")
    return sorted(out)


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - see reverse_gradient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return -grad


def reverse_gradient(x: torch.Tensor) -> torch.Tensor:
    """x unchanged forward; its gradient negated backward (the gradient-reversal layer)."""
    return _ReverseGradient.apply(x)


class SpeakerAdversary(nn.Module):
    """(B, Nc, D) content vectors -> (B, num_speakers) speaker logits, float32: two 1-d convolutions (kernel 5,
    GELU) over the content frames, the mean over time, one Linear. A training-only probe (see the module
    docstring)."""

    def __init__(self, latent_dim: int, num_speakers: int, width: int = 256) -> None:
        super().__init__()
        self.convs = nn.Sequential(nn.Conv1d(latent_dim, width, 5, padding=2), nn.GELU(),
                                   nn.Conv1d(width, width, 5, padding=2), nn.GELU())
        self.out = nn.Linear(width, num_speakers)

    def forward(self, content: torch.Tensor) -> torch.Tensor:
        return self.out(self.convs(content.float().transpose(1, 2)).mean(-1))


class _WithAdversary(nn.Module):
    """The module a run with a speaker adversary trains and checkpoints: `model` (the ConversionModel) and
    `adversary` (`SpeakerAdversary`). forward: the model's, plus the adversary's logits on the reversed-gradient
    quantized content."""

    def __init__(self, model: ConversionModel, adversary: SpeakerAdversary) -> None:
        super().__init__()
        self.model = model
        self.adversary = adversary

    def forward(self, x: torch.Tensor, reference: torch.Tensor, f0: torch.Tensor, voiced: torch.Tensor,
                reference_lengths: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                start: "int | torch.Tensor" = 0) -> tuple[torch.Tensor, VQOutput, torch.Tensor]:
        """`ConversionModel.forward`'s (reconstruction, quantizer output) and (B, speakers) logits."""
        y, q = self.model(x, reference, f0, voiced, reference_lengths, positions, start)
        content = q.quantized.reshape(x.shape[0], -1, self.model.cfg.latent_dim)  # straight-through, unjittered
        return y, q, self.adversary(reverse_gradient(content))


def _to_int16(x: torch.Tensor) -> torch.Tensor:
    return (x * 32768.0).round().clamp(-32768, 32767).to(torch.int16)


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 32768.0


class ConversionTask(Task):
    """The conversion model as a `Task` (see the module docstring)."""

    name = "audio-conversion"
    # init_from only starts a run: a resume ignores it
    run_defining = ("speakers_csv", "holdout_per_speaker", "exclude_speakers", "batch_size", "crop_frames",
                    "ref_seconds", "jitter", "adversary", "model", "loss")
    progress_keys = ("mel", "usage")
    config: TrainConversionConfig

    # ------------------------------------------------------------------------------------------ data
    def _split(self) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
        cfg = self.config
        items = read_speaker_files(cfg.data, cfg.speakers_csv)
        excluded = {str(s) for s in cfg.exclude_speakers}
        items = [(p, s) for p, s in items if s not in excluded]
        if not items:
            raise ValueError(f"no training utterances left in {cfg.data} after excluding speakers "
                             f"{sorted(excluded)}")
        by_speaker: dict[str, list[Path]] = {}
        for p, s in items:
            by_speaker.setdefault(s, []).append(p)
        train, held = [], []
        for s in sorted(by_speaker, key=_speaker_key):
            files = by_speaker[s]
            t, h = split_holdout(files, min(cfg.holdout_per_speaker, len(files) - 1), HOLDOUT_SALT)
            train += [(p, s) for p in t]
            held += [(p, s) for p in h]
        return train, held

    def build(self, ctx: RunContext) -> Built:
        cfg = self.config
        self.mcfg = cfg.model_config()
        self.hop, self.sub = self.mcfg.hop, self.mcfg.hop // PITCH_HOP
        train, held = self._split()
        self.cache = _cached(ctx.out_dir / CACHE, train, Path(cfg.data), ctx.rank, self.hop,
                             cfg.pitch or self.config.model.get("pitch"))
        self.mcfg = cfg.model_config(self.cache["pitch"])  # the tracker its labels came from
        c = self.cache
        self.speakers = sorted(set(c["speakers"]), key=_speaker_key)
        self.utts_of = {s: [i for i, t in enumerate(c["speakers"]) if t == s] for s in self.speakers}
        lengths = [a.numel() for a in c["audio"]]
        crop = cfg.crop_frames * self.hop
        self.usable = [i for i, n in enumerate(lengths) if n >= crop]
        if not self.usable:
            raise ValueError(f"no training utterance is as long as crop_frames={cfg.crop_frames} frames "
                             f"({crop / SAMPLE_RATE:.2f} s); lower crop_frames")
        frames = torch.tensor([float(lengths[i]) for i in self.usable])
        self.weights = frames / frames.sum()
        self.ref_len = max(1, int(cfg.ref_seconds * SAMPLE_RATE))
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + ctx.rank)
        self.f0_stats = {}
        for s, rows in self.utts_of.items():
            mean, std = pitch_stats(torch.cat([c["f0"][i] for i in rows]), torch.cat([c["voiced"][i] for i in rows]))
            self.f0_stats[s] = torch.stack([mean, std])
        self.val = _val_set(held, c, self.utts_of, self.mcfg, cfg, self.ref_len) if ctx.rank == 0 else []
        torch.manual_seed(cfg.seed)  # the model's init does not depend on whether the cache existed
        self.model = ConversionModel(self.mcfg)
        if cfg.init_from and not ctx.resuming:
            self._init_from(cfg.init_from)
        self.loss_fn = AudioLoss(AudioLossConfig(**{**PHASE_FREE_LOSS, **cfg.loss}))
        self.speaker_index = {s: k for k, s in enumerate(self.speakers)}
        log.info("conversion: %d training utterances of %d speakers, %d held out; content code %.0f bit/s",
                 len(c["audio"]), len(self.speakers), len(held), self.mcfg.bits_per_second)
        trained: nn.Module = self.model
        if cfg.adversary > 0:
            trained = _WithAdversary(self.model, SpeakerAdversary(self.mcfg.latent_dim, len(self.speakers)))
        return Built(trained, None, OptimizerSpec("adamw", betas=(0.8, 0.99), grad_clip=cfg.grad_clip))

    def _init_from(self, path: str) -> None:
        """Start the model from a conversion weights file (e.g. a shipped model): every tensor whose name and shape
        match is taken, the speaker table is left out (the export makes the run's own); a stage the file lacks
        (a run with more `content_stages`) starts fresh (k-means on its first batch). ValueError when any other
        tensor of the model is missing from the file or shaped otherwise."""
        tensors, model_id, _ = load_weights(path)
        own = self.model.state_dict()
        skip = ("speaker_embeddings", "speaker_f0", *TRAINING_ONLY_BUFFERS)
        taken = {k: v.float() for k, v in tensors.items()
                 if k in own and own[k].shape == v.shape and not k.endswith(skip)}
        fresh = sorted(k for k in own if k not in taken and not k.endswith(skip))
        if any(not k.startswith("residual_quantizers.") for k in fresh):
            raise ValueError(f"--init-from {path} ({model_id}) does not match this run's model: "
                             f"{[k for k in fresh if not k.startswith('residual_quantizers.')][:4]} are missing or "
                             "shaped otherwise; give the model settings of the file (--model) or start from scratch")
        self.model.load_state_dict(taken, strict=False)
        prefixes = ["quantizer.", *(f"residual_quantizers.{i}." for i in range(len(self.model.residual_quantizers)))]
        for prefix, vq in zip(prefixes, self.model.content_quantizers):
            if prefix + "codebook" in taken:  # as loaded; a stage the file lacks stays uninitialised (k-means)
                vq.reset_training_state()
        log.info("conversion: %d tensors start from %s (%s); fresh: %s", len(taken), path, model_id,
                 ", ".join(fresh) or "none")

    def _reference(self, i: int, start: int, stop: int) -> torch.Tensor:
        """A reference crop (float32, at most ref_len samples) for the crop [start, stop) of utterance i."""
        g, c, n = self.gen, self.cache, self.ref_len
        others = [j for j in self.utts_of[c["speakers"][i]] if j != i]
        if others:
            j = others[int(torch.randint(0, len(others), (1,), generator=g))]
            audio = c["audio"][j]
        else:  # one training utterance: the longer part outside the crop
            audio = c["audio"][i]
            before, after = audio[:start], audio[stop:]
            audio = before if before.numel() >= after.numel() else after
            if audio.numel() == 0:
                audio = c["audio"][i]
        at = int(torch.randint(0, max(audio.numel() - n, 0) + 1, (1,), generator=g))
        return _to_float(audio[at:at + n])

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """{"audio" (B, L) float32, "f0" (B, L / 80) Hz, "voiced" (B, L / 80) float, "reference" (B, R) float32
        zero-padded, "reference_lengths" (B,) int64, "positions" (B, L / content_hop) int64, "starts" (B,) int64
        noise keys, "speaker" (B,) int64 row of the crop's speaker in the sorted training speakers}, L = crop
        samples."""
        cfg, g, c = self.config, self.gen, self.cache
        n, hop, sub = cfg.crop_frames, self.hop, self.sub
        picks = torch.multinomial(self.weights, cfg.batch_size, replacement=True, generator=g)
        audio, f0, voiced, refs, starts, speakers = [], [], [], [], [], []
        for k in picks.tolist():
            i = self.usable[k]
            speakers.append(self.speaker_index[c["speakers"][i]])
            start = int(torch.randint(0, c["audio"][i].numel() // hop - n + 1, (1,), generator=g))
            audio.append(_to_float(c["audio"][i][start * hop:(start + n) * hop]))
            starts.append(i * (1 << 22) + start * hop)  # keys the decoder's noise: another stretch per crop
            f0.append(c["f0"][i][start * sub:(start + n) * sub])
            voiced.append(c["voiced"][i][start * sub:(start + n) * sub].float())
            refs.append(self._reference(i, start * hop, (start + n) * hop))
        lengths = torch.tensor([r.numel() for r in refs])
        reference = torch.stack([F.pad(r, (0, int(lengths.max()) - r.numel())) for r in refs])
        nc = n // self.mcfg.content_stride
        u = torch.rand(cfg.batch_size, nc, generator=g)
        shift = torch.where(u < cfg.jitter / 2, -1, torch.where(u < cfg.jitter, 1, 0))
        positions = (torch.arange(nc) + shift).clamp(0, nc - 1)
        return {"audio": torch.stack(audio), "f0": torch.stack(f0), "voiced": torch.stack(voiced),
                "reference": reference, "reference_lengths": lengths, "positions": positions,
                "starts": torch.tensor(starts), "speaker": torch.tensor(speakers)}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x = batch["audio"]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bf16):
            y, q, *adversary = model(x, batch["reference"], batch["f0"], batch["voiced"], batch["reference_lengths"],
                                     batch["positions"], batch["starts"])
        rec, terms = self.loss_fn(x, y.float())
        metrics = {k: v.item() for k, v in terms.items()}
        metrics.update(commit=q.loss.item(), usage=q.usage.item(), perplexity=q.perplexity.item())
        total = rec + q.loss
        if adversary:  # the speaker adversary's logits (B, speakers)
            logits, target = adversary[0].float(), batch["speaker"]
            ce = F.cross_entropy(logits, target)
            metrics.update(adversary_ce=ce.item(), adversary_acc=(logits.argmax(-1) == target).float().mean().item())
            total = total + self.config.adversary * ce
        return total, metrics

    def log_fields(self, model: nn.Module) -> dict:
        return {"restarts": [vq.restarts for vq in self.model.content_quantizers]}

    # ------------------------------------------------------------------------------------------ validation, export
    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict:
        if not self.val:
            return {}
        from vqcodec.metrics.audio import mel_distance  # training/benchmark-only dependency

        m = self.model
        m.eval()
        val_speakers = sorted({v["speaker"] for v in self.val}, key=_speaker_key)
        refs = {s: m.embed_speaker(r[None])[0] for s, r in ((v["speaker"], v["reference"]) for v in self.val)}
        own, swap, codes = 0.0, [], []
        for v in self.val:
            clip, f0, voiced, s = v["audio"], v["f0"][None], v["voiced"][None], v["speaker"]
            idx = m.encode_content(clip[None])
            codes.append(idx[..., 0].reshape(-1))  # stage 1's usage
            y = m.decode(idx, refs[s], f0, voiced)[0]
            own += mel_distance(clip, y, SAMPLE_RATE) / len(self.val)
            if len(val_speakers) > 1:
                other = val_speakers[(val_speakers.index(s) + max(1, len(val_speakers) // 2)) % len(val_speakers)]
                tstats = self.f0_stats[other]
                f2 = retarget_f0(f0, voiced, pitch_stats(f0, voiced), (tstats[0], tstats[1]))
                swap.append(mel_distance(y, m.decode(idx, refs[other], f2, voiced)[0], SAMPLE_RATE))
        counts = torch.bincount(torch.cat(codes), minlength=self.mcfg.num_codes).float()
        p = counts / counts.sum()
        perplexity = float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))
        usage = float((counts > 0).float().mean())
        out = {"mel_own": own, "usage": usage, "perplexity": perplexity, "utterances": len(self.val)}
        if swap:
            out["mel_swap"] = sum(swap) / len(swap)
        log.info("val mel own %.3f, own vs other speaker %s, code usage %.2f, perplexity %.1f", own,
                 f"{out['mel_swap']:.3f}" if swap else "-", usage, perplexity)
        return {"val": out}

    @torch.no_grad()
    def speaker_table(self, model: ConversionModel) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """(ids, embeddings (S, speaker_dim), log2-f0 stats (S, 2)) of the training speakers."""
        cfg, c = self.config, self.cache
        limit = max(1, int(cfg.table_seconds * SAMPLE_RATE))
        embs, stats = [], []
        for s in self.speakers:
            rows = self.utts_of[s]
            if cfg.table_utterances:
                rows = rows[:cfg.table_utterances]
            clips = [_to_float(c["audio"][i][:limit]) for i in rows]
            lengths = torch.tensor([x.numel() for x in clips])
            batch = torch.stack([F.pad(x, (0, int(lengths.max()) - x.numel())) for x in clips])
            embs.append(F.normalize(model.embed_speaker(batch, lengths).mean(0), dim=-1))
            stats.append(self.f0_stats[s])
        return list(self.speakers), torch.stack(embs), torch.stack(stats)

    def export(self, model: nn.Module, out_dir: Path) -> None:
        self.model.eval()
        release = copy.deepcopy(self.model)
        release.set_speakers(*self.speaker_table(release))
        save_conversion_model(out_dir / EXPORT_NAME, release, self.config.model_id or CONVERSION_MODEL_ID)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])


def _cached(path: Path, items: list[tuple[Path, str]], data: Path, rank: int, hop: int, pitch: str | None) -> dict:
    """{"files": [names relative to data], "speakers": [ids], "pitch": method, "audio": [(T,) int16, T a multiple
    of hop], "f0": [(T / 80,) float32 Hz], "voiced": [(T / 80,) bool]} of the training utterances (those shorter
    than a frame left out), computed once per run folder (rank 0); a cache labelled by another method (without
    "pitch": "dio") keeps its audio and is relabelled."""
    def rel(p: Path) -> str:
        try:
            return p.relative_to(data).as_posix()
        except ValueError:
            return str(p)

    key = {"files": [rel(p) for p, _ in items], "speakers_in": [s for _, s in items]}
    if path.is_file():
        cache = torch.load(path, weights_only=True)
        if cache.get("key") == key:
            return labels_as_asked(path, cache, pitch, rank, _to_float)
        log.warning("%s does not match the data; recomputing it", path)
    if rank != 0:
        raise RuntimeError(f"{path} is missing; start the run with one process first")
    t0 = time.perf_counter()
    pitch = pitch or "harvest"
    cache: dict = {"key": key, "pitch": pitch, "files": [], "speakers": [], "audio": [], "f0": [], "voiced": []}
    for n, (p, s) in enumerate(items):
        clip = load_audio(p)
        clip = clip[: clip.numel() // hop * hop]
        if not clip.numel():
            log.warning("%s is shorter than one frame; skipped", p)
            continue
        f0, voiced = pitch_labels(clip, pitch)
        cache["files"].append(rel(p))
        cache["speakers"].append(s)
        cache["audio"].append(_to_int16(clip))
        cache["f0"].append(f0)
        cache["voiced"].append(voiced)
        if (n + 1) % 1000 == 0:
            log.info("pitch-labelled %d of %d utterances", n + 1, len(items))
    if not cache["audio"]:
        raise ValueError("every training utterance is shorter than one frame")
    atomic_write(path, lambda tmp: torch.save(cache, tmp))
    log.info("loaded and pitch-labelled %d training utterances in %.0f s", len(cache["audio"]),
             time.perf_counter() - t0)
    return cache


def _val_set(held: list[tuple[Path, str]], cache: dict, utts_of: dict[str, list[int]], mcfg: ConversionConfig,
             cfg: TrainConversionConfig, ref_len: int) -> list[dict]:
    """Up to `val_utterances` held-out utterances (one per speaker first, by a CRC of the names), their first
    `val_seconds` cut to whole content frames, with pitch labels and, as the speaker's reference, the first
    `ref_seconds` of the speaker's first training utterance."""
    ranked: dict[str, list[Path]] = {}
    for p, s in sorted(held, key=lambda t: (zlib.crc32(f"{HOLDOUT_SALT}-val/{t[0].name}".encode()), t[0].name)):
        ranked.setdefault(s, []).append(p)
    order = sorted(((k, zlib.crc32(s.encode()), s, p) for s, ps in ranked.items() for k, p in enumerate(ps)))
    limit = int(cfg.val_seconds * SAMPLE_RATE) // mcfg.content_hop * mcfg.content_hop
    out = []
    for _, _, s, p in order:
        if len(out) >= cfg.val_utterances:
            break
        if s not in utts_of:
            continue
        clip = load_audio(p)
        clip = clip[: min(limit, clip.numel() // mcfg.content_hop * mcfg.content_hop)]
        if not clip.numel():
            continue
        f0, voiced = pitch_labels(clip, mcfg.pitch)
        reference = _to_float(cache["audio"][utts_of[s][0]][:ref_len])
        out.append({"speaker": s, "file": str(p), "audio": clip, "f0": f0, "voiced": voiced.float(),
                    "reference": reference})
    return out


def train_conversion(cfg: TrainConversionConfig) -> ConversionModel:
    """Run (or with cfg.resume, continue) the run described by `cfg`. Returns the trained `ConversionModel`
    (without the speaker adversary of a run that has one)."""
    task = ConversionTask(cfg)
    TrainingLoop(task).run()
    return task.model
