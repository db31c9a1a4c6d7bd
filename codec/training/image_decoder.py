"""Fine-tuning an image model's decoder on the inputs the codec gives it (issue #20: train as the codec decodes).

`vqcodec train image` shows its decoder one VQ depth per crop, or a whole crop refined to one level. The codec
gives it something else: at qualities 1..vq_top a VQ depth per 8x8 block chosen by rate-distortion, and above it
refinement layers whose last one is rate-distortion optimised (thinned), so that the blocks of one picture sit
at different levels, and a block told "level 1" may hold far fewer non-zero symbols than a rounded residual.

This task freezes the encoder and the codebooks, so every file's bits stay what they are (the priors and the
refinement tables stay valid), and trains the decoder on exactly those inputs. They are made once per photo by
the codec's own encoder policy (`ImageCodec.analyse`, `ImageCodec.refinement_symbols`) at a few qualities and
kept in the run folder (`build_codec_inputs`, one compressed .npz per photo); a share of the crops keeps the
recipe the decoder was trained with (whole VQ depths, whole refinement levels) so that no quality is forgotten.

Shapes: photos (3, H, W) uint8; latent grids (h, w, D) with h = floor(H/8) (only whole blocks are cropped);
training batches (`ImageDecoderTask.batch`): pixels (B, 3, 8Q, 8Q) float32 in [0, 1], decoder inputs (B, D, Q, Q)
float32, depths (B, Q, Q) int64 (what `ImageCodec.render_refined` tells the decoder: the VQ depth, or S +
refinement level) and loss masks (B, 1, 8Q, 8Q) float32, Q = crop / 8 + 2 margin.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from vqcodec.image.data import RandomCrops, load_rgb
from vqcodec.image.decoder_stage import load_image_decoder, save_image_decoder
from vqcodec.image.model import ImageModelConfig, ImageVQVAE
from vqcodec.image.refinement import symbol_levels
from vqcodec.quantization.scalar_refinement import refinement_values, residual_units, symbols_from_units
from vqcodec.training.image_model import EXPORT_NAME, export_image_model, psnr, split_holdout
from vqcodec.training.loop import Built, LoopConfig, OptimizerSpec, RunContext, Task, TrainingLoop, module_device

__all__ = ["TrainImageDecoderConfig", "ImageDecoderTask", "PhotoInputs", "build_codec_inputs", "train_image_decoder",
           "CACHE_DIR", "DECODER_EXPORT_NAME"]

log = logging.getLogger(__name__)
DECODER_EXPORT_NAME = "image_decoder.safetensors"
"""The run's decoder-stage component (`vqcodec.image.decoder_stage`), beside the whole model's EXPORT_NAME."""
CACHE_DIR = "codec_inputs"
"""Folder of the run holding each photo's codec inputs (`build_codec_inputs`)."""
CACHE_VERSION = 1
LOG_LOSS_FLOOR = 1e-6
"""Added to a crop's mean squared error before its log (a flat crop decoded perfectly has none)."""
KIND_MSE_DECAY = 0.99
"""Decay per step of loss "kind"'s running mean of each kind's MSE."""
EDGE_VAL_KINDS = ("q30", "level5")
"""Kinds of decoder input whose validation also reports the photos' edges (`ImageDecoderTask._edge_psnr`)."""
EDGE_VAL_PIXELS = 8
VAL_MARGIN = 4
"""Latents of context around a validation window (a cut latent grid decodes worse near the cut: with 4, the
window's PSNR is within 0.01 dB of the whole photo's decode there)."""


