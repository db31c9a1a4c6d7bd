"""`vqcodec train ...`: training commands (image autoencoder, priors)."""
from __future__ import annotations

import click

__all__ = ["train"]


@click.group()
def train() -> None:
    """Train the models (the release weights were made with these commands; see codec/MODEL_CARD.md)."""


@train.command("image")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of training images.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder: checkpoint, log, weights.")
@click.option("--steps", default=10000, show_default=True, help="Total optimizer steps of the run.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--val-data", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of validation images (e.g. Kodak), evaluated every --val-every steps.")
@click.option("--val-every", default=500, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--crop", default=128, show_default=True, help="Training crop size in pixels.")
@click.option("--lr", default=2e-4, show_default=True, help="Peak learning rate (warm-up, then cosine decay to 5%); 4e-4 destabilised the PCA-initialised model.")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
@click.option("--checkpoint-minutes", default=4.0, show_default=True)
@click.option("--max-minutes", type=float, default=None,
              help="Stop (with a checkpoint) after this many minutes; continue later with --resume.")
@click.option("--stop-at-step", type=int, default=None,
              help="Stop (with a checkpoint and exported weights) at this step; the learning-rate schedule "
                   "still follows --steps.")
@click.option("--decoder-only", is_flag=True, help="Freeze encoder and codebooks; fine-tune the decoder only.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from released weights (e.g. codec/weights/image_vqvae.safetensors) instead of scratch.")
@click.option("--no-bf16", is_flag=True, help="Train in float32 instead of bfloat16 autocast.")
@click.option("--ema-decay", default=0.99, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True), help="Decay per step of the EMA codebook updates.")
@click.option("--restart-after", default=50, show_default=True, type=click.IntRange(min=0),
              help="Re-seed a code left unused for this many steps (0: never).")
@click.option("--tournament", default=1, show_default=True, type=click.IntRange(min=1),
              help="Draw this many random crops per batch entry and train on the most detailed one.")
@click.option("--seed", default=0, show_default=True)
def train_image_cmd(data, out, steps, resume, val_data, val_every, batch_size, crop, lr, threads,
                    checkpoint_minutes, max_minutes, stop_at_step, decoder_only, init_from, no_bf16,
                    ema_decay, restart_after, tournament, seed) -> None:
    """Train the image VQ-VAE on random crops of the images in --data.

    Runs under `torchrun --nproc_per_node N` with DistributedDataParallel as well.
    """
    from vqcodec.training.image_model import TrainImageConfig, train_image

    train_image(TrainImageConfig(
        data=data, out=out, steps=steps, resume=resume, val_data=val_data, val_every=val_every,
        batch_size=batch_size, crop=crop, lr=lr, threads=threads, checkpoint_minutes=checkpoint_minutes, max_minutes=max_minutes,
        stop_at_step=stop_at_step, decoder_only=decoder_only, init_from=init_from, bf16=not no_bf16, seed=seed,
        ema_decay=ema_decay, restart_after=restart_after, tournament=tournament,
    ))


@train.command("prior")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of training images (the same photos the image model was trained on).")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Image model weights (.safetensors) whose indices the prior models; keep it frozen.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder: checkpoint, log, weights.")
@click.option("--steps", default=6000, show_default=True, help="Total optimizer steps of the run.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
@click.option("--max-steps-now", type=int, default=None, help="Stop (with a checkpoint) at this step; resume later.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from these prior weights (float .safetensors or a run's checkpoint.pt).")
def train_prior_cmd(data, model_path, out, steps, resume, threads, max_steps_now, init_from) -> None:
    """Train the autoregressive priors on the index maps of --data under --model, then export the
    integer prior used for coding (OUT/image_prior.safetensors)."""
    from pathlib import Path

    import torch

    from vqcodec.image.data import load_folder
    from vqcodec.image.model import load_image_model
    from vqcodec.image.index_maps import compute_index_maps
    from vqcodec.image.prior_integer import export_integer_prior
    from vqcodec.training.image_prior import train_prior

    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    maps_file = out_dir / "index_maps.pt"
    model, _ = load_image_model(model_path)
    if maps_file.is_file():
        maps = torch.load(maps_file, weights_only=True)
    else:
        maps = compute_index_maps(model, load_folder(data))
        torch.save(maps, maps_file)
    prior = train_prior(maps, out_dir, steps, resume=resume, threads=threads, stop_after=max_steps_now,
                        init_from=init_from)
    if max_steps_now is None or max_steps_now >= steps:
        calibration = maps[:: max(1, len(maps) // 32)]  # activation ranges: 32 maps are plenty, all are slow
        export_integer_prior(prior, calibration, out_dir / "image_prior.safetensors")
        click.echo(f"wrote {out_dir / 'image_prior.safetensors'}", err=True)
