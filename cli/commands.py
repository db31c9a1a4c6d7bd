"""`vqcodec encode | decode | info | sample`, for images and audio, through the public API (vqcodec.api).

One file is coded here (jobs.py: `encode_file`, `decode_file`); several go to batch.py's worker processes.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from . import batch
from .audio_io import AUDIO_FORMATS, write_audio
from .io import BadInput, check_writable, image_file_bytes, read_input, write_output
from .jobs import decode_file, encode_file

__all__ = ["encode", "decode", "info", "sample"]


def _progress_bar(desc: str) -> tuple[Any, Any]:
    """A tqdm bar over quality layers on stderr (hidden when stderr is not a terminal); returns (callback, bar)."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="layer", disable=None, leave=False, file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar


# ----------------------------------------------------------------------------------------------- commands
_JOBS_HELP = "Batch: worker processes, each with one torch thread. Default: the cores."


@click.command()
@click.argument("inputs", metavar="IN...", type=str, nargs=-1, required=True)
@click.option("-o", "--output", "output", required=True,
              help="Output .vq file ('-' for stdout), or a folder (existing, or ending in '/') for STEM.vq files; "
                   "several inputs need a folder.")
@click.option("-q", "--quality", type=int, default=None,
              help="Quality 1..max, higher is better and bigger. Images: 1..100 (a rate-distortion trade-off: each "
                   "8x8 block gets its own number of stages); audio: 1..stages. Default: the top.")
@click.option("--effort", type=click.IntRange(1, 3), default=None,
              help="Images: encoder effort, 1 (fastest) .. 3 (slowest, fewest bytes); default 2. Decoding "
                   "speed does not depend on it.")