@dataclass
class PhotoInputs:
    """One photo's decoder inputs as the codec makes them.

    latents: (h, w, D) float16, the encoder's latents (the analysis' own, float32 rounded to float16).
    paths: (h, w, S, S) int16, row d-1 the best d-stage path of each block (ABSENT -1 padded).
    vq_depths: quality -> (h, w) uint8, each block's VQ depth at that quality (no refinement layer).
    refined: quality -> ((h, w, D) int8 the refinement in units of the last layer's step, its layer count), over
        the full-depth VQ reconstruction.
    refined_levels: quality -> (h, w) uint8, each block's refinement level (0: none).
    """

    latents: torch.Tensor
    paths: torch.Tensor
    vq_depths: dict[int, torch.Tensor]
    refined: dict[int, tuple[torch.Tensor, int]]
    refined_levels: dict[int, torch.Tensor]

    def save(self, path: Path) -> None:
        arrays = {"version": np.array(CACHE_VERSION), "latents": self.latents.numpy(), "paths": self.paths.numpy()}
        for q, d in self.vq_depths.items():
            arrays[f"vq_{q}"] = d.numpy()
        for q, (units, layers) in self.refined.items():
            arrays[f"refined_{q}_{layers}"] = units.numpy()
            arrays[f"levels_{q}"] = self.refined_levels[q].numpy()
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)  # atomic: a killed build leaves no half-written photo

    @classmethod
    def load(cls, path: Path) -> "PhotoInputs":
        with np.load(path) as f:
            if int(f["version"]) != CACHE_VERSION:
                raise ValueError(f"{path} is a codec-input cache of another version; delete {path.parent}")
            vq, refined, levels = {}, {}, {}
            for key in f.files:
                parts = key.split("_")
                if parts[0] == "vq":
                    vq[int(parts[1])] = torch.from_numpy(f[key])
                elif parts[0] == "refined":
                    refined[int(parts[1])] = (torch.from_numpy(f[key]), int(parts[2]))
                elif parts[0] == "levels":
                    levels[int(parts[1])] = torch.from_numpy(f[key])
            return cls(torch.from_numpy(f["latents"]), torch.from_numpy(f["paths"]), vq, refined, levels)


