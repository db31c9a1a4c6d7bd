"""`vqcodec train ...`: training commands (image and audio autoencoders, their priors, the speaker decoder).

Every command shares the loop's flags (`loop_options`): --out, --steps, --stop-at-step, --max-minutes,
--resume, --threads, --lr, --min-lr-fraction, --warmup-steps, --checkpoint-every (seconds), --log-every,
--val-every, --seed, --progress/--no-progress, --device. They map one to one onto `LoopConfig` fields.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import click

__all__ = ["train", "loop_options"]

LOOP_FLAGS = ("out", "steps", "stop_at_step", "max_minutes", "resume", "threads", "lr", "min_lr_fraction",
              "warmup_steps", "schedule", "cooldown_steps", "weight_ema", "checkpoint_every", "log_every", "val_every",
              "seed", "progress", "device")


def _device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--device's check: a device this process can train on (`vqcodec.training.loop.resolve_device`), else a
    usage error saying what to give instead. Returns the name as given. The default (cpu) imports no torch."""
    if value == "cpu":
        return value
    from vqcodec.training.loop import resolve_device

    try:
        resolve_device(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None
    return value


def loop_options(*, steps: int, lr: float, lr_help: str = "") -> Callable:
    """Decorator adding the training-loop flags (defaults: `steps`, `lr`; the rest as in LoopConfig)."""
    options = [
        click.option("--out", required=True, type=click.Path(file_okay=False),
                     help="Run folder: checkpoint.pt, log.jsonl, exported weights."),
        click.option("--steps", default=steps, show_default=True, type=click.IntRange(min=1),
                     help="Optimizer steps of the whole run; the learning-rate schedule ends here."),
        click.option("--stop-at-step", type=click.IntRange(min=1), default=None,
                     help="Stop at this step with a checkpoint and exported weights; the schedule still follows "
                          "--steps, so --resume continues the same run."),
        click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Stop (with a checkpoint) after this many minutes; continue later with --resume."),
        click.option("--resume", is_flag=True,
                     help="Continue the run in --out from its checkpoint; it keeps the run's --seed, --steps, "
                          "--lr, --warmup-steps, --min-lr-fraction and sampling settings."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="torch threads (default: torch's choice)."),
        click.option("--lr", default=lr, show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Peak learning rate (linear warm-up, then cosine decay to --min-lr-fraction x lr)."
                          + lr_help),
        click.option("--min-lr-fraction", default=0.05, show_default=True, type=click.FloatRange(0, 1),
                     help="Learning rate at the end of the cosine decay, as a fraction of --lr."),
        click.option("--warmup-steps", default=200, show_default=True, type=click.IntRange(min=0),
                     help="Steps of linear learning-rate warm-up."),
        click.option("--schedule", type=click.Choice(["cosine", "constant"]), default="cosine", show_default=True,
                     help="cosine: decay to --min-lr-fraction at --steps. constant: --lr until the last "
                          "--cooldown-steps, which fall linearly; such a run can be resumed with a larger --steps "
                          "(extended), or copied and resumed with --steps STEP+N --cooldown-steps N (a cooldown branch)."),
        click.option("--cooldown-steps", default=0, show_default=True, type=click.IntRange(min=0),
                     help="With --schedule constant: length of the final linear decay."),
        click.option("--weight-ema", default=0.0, show_default=True, type=click.FloatRange(0, 1, max_open=True),
                     help="Decay per step of an average of the weights, validated and exported instead of the "
                          "live weights (e.g. 0.999; 0: none)."),
        click.option("--checkpoint-every", default=180.0, show_default=True, type=click.FloatRange(min=0),
                     help="Seconds between checkpoints (one is also written when the run ends or stops)."),
        click.option("--log-every", default=25, show_default=True, type=click.IntRange(min=1),
                     help="Steps per line of OUT/log.jsonl (losses averaged over the steps)."),
        click.option("--val-every", default=500, show_default=True, type=click.IntRange(min=1),
                     help="Steps between validations."),
        click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
                     help="Seed of the initialisation and of the data sampling."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bar on stderr  [default: when stderr is a terminal]."),
        click.option("--device", default="cpu", show_default=True, callback=_device,
                     help="Where the model trains: cpu, cuda or cuda:N (the image trainers; batches are drawn on the "
                          "CPU and moved there). Not a run setting: a run resumes on any device."),
    ]

    def apply(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


def _loop_settings(kwargs: dict) -> dict:
    """Pop the loop flags out of a command's kwargs; usage error when they contradict each other."""
    loop = {k: kwargs.pop(k) for k in LOOP_FLAGS}
    if loop["stop_at_step"] is not None and loop["stop_at_step"] > loop["steps"]:
        raise click.BadParameter(f"{loop['stop_at_step']} is past --steps {loop['steps']}; the run ends there anyway",
                                 param_hint="--stop-at-step")
    return loop


def _deprecated(old: str, new: str) -> None:
    click.echo(f"vqcodec: warning: {old} is deprecated, use {new}", err=True)


@click.group()
def train() -> None:
    """Train the models (the release weights were made with these commands; see codec/image/MODEL_CARD.md)."""


@train.command("image")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of training images.")
@loop_options(steps=10000, lr=2e-4, lr_help=" 4e-4 destabilised the PCA-initialised model.")
@click.option("--val-data", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of validation images (e.g. Kodak), evaluated every --val-every steps.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--crop", default=128, show_default=True, type=click.IntRange(min=8),
              help="Training crop size in pixels.")
@click.option("--decoder-only", is_flag=True, help="Freeze encoder and codebooks; fine-tune the decoder only.")
@click.option("--commitment-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of the commitment loss that pulls the encoder's latents to their codes (default 0.25, "
                   "as the paper; 0: only the reconstruction moves the encoder).")
@click.option("--freeze-codebooks", is_flag=True,
              help="Train encoder and decoder through the codebooks as they are (no EMA, no restarts): the code "
                   "alphabet, and so a prior's and refinement tables' meaning, stays.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from released weights (e.g. codec/weights/image_vqvae.safetensors) instead of scratch.")
@click.option("--no-bf16", is_flag=True, help="Train in float32 instead of bfloat16 autocast.")
@click.option("--ema-decay", default=0.99, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Decay per step of the EMA codebook updates.")
@click.option("--restart-after", default=50, show_default=True, type=click.IntRange(min=0),
              help="Re-seed a code left unused for this many steps (0: never).")
@click.option("--tournament", default=1, show_default=True, type=click.IntRange(min=1),
              help="Draw this many random crops per batch entry and train on the most detailed one.")
@click.option("--depth-mode", type=click.Choice(["crop", "block", "rd"]), default="crop", show_default=True,
              help="Stages each latent is trained with: one count per crop, one per 8x8 block, or (rd) a depth per "
                   "block chosen as the encoder chooses it at a random quality.")
@click.option("--holdout", default=0, show_default=True, type=click.IntRange(min=0),
              help="Keep this many images of --data out of training and validate on them (without --val-data).")
@click.option("--val-crop", default=384, show_default=True, type=click.IntRange(min=0),
              help="Validate on the centre VAL_CROP x VAL_CROP of each image (0: whole images).")
@click.option("--stages", "num_stages", default=None, type=click.IntRange(min=1, max=64),
              help="Residual-VQ stages of a new model (default 8); with --init-from, stages beyond the "
                   "released model's start from k-means.")
@click.option("--depth-input", is_flag=True, help="Tell the decoder each block's depth (a new model option).")
@click.option("--latent-dim", default=None, type=click.IntRange(min=1, max=192),
              help="Latent dimensions per 8x8 block of a new model (default 64); with --init-from a wider latent "
                   "starts from the released model plus further block-PCA components.")
@click.option("--model-id", default=None, help="Id the exported weights carry (default: the v3 model's).")
@click.option("--channels-last", is_flag=True, help="channels_last memory format (faster with bf16 on CPUs).")
@click.option("--encoder-lr-scale", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Learning rate of the encoder's conv net relative to --lr (0: the encoder is frozen).")
@click.option("--commitment", type=click.Choice(["full", "active"]), default="full", show_default=True,
              help="Commit the encoder to the sum of all stages, or to each crop's active stages (keeps the latents "
                   "codable by the first stages).")
@click.option("--refine-prob", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Crops whose decoder input is the (detached) latent plus uniform noise: training for scalar "
                   "refinement layers.")
@click.option("--refine-steps", default="0.03,0.5", show_default=True,
              help="Range of the refinement noise's width (log-uniform), as MIN,MAX latent units.")
@click.option("--refine-levels", default=None, type=click.IntRange(min=1, max=10),
              help="With --refine-prob: refine crops by rounding the residual after 2 stages to one of this many "
                   "halving steps (from 0.5 latent units) and tell the decoder the level (a new model option; "
                   "implies --depth-input; --refine-steps is then unused).")
@click.option("--refine-level-weights", default=None,
              help="With --refine-levels: how often each level is drawn, as W1,W2,... (default: evenly).")
@click.option("--checkpoint-minutes", type=click.FloatRange(min=0), default=None, hidden=True,
              help="Deprecated: --checkpoint-every SECONDS.")
def train_image_cmd(data, val_data, batch_size, crop, decoder_only, commitment_weight, freeze_codebooks, init_from,
                    no_bf16, ema_decay, restart_after, tournament, depth_mode, holdout, val_crop, num_stages, depth_input, latent_dim, model_id, channels_last,
                    encoder_lr_scale, commitment, refine_prob, refine_steps, refine_levels, refine_level_weights,
                    checkpoint_minutes,
                    **kwargs) -> None:
    """Train the image VQ-VAE on random crops of the images in --data.

    Runs under `torchrun --nproc_per_node N` with DistributedDataParallel as well (one crop stream per process).
    """
    from vqcodec.training.image_model import TrainImageConfig, train_image

    loop = _loop_settings(kwargs)
    if checkpoint_minutes is not None:
        _deprecated("--checkpoint-minutes", "--checkpoint-every SECONDS")
        loop["checkpoint_every"] = 60 * checkpoint_minutes
    model = {**({"num_stages": num_stages} if num_stages else {}), **({"depth_input": True} if depth_input else {}),
             **({"latent_dim": latent_dim} if latent_dim else {}),
             **({"refine_levels": refine_levels, "depth_input": True} if refine_levels else {})}
    extra = {"model_id": model_id} if model_id else {}
    if refine_level_weights:
        try:
            extra["refine_level_weights"] = tuple(float(v) for v in refine_level_weights.split(","))
        except ValueError:
            raise click.BadParameter("give numbers separated by commas, e.g. 3,2,1,1,1",
                                     param_hint="--refine-level-weights") from None
    train_image(TrainImageConfig(
        **loop, data=data, val_data=val_data, batch_size=batch_size, crop=crop, decoder_only=decoder_only,
        freeze_codebooks=freeze_codebooks, commitment_weight=commitment_weight, init_from=init_from, bf16=not no_bf16, ema_decay=ema_decay, restart_after=restart_after, tournament=tournament,
        depth_mode=depth_mode, holdout=holdout, val_crop=val_crop, model=model, channels_last=channels_last,
        encoder_lr_scale=encoder_lr_scale, commitment=commitment, refine_prob=refine_prob,
        refine_steps=_range_pair(refine_steps, "--refine-steps"), **extra,
    ))


@train.command("image-decoder")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of training photos (the image model's; never the evaluation set).")
@loop_options(steps=200000, lr=1e-4)
@click.option("--holdout", default=12, show_default=True, type=click.IntRange(min=1),
              help="Photos of --data kept out of training and validated on (as `vqcodec train image --holdout`).")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Image model whose decoder is tuned and whose encoder makes the codec inputs [default: installed].")
@click.option("--prior", "prior_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Its integer prior [default: installed].")
@click.option("--refinement", "refinement_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Its refinement model (the quality scale and tables) [default: installed].")
@click.option("--model-id", default="image-decoder-pilot", show_default=True, help="Id the exported weights carry.")
@click.option("--dec-blocks", default=None, type=click.IntRange(min=1, max=32),
              help="Grow the decoder's residual blocks at 1/8 resolution to this many (new ones start near identity).")
@click.option("--codec-prob", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Share of crops decoded from the codec's own inputs (a VQ depth per block, thinned layers).")
@click.option("--vq-qualities", default="6,14,20", show_default=True, help="Cached qualities below the refinement layers.")
@click.option("--refined-qualities", default="22,26,30,34,36,40,46", show_default=True,
              help="Cached qualities with refinement layers.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--crop", default=128, show_default=True, type=click.IntRange(min=8))
@click.option("--tournament", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--margin", default=2, show_default=True, type=click.IntRange(min=0),
              help="Latents of context decoded around each crop and left out of the loss.")
@click.option("--loss", type=click.Choice(["mse", "log", "kind"]), default="mse", show_default=True,
              help="mse: the batch's mean squared error; log: the mean of the crops' PSNR; kind: each kind of input's "
                   "MSE relative to its running mean (every quality counts alike).")
@click.option("--kind-power", default=1.0, show_default=True, type=click.FloatRange(0, 1),
              help="With --loss kind: divide by the kind's mean MSE to this power (0: plain MSE).")
@click.option("--border-prob", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Per axis, the share of crops put against the photo's edge (its border is otherwise rarely seen).")
@click.option("--init-decoder", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start the decoder from this decoder-stage file of --model (e.g. a shipped one, "
                   "codec/weights/image_decoder_v4_c2.safetensors) instead of the model's own decoder.")
def train_image_decoder_cmd(data, holdout, model_path, prior_path, refinement_path, model_id, dec_blocks, codec_prob,
                            vq_qualities, refined_qualities, batch_size, crop, tournament, margin, loss, kind_power,
                            border_prob, init_decoder, **kwargs) -> None:
    """Fine-tune an image model's decoder on the inputs the codec gives it: its encoder, codebooks, and so every
    file's bits, stay fixed (vqcodec.training.image_decoder). The codec inputs are made once, into OUT/codec_inputs."""
    from vqcodec.training.image_decoder import TrainImageDecoderConfig, train_image_decoder

    loop = _loop_settings(kwargs)
    if crop % 8:
        raise click.BadParameter("a multiple of 8 (whole blocks)", param_hint="--crop")

    def qualities(text: str, hint: str) -> tuple[int, ...]:
        try:
            return tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter("give qualities separated by commas, e.g. 22,30", param_hint=hint) from None

    train_image_decoder(TrainImageDecoderConfig(
        **loop, data=data, holdout=holdout, model=model_path, prior=prior_path, refinement=refinement_path,
        model_id=model_id, dec_blocks=dec_blocks, codec_prob=codec_prob,
        vq_qualities=qualities(vq_qualities, "--vq-qualities"),
        refined_qualities=qualities(refined_qualities, "--refined-qualities"),
        batch_size=batch_size, crop=crop, tournament=tournament, margin=margin, loss=loss,
        kind_power=kind_power, border_prob=border_prob, init_decoder=init_decoder))


def _range_pair(text: str, option: str) -> tuple[float, float]:
    """'MIN,MAX' -> (MIN, MAX) floats, 0 < MIN <= MAX."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected MIN,MAX (two numbers), got {text!r}", param_hint=option) from None
    if not 0 < lo <= hi:
        raise click.BadParameter(f"need 0 < MIN <= MAX, got {text!r}", param_hint=option)
    return lo, hi


@train.command("prior")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of training images (the same photos the image model was trained on).")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Image model weights (.safetensors) whose indices the prior models; keep it frozen.")
@loop_options(steps=6000, lr=2e-3)
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from these prior weights (float .safetensors or a run's checkpoint.pt).")
@click.option("--max-steps-now", type=click.IntRange(min=1), default=None, hidden=True,
              help="Deprecated: --stop-at-step.")
@click.option("--depth-qualities", default=None,
              help="Train on the per-block-depth maps the codec writes at these qualities (comma list, e.g. "
                   "20,40,60,80,100) instead of full-depth maps.")
@click.option("--prior", "prior_json", default=None, callback=lambda c, p, v: _json_object(c, p, v),
              help="PriorConfig fields of a new prior as JSON, e.g. '{\"num_stages\": 2}' (a prior of the first "
                   "stages only, for a codec whose refinement layers follow them).")
def train_prior_cmd(data, model_path, init_from, max_steps_now, depth_qualities, prior_json, **kwargs) -> None:
    """Train the autoregressive priors on the index maps of --data under --model, then export the
    integer prior used for coding (OUT/image_prior.safetensors) once the run has reached --steps.

    Runs under `torchrun --nproc_per_node N` with DistributedDataParallel as well.
    """
    from vqcodec.training.distributed import rank
    from vqcodec.training.image_prior import INTEGER_PRIOR_NAME, ImagePriorTrainConfig, train_image_prior

    if max_steps_now is not None:
        _deprecated("--max-steps-now", "--stop-at-step")
        kwargs["stop_at_step"] = kwargs["stop_at_step"] or max_steps_now
    loop = _loop_settings(kwargs)
    qualities = [int(v) for v in depth_qualities.split(",")] if depth_qualities else None
    model = None
    if prior_json:
        from vqcodec.image.model import load_image_model
        from vqcodec.image.prior import PriorConfig

        vq = load_image_model(model_path)[0].cfg
        model = PriorConfig.from_dict({"num_stages": vq.num_stages, "codebook_size": vq.num_codes,
                                       **prior_json}).to_dict()
    result = train_image_prior(ImagePriorTrainConfig(**loop, init_from=init_from, model=model), data, model_path,
                               qualities)
    if result.finished and rank() == 0:
        click.echo(f"wrote {Path(loop['out']) / INTEGER_PRIOR_NAME}", err=True)


@train.command("refinement")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of training images (never the evaluation set).")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Image model weights (.safetensors) whose latents the refinement layers code.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the refinement model (.safetensors), e.g. WEIGHTS/image_refinement.safetensors.")
@click.option("--base-stages", default=2, show_default=True, type=click.IntRange(min=1),
              help="VQ stages under the refinement layers.")
@click.option("--layers", default=5, show_default=True, type=click.IntRange(1, 10), help="Refinement layers.")
@click.option("--first-shift", default=None, type=click.IntRange(0, 10),
              help="Layer 1's step is 2^-FIRST_SHIFT latent units (default: the model's refine_first_shift).")
@click.option("--max-first", default=7, show_default=True, type=click.IntRange(1, 127),
              help="Largest |symbol| of the first layer (larger residuals are clamped; decoding time grows with it).")
@click.option("--crops", default=60, show_default=True, type=click.IntRange(min=1),
              help="Random training crops the tables are counted on.")
@click.option("--crop-size", default=256, show_default=True, type=click.IntRange(min=8))
@click.option("--holdout", default=0, show_default=True, type=click.IntRange(min=0),
              help="Keep the held-out photos of `vqcodec train image --holdout N` out of the fit.")
@click.option("--scale", "scale_json", default=None, callback=lambda c, p, v: _json_object(c, p, v),
              help="Quality-scale settings stored with the tables (RefinementScale fields, JSON).")
@click.option("--seed", default=0, show_default=True, type=int)
def train_refinement_cmd(data, model_path, out, base_stages, layers, first_shift, max_first, crops, crop_size,
                         holdout, scale_json, seed) -> None:
    """Fit the entropy model of scalar refinement layers (static tables per layer and context) for an image
    model, on random crops of --data. The image codec loads it as its "refinement" component."""
    from vqcodec.image.model import load_image_model
    from vqcodec.training.image_model import split_holdout
    from vqcodec.training.refinement_tables import train_refinement

    shift = first_shift if first_shift is not None else load_image_model(model_path)[0].cfg.refine_first_shift
    exclude = set(split_holdout(data, holdout)[1]) if holdout else set()
    train_refinement(model_path, data, out, base_stages, layers, shift, crops, crop_size, seed, exclude=exclude,
                     scale=scale_json or None, max_first=max_first)
    click.echo(f"wrote {out}", err=True)


def _json_object(ctx, param, value: str | None) -> dict:
    """click callback: a JSON object option -> dict ({} when not given)."""
    if not value:
        return {}
    try:
        obj = json.loads(value)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON ({e}); e.g. '{{\"decoder\": \"wave\"}}'") from None
    if not isinstance(obj, dict):
        raise click.BadParameter("must be a JSON object, e.g. '{\"width\": 256}'")
    return obj


@train.command("audio")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of training audio (searched recursively; resampled to 16 kHz mono).")
@loop_options(steps=20000, lr=5e-4)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--crop-seconds", default=2.0, show_default=True, type=click.FloatRange(min=0.02))
@click.option("--holdout", default=10, show_default=True, type=click.IntRange(min=0),
              help="Utterances of --data held out (by name) for validation.")
@click.option("--val-data", type=click.Path(exists=True, file_okay=False), default=None,
              help="Extra validation folder (its first 5 files); never a folder you train on.")
@click.option("--model", "model_json", default=None, callback=_json_object,
              help="AudioModelConfig fields as JSON, e.g. '{\"decoder\": \"wave\", \"num_stages\": 16}'.")
@click.option("--loss", "loss_json", default=None, callback=_json_object,
              help="AudioLossConfig fields as JSON, e.g. '{\"complex\": 0.5}'.")
@click.option("--full-rate-prob", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Quantizer dropout: train a crop with all stages with this probability, else 1..S uniformly.")
@click.option("--ema-decay", default=0.99, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--restart-after", default=50, show_default=True, type=click.IntRange(min=0))
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from released audio weights (.safetensors) or another run's checkpoint.pt instead of scratch.")
@click.option("--no-bf16", is_flag=True, help="Train in float32 instead of bfloat16 autocast.")
def audio_command(data, batch_size, crop_seconds, holdout, val_data, model_json, loss_json, full_rate_prob,
                  ema_decay, restart_after, init_from, no_bf16, **kwargs) -> None:
    """Train the speech VQ-VAE on random crops of the audio in --data (never an evaluation set).

    Runs under `torchrun --nproc_per_node N` with DistributedDataParallel as well.
    """
    loop = _loop_settings(kwargs)
    from vqcodec.training.audio_model import TrainAudioConfig, train_audio

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    train_audio(TrainAudioConfig(
        **loop, data=data, batch_size=batch_size, crop_seconds=crop_seconds, holdout=holdout, val_data=val_data,
        model=model_json, loss=loss_json, full_rate_prob=full_rate_prob, ema_decay=ema_decay,
        restart_after=restart_after, init_from=init_from, bf16=not no_bf16,
    ))


@train.command("audio-prior")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of training audio (the audio the model was trained on; never an evaluation set).")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Audio model weights (.safetensors) whose indices the prior models; keep it frozen.")
@loop_options(steps=4000, lr=1e-3)
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--holdout", default=8, show_default=True, type=click.IntRange(min=0),
              help="Utterances of --data held out (by name) for validation bits.")
@click.option("--prior", "prior_json", default=None, callback=_json_object,
              help="AudioPriorConfig fields as JSON, e.g. '{\"segment_frames\": 125}'.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from these float audio prior weights.")
def train_audio_prior_cmd(data, model_path, batch_size, holdout, prior_json, init_from, **kwargs) -> None:
    """Train the audio prior (stage-1 WaveNet, conditional nets for stages 2..S) on the indices of --data
    under the frozen --model, then export the integer prior used for coding (OUT/audio_prior.safetensors)
    once the run has reached --steps.

    Runs under `torchrun --nproc_per_node N` with DistributedDataParallel as well.
    """
    from vqcodec.training.audio_prior import AudioPriorTrainConfig, train_audio_prior

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    loop = _loop_settings(kwargs)
    train_audio_prior(AudioPriorTrainConfig(**loop, data=data, model=model_path, batch_size=batch_size,
                                            holdout=holdout, prior=prior_json, init_from=init_from))


@train.command("speaker-decoder")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="LibriSpeech-style folder, one utterance per speaker (SPEAKER-CHAPTER-UTT.flac, SPEAKERS.TXT); "
                   "the last 20 % of each utterance is never trained on.")
@click.option("--base", default=None, type=click.Path(exists=True, dir_okay=False),
              help="The frozen speech model whose indices it decodes. Default: the shipped one.")
@loop_options(steps=3000, lr=3e-4)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--crop-frames", default=50, show_default=True, type=click.IntRange(min=1),
              help="Frames per training crop (50 frames = 1 s).")
@click.option("--speaker-dim", default=32, show_default=True, type=click.IntRange(min=1),
              help="Floats per speaker embedding.")
@click.option("--tuned-blocks", default=3, show_default=True, type=click.IntRange(min=0),
              help="Last decoder blocks fine-tuned (with the output norm and head); the rest stay the base's.")
@click.option("--full-rate-prob", default=0.25, show_default=True, type=click.FloatRange(0, 1),
              help="Quantizer dropout: decode a crop with all stages with this probability, else 1..S uniformly.")
@click.option("--no-bf16", is_flag=True, help="Train in float32 instead of bfloat16 autocast.")
def speaker_decoder_command(data, base, batch_size, crop_frames, speaker_dim, tuned_blocks, full_rate_prob, no_bf16,
                            **kwargs) -> None:
    """Train the speaker-conditioned decoder (the earlier speaker experiment; `vqcodec convert` uses the conversion
    model of `vqcodec train conversion` instead) on --data's utterances, with each utterance's own speaker id; the
    base model's encoder and quantizer stay frozen.

    The exported OUT/audio_speaker_decoder.safetensors is an optional weights component (role
    "speaker-decoder"); the codec itself never needs it.
    """
    from vqcodec.training.speaker_decoder import TrainSpeakerConfig, train_speaker_decoder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    loop = _loop_settings(kwargs)
    extra = {"base": base} if base else {}
    train_speaker_decoder(TrainSpeakerConfig(
        **loop, **extra, data=data, batch_size=batch_size, crop_frames=crop_frames, speaker_dim=speaker_dim,
        tuned_blocks=tuned_blocks, full_rate_prob=full_rate_prob, bf16=not no_bf16))


@train.command("audio-decoder")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of training speech (searched recursively; never an evaluation set).")
@click.option("--base", default=None, type=click.Path(exists=True, dir_okay=False),
              help="The frozen speech model whose indices the decoder reads. Default: the shipped one.")
@loop_options(steps=20000, lr=3e-4)
@click.option("--decoder", type=click.Choice(["hn", "istft"]), default="hn", show_default=True,
              help="hn: harmonic-plus-noise (oscillator bank + inverse-STFT noise branch); istft: the base decoder's kind.")
@click.option("--model-id", default=None, help="Id written into the exported weights (default: audio-decoder-<kind>-v1).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--crop-frames", default=100, show_default=True, type=click.IntRange(min=1),
              help="Frames per training crop (50 frames = 1 s).")
@click.option("--holdout", default=10, show_default=True, type=click.IntRange(min=0),
              help="Utterances of --data held out (by name) for validation.")
@click.option("--full-rate-prob", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Quantizer dropout: decode a crop with all stages with this probability, else 1..S uniformly.")
@click.option("--model", "model_json", default=None, callback=_json_object,
              help="AudioModelConfig decoder fields to change, as JSON, e.g. '{\"istft_n_fft\": 1024}'.")
@click.option("--harmonic", "harmonic_json", default=None, callback=_json_object,
              help="HarmonicConfig fields as JSON (hn), e.g. '{\"max_harmonics\": 64}'.")
@click.option("--loss", "loss_json", default=None, callback=_json_object,
              help="AudioLossConfig fields as JSON, e.g. '{\"complex\": 0, \"wave\": 0}'.")
@click.option("--f0-weight", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="hn: weight of the f0 loss (mean octaves off on voiced points).")
@click.option("--env-init", default=-7.0, show_default=True, type=float,
              help="hn: initial log amplitude of the harmonic envelope (natural log).")
@click.option("--noise-offset", default=0.0, show_default=True, type=float,
              help="hn started from the base decoder: added to the noise head's log magnitudes (e.g. -4: 35 dB "
                   "quieter), so the oscillators take over the voiced sound.")
@click.option("--f0-bins", default=192, show_default=True, type=click.IntRange(min=0),
              help="hn: f0 predicted as a class over this many log-spaced bins (0: one regressed value).")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A decoder-stage file (audio_decoder.safetensors) whose same-shaped tensors start this run.")
@click.option("--residual", is_flag=True,
              help="hn: add a learned-phase inverse-STFT branch (started from the base decoder's head) whose gain is "
                   "learned per stage count, for waveform detail at high qualities.")
@click.option("--residual-loss", "residual_loss_json", default=None, callback=_json_object,
              help="With --residual: AudioLossConfig fields of the branch's own loss, as JSON (default: complex 25, "
                   "wave 1, the other terms 0; the other branches' output held fixed).")
@click.option("--residual-detach", is_flag=True,
              help="With --residual: the branch reads the blocks' output detached, so its loss trains only its head "
                   "and gates (the blocks the harmonic and noise heads read stay theirs).")
@click.option("--pitch", type=click.Choice(["harvest", "dio"]), default=None,
              help="hn: pitch labels from WORLD's Harvest (70-700 Hz) or DIO (50-700 Hz; the method before 0.5). "
                   "Default: harvest for a new run, the run's own method on resume; resuming with another "
                   "method relabels the run's cache.")
@click.option("--from-scratch", is_flag=True, help="Do not start the decoder from the base decoder's weights.")
@click.option("--no-bf16", is_flag=True, help="Train in float32 instead of bfloat16 autocast.")
def audio_decoder_command(data, base, decoder, model_id, batch_size, crop_frames, holdout, full_rate_prob, model_json,
                          harmonic_json, loss_json, f0_weight, env_init, noise_offset, f0_bins, init_from,
                          residual, residual_loss_json, residual_detach, pitch, from_scratch, no_bf16,
                          **kwargs) -> None:
    """Train a new speech decoder on the frozen encoder and codebooks of --base (decoder only): files coded
    with the base model decode with it. Exports OUT/audio_decoder.safetensors."""
    from vqcodec.training.audio_decoder import TrainDecoderConfig, train_audio_decoder
    from vqcodec.weights.io import WEIGHTS_DIR

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    loop = _loop_settings(kwargs)
    train_audio_decoder(TrainDecoderConfig(
        **loop, data=data, base=base or str(WEIGHTS_DIR / "audio_vqvae.safetensors"), decoder=decoder,
        model_id=model_id or "", batch_size=batch_size, crop_frames=crop_frames,
        holdout=holdout, full_rate_prob=full_rate_prob, model=model_json or {}, harmonic=harmonic_json or {},
        loss=loss_json or {}, f0_weight=f0_weight, env_init=env_init, noise_offset=noise_offset, f0_bins=f0_bins,
        init_from=init_from, pitch=pitch, residual=residual, residual_loss=residual_loss_json or {},
        residual_detach=residual_detach,
        init_from_base=not from_scratch, bf16=not no_bf16))


@train.command("conversion")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of training speech, several utterances per speaker (never an evaluation set).")
@click.option("--speakers-csv", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV with columns file (relative to --data) and speaker; default: LibriSpeech names "
                   "(SPEAKER-CHAPTER-UTT), else each file's folder name.")
@click.option("--exclude-speakers", default="", help="Comma-separated speaker ids never trained on (held-out voices).")
@loop_options(steps=20000, lr=3e-4)
@click.option("--holdout-per-speaker", default=2, show_default=True, type=click.IntRange(min=0),
              help="Utterances per training speaker held out (by name) for validation.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--crop-frames", default=100, show_default=True, type=click.IntRange(min=2),
              help="Frames per training crop (50 frames = 1 s; a multiple of the content stride).")
@click.option("--jitter", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Probability that a content code position reads a neighbour's code (time jitter).")
@click.option("--adversary", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Weight of a speaker classifier on the content code trained through a reversed gradient, so "
                   "that the encoder leaves the voice out of the code (0: off).")
@click.option("--model", "model_json", default=None, callback=_json_object,
              help="ConversionConfig fields as JSON, e.g. '{\"content_stride\": 4}'.")
@click.option("--loss", "loss_json", default=None, callback=_json_object,
              help="AudioLossConfig fields as JSON (over the phase-free defaults).")
@click.option("--pitch", type=click.Choice(["harvest", "dio"]), default=None,
              help="Pitch labels (and the tracker the model's sources need): WORLD's Harvest (70-700 Hz) or DIO "
                   "(50-700 Hz; the method before 0.5). Default: harvest for a new run, the run's own method on "
                   "resume; resuming with another method relabels the run's cache.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start a new run from a conversion weights file (e.g. codec/weights/audio_conversion_v3"
                   ".safetensors): its tensors of the same names and shapes; with --model '{\"content_stages\": 2}' "
                   "the added content stage starts fresh.")
@click.option("--no-bf16", is_flag=True, help="Train in float32 instead of bfloat16 autocast.")
def conversion_command(data, speakers_csv, exclude_speakers, holdout_per_speaker, batch_size, crop_frames, jitter,
                       adversary, model_json, loss_json, pitch, init_from, no_bf16, **kwargs) -> None:
    """Train the speaker-conversion model (issue 23): content encoder, low-rate VQ code and a speaker-conditioned
    harmonic-plus-noise decoder, jointly; exports OUT/conversion_model.safetensors with its speaker table. For
    `vqcodec convert`, copy it as audio_conversion.safetensors into a weights folder without a manifest (beside
    audio_vqvae.safetensors and audio_prior.safetensors) and point $VQCODEC_WEIGHTS_DIR at that folder."""
    from vqcodec.training.conversion import TrainConversionConfig, train_conversion

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    loop = _loop_settings(kwargs)
    excluded = tuple(s.strip() for s in exclude_speakers.split(",") if s.strip())
    train_conversion(TrainConversionConfig(
        **loop, data=data, speakers_csv=speakers_csv, exclude_speakers=excluded,
        holdout_per_speaker=holdout_per_speaker, batch_size=batch_size, crop_frames=crop_frames, jitter=jitter,
        adversary=adversary, model=model_json or {}, loss=loss_json or {}, pitch=pitch, init_from=init_from,
        bf16=not no_bf16))