@click.option("--bpp", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Images: the highest quality within this many bits per pixel (instead of -q), as cwebp -size.")
@click.option("--size", type=click.IntRange(min=1), default=None,
              help="Images: the highest quality within this many bytes (instead of -q).")
@click.option("--alpha", type=click.Choice(["keep", "drop", "white", "black", "error"]), default="keep",
              show_default=True,
              help="Images: the alpha channel: keep it (coded losslessly), drop it, composite over white/black, or "
                   "refuse a transparent image.")
@click.option("--strip", is_flag=True,
              help="Images: drop EXIF and XMP metadata (the ICC profile is kept: it is part of the colours).")
@click.option("--verify", is_flag=True, help="Decode the result and check it before reporting success.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("-j", "--jobs", type=int, default=None, help=_JOBS_HELP)
def encode(inputs: tuple[str, ...], output: str, quality: int | None, effort: int | None, bpp: float | None,
           size: int | None, alpha: str, strip: bool, verify: bool, force: bool, jobs: int | None) -> None:
    """Encode IN ('-' for stdin) to a .vq file: an image (PNG, JPEG, WebP, BMP, TIFF) or audio (WAV, FLAC,
    OGG and anything else soundfile reads). Several INs go into the folder -o OUTDIR/ as STEM.vq.

    Transparency is kept (the alpha plane is coded losslessly), grayscale comes back as grayscale, 16-bit
    images are rounded to 8 bits, the EXIF orientation is applied, and the ICC profile, EXIF and XMP are
    carried (--strip drops EXIF and XMP). Audio is resampled to 16 kHz inside and back on decode.
    """
    targets = [name for name, v in (("--quality", quality), ("--bpp", bpp), ("--size", size)) if v is not None]
    if len(targets) > 1:
        raise click.UsageError(f"give one of {', '.join(targets)}: a quality or a target size")
    if batch.is_batch(inputs, output):
        return batch.run_batch("encode", inputs, output, {"quality": quality, "alpha": alpha, "verify": verify,
                                                          "force": force, "strip": strip, "effort": effort,
                                                          "bpp": bpp, "size": size}, jobs)
    (input_path,) = inputs
    t0 = time.perf_counter()
    update, bar = _progress_bar("encode")
    try:
        line = encode_file(input_path, output, quality, alpha, verify, force, update, strip=strip, effort=effort,
                           bpp=bpp, size=size)
    finally:
        bar.close()
    if output != "-":
        click.echo(f"{line}, {time.perf_counter() - t0:.2f} s", err=True)


@click.command()
@click.argument("inputs", metavar="IN.vq...", type=str, nargs=-1, required=True)
@click.option("-o", "--output", "output", required=True,
              help="Output file. Images: .png, .bmp, .tif, .webp (lossless), ...; audio: .wav, .flac, .ogg. "
                   "'-' writes PNG or WAV to stdout. A folder (existing, or ending in '/') gets STEM.png or "
                   "STEM.wav; several inputs need a folder.")
@click.option("-l", "--layers", type=int, default=None,
              help="Decode only the first N quality layers (a lower-quality result). Default: all in the file.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("-j", "--jobs", type=int, default=None, help=_JOBS_HELP)
@click.option("--partial", is_flag=True,
              help="Accept a file that was cut short and decode its complete quality layers (says how many); "
                   "a file cut before its first layer is complete is still an error.")
def decode(inputs: tuple[str, ...], output: str, layers: int | None, force: bool, jobs: int | None,
           partial: bool) -> None:
    """Decode IN.vq ('-' for stdin) to an image or an audio file, whichever it holds; several go into the
    folder -o OUTDIR/."""
    if batch.is_batch(inputs, output):
        if layers is not None and layers < 1:
            raise click.BadParameter("must be >= 1", param_hint="--layers")
        return batch.run_batch("decode", inputs, output, {"layers": layers, "force": force, "partial": partial},
                               jobs)
    (input_path,) = inputs
    if layers is not None and layers < 1:
        raise click.BadParameter("must be >= 1", param_hint="--layers")
    t0 = time.perf_counter()
    update, bar = _progress_bar("decode")
    try:
        line = decode_file(input_path, output, layers, force, update, partial=partial)
    finally:
        bar.close()
    if output != "-":
        click.echo(f"{line}, {time.perf_counter() - t0:.2f} s", err=True)


@click.command()
@click.argument("input_path", metavar="IN.vq", type=str)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(input_path: str, as_json: bool) -> None:
    """Show what a .vq file holds: what it is, its size and rate, quality layers, the models that made it."""
    from vqcodec import api

    data = read_input(input_path)
    try:
        fi = api.inspect(data)
    except api.VQFormatError as e:
        raise BadInput(f"{input_path}: {e}") from None
    d: dict = {
        "format_version": fi.format_version,
        "modality": fi.modality,
        "layers": fi.layers,
        "models": [{"role": r, "model_id": m, "weights_hash": h} for r, m, h in fi.components],
        "layer_bytes": list(fi.layer_bytes),
        "file_bytes": fi.file_bytes,
    }
    if fi.modality == "image":
        d.update(width=fi.width, height=fi.height, mode=fi.mode, bpp=fi.bits_per_pixel,
                 metadata={key: len(value) for key, value in fi.metadata})
    else:
        d.update(sample_rate=fi.sample_rate, channels=fi.channels, num_samples=fi.num_samples,
                 duration_s=fi.duration_s, kbps=fi.kbps)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    if fi.modality == "image":
        what = f"{fi.width}x{fi.height} {fi.mode}, {fi.file_bytes} bytes ({fi.bits_per_pixel:.3f} bpp)"
    else:
        what = (f"{fi.duration_s:.2f} s, {fi.sample_rate} Hz, {fi.channels} ch, {fi.file_bytes} bytes "
                f"({fi.kbps:.2f} kbit/s)")
    click.echo(f"{input_path}: vqcodec {fi.modality}, {what}, {fi.layers} quality layers, format version {fi.format_version}")
    for role, model_id, h in fi.components:
        click.echo(f"  {role}: {model_id} (weights {h})")
    for i, n in enumerate(fi.layer_bytes, 1):
        click.echo(f"  layer {i}: {n} bytes")
    for key, value in fi.metadata:
        click.echo(f"  metadata {key}: {len(value)} bytes")


@click.command()
@click.option("-o", "--output", "output", required=True,
              help="Output image (.png etc.) or audio (.wav, .flac, .ogg): the extension says which prior to sample.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same result).")
@click.option("--size", default="256x256", show_default=True, help="Images: WIDTHxHEIGHT in pixels (multiples of 8).")
@click.option("--seconds", default=4.0, show_default=True, type=click.FloatRange(0.02, 600), help="Audio: duration.")
@click.option("-l", "--layers", type=int, default=None, help="Quality layers to sample (default: all).")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
def sample(output: str, seed: int, size: str, seconds: float, layers: int | None, force: bool) -> None:
    """Draw indices from a prior and decode them: the VQ-VAE paper's generation experiment (images from the
    PixelCNN, speech-like babble from the WaveNet)."""
    from vqcodec import api

    check_writable(output, force)
    modality = "audio" if output != "-" and Path(output).suffix.lower() in AUDIO_FORMATS else "image"
    top = api.max_layers(modality)
    if layers is not None and not 1 <= layers <= top:
        raise click.BadParameter(f"must be 1..{top}", param_hint="--layers")
    if modality == "audio":
        samples, rate = api.sample_audio(seconds, seed=seed, layers=layers)
        write_audio(output, [samples[:, None]], rate, 1, force)
        click.echo(f"sampled {seconds:g} s of audio (seed {seed}, {layers or top} layers) -> {output}", err=True)
        return
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter("expected WIDTHxHEIGHT, e.g. 256x256", param_hint="--size") from None
    if w < 8 or h < 8 or w % 8 or h % 8 or w * h > 4096 * 4096:
        raise click.BadParameter("sides must be multiples of 8, at least 8, at most 16 megapixels", param_hint="--size")
    rgb = api.sample_image(w, h, seed=seed, layers=layers)
    write_output(output, image_file_bytes(rgb, output), force)
    if output != "-":
        click.echo(f"sampled {w}x{h} image (seed {seed}, {layers or top} layers) -> {output}", err=True)