def _codec_inputs(codec, rgb: torch.Tensor, vq_qualities: tuple[int, ...],
                  refined_qualities: tuple[int, ...]) -> PhotoInputs:
    """One photo (3, H, W) uint8 through the codec's encoder policy (default effort) -> its PhotoInputs."""
    whole = rgb[:, : rgb.shape[1] // 8 * 8, : rgb.shape[2] // 8 * 8]
    cand = codec.analyse(whole.permute(1, 2, 0).contiguous().numpy())
    h, w = cand.height, cand.width
    s = codec.vq_stages
    vq = {}
    for q in vq_qualities:
        indices, symbols = codec.refinement_symbols(cand, q)
        if symbols is not None:
            raise ValueError(f"quality {q} has refinement layers; give it as a refined quality")
        vq[q] = (indices >= 0).sum(0).to(torch.uint8)
    refined, levels = {}, {}
    for q in refined_qualities:
        indices, symbols = codec.refinement_symbols(cand, q)
        if symbols is None or int((indices >= 0).sum(0).min()) != s:
            raise ValueError(f"quality {q} is not a refined quality over all {s} VQ stages")
        layers = symbols.shape[0]
        units = torch.zeros(symbols.shape[1:], dtype=torch.int32)
        for j in range(layers):
            units += symbols[j].to(torch.int32) << (layers - 1 - j)
        if int(units.abs().max()) > 127:
            raise ValueError(f"quality {q}: the refinement does not fit int8 units of its last step")
        refined[q] = (units.to(torch.int8), layers)
        levels[q] = symbol_levels(symbols).to(torch.uint8)
    return PhotoInputs(cand.latents.view(h, w, -1).to(torch.float16), cand.paths[:, :s, :s].view(h, w, s, s)
                       .to(torch.int16), vq, refined, levels)


def build_codec_inputs(codec, files: list[Path], folder: Path, vq_qualities: tuple[int, ...],
                       refined_qualities: tuple[int, ...]) -> list[PhotoInputs]:
    """Each photo's PhotoInputs, made by `codec` (an ImageCodec with a refinement model) where `folder` lacks them
    (one FILE_STEM.npz each, written atomically: an interrupted build continues) and loaded otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(files):
        path = folder / f"{Path(f).stem}.npz"
        if not path.exists():
            with torch.no_grad():
                _codec_inputs(codec, load_rgb(f), vq_qualities, refined_qualities).save(path)
            if (i + 1) % 20 == 0:
                log.info("codec inputs of %d of %d photos made", i + 1, len(files))
        out.append(PhotoInputs.load(path))
    return out


@dataclass(kw_only=True)
class TrainImageDecoderConfig(LoopConfig):
    """Loop settings (see LoopConfig) plus the decoder fine-tuning's.

    model / prior / refinement: the components the codec inputs are made with (None: the installed defaults);
    the decoder starts from `model`'s. dec_blocks: grow the decoder's residual blocks at 1/8 resolution to this
    many (the new ones start near identity; None: as `model`). codec_prob: share of the crops decoded from the
    codec's inputs at one of the cached qualities (drawn evenly); the rest keep the image recipe: half refined
    whole to a level drawn evenly (told each block's level as the codec computes it), half VQ (depth 1 with
    probability vq1_prob, else all stages). margin: latents of context around each crop, decoded but left out of
    the loss (see `ImageDecoderTask.batch`). border_prob: per axis, the share of crops put against the photo's
    edge (either side, evenly), whose border a uniform draw rarely reaches. init_decoder: a decoder-stage file of
    `model` (`vqcodec.image.decoder_stage`, e.g. a shipped one) the decoder starts from instead of `model`'s own.
    loss: "mse" (the batch's mean squared error: crops with large errors,
    the coarse qualities, dominate) or "log" (the mean of the crops' log MSE, i.e. of their PSNR, which is how
    qualities are compared: every crop counts by its relative error, fine refinement levels included)."""

    data: str
    out: str
    steps: int = 200000
    lr: float = 1e-4
    batch_size: int = 8
    crop: int = 128
    tournament: int = 2
    holdout: int = 12
    val_crop: int = 384
    bf16: bool = True
    channels_last: bool = True
    model: str | None = None
    prior: str | None = None
    refinement: str | None = None
    model_id: str = "image-decoder-pilot"
    dec_blocks: int | None = None
    codec_prob: float = 0.5
    vq1_prob: float = 0.25
    vq_qualities: tuple[int, ...] = (6, 14, 20)
    refined_qualities: tuple[int, ...] = (22, 26, 30, 34, 36, 40, 46)
    linear_lr_scale: float = 0.1
    margin: int = 2
    loss: str = "mse"
    kind_power: float = 1.0
    border_prob: float = 0.0
    init_decoder: str | None = None


class ImageDecoderTask(Task):
    """Decoder fine-tuning on codec inputs (module docstring): MSE of the decoded crop."""

    name = "image-decoder"
    run_defining = ("batch_size", "crop", "tournament", "holdout", "model", "dec_blocks", "codec_prob", "vq1_prob",
                    "vq_qualities", "refined_qualities", "channels_last", "margin", "loss", "kind_power", "border_prob",
                    "init_decoder")
    progress_keys = ("psnr_train_mixed",)
    devices = ("cpu", "cuda")
    config: TrainImageDecoderConfig

    def build(self, ctx: RunContext) -> Built:
        from vqcodec.image.codec import ImageCodec
        from vqcodec.registry import default_registry

        cfg = self.config
        if not all(0 <= v <= 1 for v in (cfg.codec_prob, cfg.vq1_prob, cfg.border_prob)):
            raise ValueError("codec_prob, vq1_prob and border_prob are probabilities (0..1)")
        defaults = default_registry().defaults("image")
        paths = {role: Path(getattr(cfg, role) or defaults[key].path)
                 for role, key in (("model", "vqvae"), ("prior", "prior"), ("refinement", "refinement"))}
        codec = ImageCodec(paths["model"], paths["prior"], refinement_path=paths["refinement"], decoder_path=None)
        self.base_path, self.base_model_id = paths["model"], codec.model_id
        self.refinement = codec.refinement
        assert self.refinement is not None
        train_files, held_files = split_holdout(cfg.data, cfg.holdout)
        if not held_files:
            raise ValueError("validation needs held-out photos: give --holdout N > 0")
        files = train_files + held_files
        log.info("codec inputs of %d photos (%d held out) in %s", len(files), len(held_files), ctx.out_dir / CACHE_DIR)
        inputs = build_codec_inputs(codec, files, ctx.out_dir / CACHE_DIR, cfg.vq_qualities, cfg.refined_qualities)
        photos = [load_rgb(f) for f in files]
        n = len(train_files)
        q = cfg.crop // 8 + 2 * cfg.margin
        self.train = [(p, i) for p, i in zip(photos[:n], inputs[:n]) if min(i.latents.shape[:2]) >= q]
        self.held = list(zip(photos[n:], inputs[n:]))
        if len(self.train) < n:
            log.warning("%d training photos are smaller than a crop with its margins (%d px): left out",
                        n - len(self.train), 8 * q)
        if not self.train:
            raise ValueError(f"no training photo holds a {8 * q} px crop with its margins: lower --crop")
        areas = torch.tensor([float(p.shape[1] * p.shape[2]) for p, _ in self.train])
        self.weights = areas / areas.sum()
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + ctx.rank)

        released = codec.model
        grown = {} if cfg.dec_blocks is None else {"dec_blocks": cfg.dec_blocks}
        model = ImageVQVAE(ImageModelConfig(**{**released.cfg.to_dict(), **grown}))
        if model.cfg.dec_blocks < released.cfg.dec_blocks:
            raise ValueError(f"dec_blocks can only grow ({released.cfg.dec_blocks} in {paths['model']})")
        missing, unexpected = model.load_state_dict(released.state_dict(), strict=False)
        if unexpected or any(not k.startswith("decoder.blocks.") for k in missing):
            raise ValueError(f"cannot start from {paths['model']}: missing {missing}, unexpected {unexpected}")
        if cfg.init_decoder is not None:  # a decoder-stage file of this model (e.g. a shipped one) to go on from
            decoder, _ = load_image_decoder(cfg.init_decoder, paths["model"], released.cfg)
            if len(decoder.blocks) != len(model.decoder.blocks):
                raise ValueError(f"{cfg.init_decoder} has {len(decoder.blocks)} decoder blocks; give --dec-blocks "
                                 f"{len(decoder.blocks)}")
            model.decoder.load_state_dict(decoder.state_dict())
        if not model.cfg.depth_input or not model.cfg.refine_levels:
            raise ValueError("the decoder must be told depths and refinement levels (a model with refine_levels)")
        for p in list(model.encoder.parameters()) + list(model.quantizer.parameters()):
            p.requires_grad_(False)
        if cfg.channels_last:
            model.decoder.to(memory_format=torch.channels_last)
        self.model = model
        self.cpu_quantizer = released.quantizer  # model's frozen codebooks, kept on the CPU for batch()
        linear = {id(p) for p in model.decoder.linear.parameters()} if model.decoder.linear is not None else set()
        trainable = list(model.decoder.parameters())
        groups = [{"params": [p for p in trainable if id(p) not in linear], "lr_scale": 1.0},
                  {"params": [p for p in trainable if id(p) in linear], "lr_scale": cfg.linear_lr_scale}]
        self.codec_kinds = [f"q{q}" for q in cfg.vq_qualities + cfg.refined_qualities]  # the cached qualities
        self.kinds = self.codec_kinds + [f"level{j}" for j in range(1, model.cfg.refine_levels + 1)] + [
            "vq1", f"vq{self.stages}"]
        self.kind_mse = torch.full((len(self.kinds),), float("nan"), dtype=torch.float64)  # loss "kind"'s means
        return Built(model, groups, OptimizerSpec("adam", betas=(0.9, 0.99)))

    @property
    def stages(self) -> int:
        return self.refinement.base_stages  # type: ignore[union-attr]

    def train_mode(self, model: nn.Module) -> None:
        model.eval()
        model.decoder.train()

    # -- decoder inputs --------------------------------------------------------------------------------------
    def _decoder_input(self, inputs: PhotoInputs, kind: str, y: int, x: int, ph: int, pw: int | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder input (D, ph, pw) float32 and depth (ph, pw) int64 of `kind` for the ph x pw (default
        square) latent window at (y, x) of a photo."""
        S, cfg = self.stages, self.model.cfg
        pw = ph if pw is None else pw
        win = (slice(y, y + ph), slice(x, x + pw))
        paths = inputs.paths[win].to(torch.int64)  # (ph, pw, S, S)
        if kind.startswith("vq"):
            depth = torch.full((ph, pw), int(kind[2:]), dtype=torch.int64)
        elif kind.startswith("q") and int(kind[1:]) in inputs.vq_depths:
            depth = inputs.vq_depths[int(kind[1:])][win].to(torch.int64)
        else:
            depth = torch.full((ph, pw), S, dtype=torch.int64)
        chosen = paths.gather(2, (depth - 1)[..., None, None].expand(ph, pw, 1, S))[:, :, 0]  # (ph, pw, S)
        base = self.cpu_quantizer.decode(chosen.reshape(-1, S)).view(ph, pw, -1)
        if kind.startswith("q") and int(kind[1:]) in inputs.refined:
            q = int(kind[1:])
            units, layers = inputs.refined[q]
            step = self.refinement.steps(layers)[-1]  # type: ignore[union-attr]
            z = base + units[win].float() * step
            level = inputs.refined_levels[q][win].to(torch.int64)
            depth = torch.where(level > 0, cfg.num_stages + level, depth)
        elif kind.startswith("level"):
            j = int(kind[5:])
            rm = self.refinement
            d = base.shape[-1]
            residual = residual_units(inputs.latents[win].float().reshape(-1, d), base.reshape(-1, d))
            symbols = symbols_from_units(residual, rm.first_shift, j, rm.max_first)  # (j, ph*pw, D)
            z = base + refinement_values(symbols, rm.first_shift).view(ph, pw, -1)
            level = symbol_levels(symbols).view(ph, pw)
            depth = torch.where(level > 0, cfg.num_stages + level, depth)
        else:
            z = base
        return z.permute(2, 0, 1), depth

    def _draw_kind(self) -> str:
        cfg = self.config
        u = float(torch.rand(1, generator=self.gen))
        codec = self.codec_kinds
        if u < cfg.codec_prob and codec:
            return codec[int(torch.randint(len(codec), (1,), generator=self.gen))]
        if float(torch.rand(1, generator=self.gen)) < 0.5:
            return f"level{int(torch.randint(1, self.model.cfg.refine_levels + 1, (1,), generator=self.gen))}"
        return "vq1" if float(torch.rand(1, generator=self.gen)) < cfg.vq1_prob else f"vq{self.stages}"

    def _window(self, h: int, w: int, y: int, x: int, p: int, margin: int) -> tuple[int, int, int, int]:
        """The latent window (top, left, height, width) around the p x p crop at (y, x) of an h x w grid: `margin`
        positions of context on each side, clipped to the grid."""
        top, left = max(0, y - margin), max(0, x - margin)
        return top, left, min(h, y + p + margin) - top, min(w, x + p + margin) - left

    @staticmethod
    def _edge(last: int, r: float) -> int | None:
        """A window position snapped to an edge of an axis whose positions run 0..last: for a uniform draw r over
        [0, 1 / border_prob), 0 when r < 0.5, `last` when 0.5 <= r < 1, None (draw freely) otherwise."""
        if r >= 1.0:
            return None
        return 0 if r < 0.5 else max(0, last)

    def batch(self, step: int) -> tuple[torch.Tensor, ...]:
        """Pixels (B, 3, 8Q, 8Q) float32, decoder inputs (B, D, Q, Q) float32, depths (B, Q, Q) int64, the loss
        mask (B, 1, 8Q, 8Q) float32 and each crop's kind of input (B,) int64 (an index of `kinds`), Q = crop/8 +
        2 margin: each crop comes with `margin` latents of context on
        every side (the photo's latents were computed on the whole photo, and a cut latent grid decodes worse
        near its cut: the loss leaves that band out, except where it is the photo's own border)."""
        cfg = self.config
        p, m = cfg.crop // 8, cfg.margin
        q = p + 2 * m
        xs, zs, ds, masks, kinds = [], [], [], [], []
        for _ in range(cfg.batch_size):
            i = int(torch.multinomial(self.weights, 1, generator=self.gen))
            photo, inputs = self.train[i]
            h, w = inputs.latents.shape[:2]
            best, best_detail = (0, 0), -1.0
            # a share of the windows is put against the photo's edges (border_prob per axis, either side): the
            # photo's own border, where the decoder net's padding meets real pixels, is otherwise rarely drawn
            snap_y, snap_x = None, None
            if cfg.border_prob > 0:
                r = torch.rand(2, generator=self.gen) / cfg.border_prob
                snap_y, snap_x = self._edge(h - q, float(r[0])), self._edge(w - q, float(r[1]))
            for _ in range(cfg.tournament):  # the window's top-left corner, the photo's border included
                y = int(torch.randint(0, max(1, h - q + 1), (1,), generator=self.gen)) if snap_y is None else snap_y
                x = int(torch.randint(0, max(1, w - q + 1), (1,), generator=self.gen)) if snap_x is None else snap_x
                detail = RandomCrops.detail(photo[:, 8 * (y + m) : 8 * (y + m + p), 8 * (x + m) : 8 * (x + m + p)])
                if detail > best_detail:
                    best, best_detail = (y, x), detail
            y, x = best
            kind = self._draw_kind()
            z, depth = self._decoder_input(inputs, kind, y, x, q)
            kinds.append(self.kinds.index(kind))
            mask = torch.zeros(1, 8 * q, 8 * q)
            r0, c0 = (0 if y == 0 else 8 * m), (0 if x == 0 else 8 * m)
            r1, c1 = (8 * q if y + q == h else 8 * (m + p)), (8 * q if x + q == w else 8 * (m + p))
            mask[:, r0:r1, c0:c1] = 1.0
            xs.append(photo[:, 8 * y : 8 * (y + q), 8 * x : 8 * (x + q)].float() / 255.0)
            zs.append(z)
            ds.append(depth)
            masks.append(mask)
        return torch.stack(xs), torch.stack(zs), torch.stack(ds), torch.stack(masks), torch.tensor(kinds)

    def loss(self, model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        x, z, depth, mask, kinds = batch
        if self.config.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        with torch.autocast(module_device(model).type, dtype=torch.bfloat16, enabled=self.config.bf16):
            x_hat = model.decoder(z, depth)
        per_crop = ((x_hat.float() - x) ** 2 * mask).sum((1, 2, 3)) / (mask.sum((1, 2, 3)) * x.shape[1])  # (B,)
        mse = per_crop.mean()
        if self.config.loss == "log":  # the mean of the crops' PSNR: each crop's error relative to its own
            loss = 10 / math.log(10) * torch.log(per_crop + LOG_LOSS_FLOOR).mean()  # -dB
        elif self.config.loss == "kind":  # each kind's MSE relative to its running mean: the kinds' PSNRs
            seen = per_crop.detach()
            for k in kinds.unique().tolist():
                m = float(seen[kinds == k].mean())
                old = float(self.kind_mse[k])
                self.kind_mse[k] = m if math.isnan(old) else KIND_MSE_DECAY * old + (1 - KIND_MSE_DECAY) * m
            scale = self.kind_mse.to(per_crop.device)[kinds].clamp(min=LOG_LOSS_FLOOR) ** self.config.kind_power
            loss = (per_crop / scale.to(per_crop.dtype)).mean()
        else:
            loss = mse
        return loss, {"mse": mse.item(), "psnr_train_mixed": 10 * math.log10(1 / max(mse.item(), 1e-10))}

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict:
        """Mean PSNR (dB) of the held-out photos' centres (val_crop, whole blocks, decoded with VAL_MARGIN latents
        of context: within 0.01 dB of decoding the whole photo) per kind of decoder input: the codec's at each
        cached quality (its bits do not change with the decoder), whole refinement levels and whole VQ depths;
        codec_mean: the mean over the cached qualities."""
        cfg = self.config
        model.eval()
        device = module_device(model)
        out = {}
        for kind in self.kinds:
            total = 0.0
            for photo, inputs in self.held:
                h, w = inputs.latents.shape[:2]
                p = min(cfg.val_crop // 8, h, w)
                y, x = (h - p) // 2, (w - p) // 2
                top, left, wh, ww = self._window(h, w, y, x, p, VAL_MARGIN)
                z, depth = self._decoder_input(inputs, kind, top, left, wh, ww)
                x_hat = model.decoder(z[None].to(device), depth[None].to(device)).clamp(0, 1).cpu()
                dy, dx = 8 * (y - top), 8 * (x - left)
                x_hat = x_hat[:, :, dy : dy + 8 * p, dx : dx + 8 * p]
                total += psnr(x_hat, photo[None, :, 8 * y : 8 * (y + p), 8 * x : 8 * (x + p)].float() / 255.0)
            out[kind] = total / len(self.held)
        codec = [out[k] for k in self.codec_kinds]
        out["codec_mean"] = sum(codec) / max(1, len(codec))
        for kind in (k for k in EDGE_VAL_KINDS if k in self.kinds):
            out[f"edge_{kind}"] = self._edge_psnr(model, kind)
        log.info("val psnr %s", {k: round(v, 3) for k, v in out.items()})
        return {"val": out}

    @torch.no_grad()
    def _edge_psnr(self, model: nn.Module, kind: str) -> float:
        """Mean PSNR (dB) over the held-out photos of their outer EDGE_VAL_PIXELS-wide band along the top and left
        edges of the top-left corner window and the bottom and right edges of the bottom-right one (val_crop
        each, decoded with their context inside the photo): where the decoder net's padding meets the picture."""
        cfg, device = self.config, module_device(model)
        e, total = EDGE_VAL_PIXELS, 0.0
        for photo, inputs in self.held:
            h, w = inputs.latents.shape[:2]
            p = min(cfg.val_crop // 8, h, w)
            errors = []
            for y, x in ((0, 0), (h - p, w - p)):
                top, left, wh, ww = self._window(h, w, y, x, p, VAL_MARGIN)
                z, depth = self._decoder_input(inputs, kind, top, left, wh, ww)
                x_hat = model.decoder(z[None].to(device), depth[None].to(device)).clamp(0, 1).cpu()[0]
                dy, dx = 8 * (y - top), 8 * (x - left)
                x_hat = x_hat[:, dy : dy + 8 * p, dx : dx + 8 * p]
                ref = photo[:, 8 * y : 8 * (y + p), 8 * x : 8 * (x + p)].float() / 255.0
                band = torch.zeros(8 * p, 8 * p, dtype=torch.bool)
                if y == 0:
                    band[:e], band[:, :e] = True, True
                else:
                    band[-e:], band[:, -e:] = True, True
                errors.append(((x_hat - ref) ** 2)[:, band].flatten())
            mse = float(torch.cat(errors).mean())
            total += 10 * math.log10(1.0 / max(mse, 1e-12))
        return total / len(self.held)

    def export(self, model: nn.Module, out_dir: Path) -> None:
        """The whole model (EXPORT_NAME, float32) and the decoder-stage component (DECODER_EXPORT_NAME, float16:
        what a release ships and what `ImageCodec(decoder_path=...)` renders with)."""
        export_image_model(model, out_dir / EXPORT_NAME, self.config.model_id)
        save_image_decoder(out_dir / DECODER_EXPORT_NAME, model.decoder, model.cfg, self.config.model_id,
                           self.base_path, self.base_model_id)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "kind_mse": self.kind_mse.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        if "kind_mse" in state:
            self.kind_mse = state["kind_mse"].clone()


def train_image_decoder(cfg: TrainImageDecoderConfig) -> ImageVQVAE:
    """Run (or with cfg.resume, continue) the decoder fine-tuning described by `cfg`. Returns the model."""
    return TrainingLoop(ImageDecoderTask(cfg)).run().model
