"""`vqcodec encode | decode | sample`, for images and audio, through the public API (vqcodec.api), which each
command imports when it runs (`vqcodec --help` and usage errors import no model). `info` is info.py's.

One file is coded here (jobs.py: `encode_file`, `decode_file`); several go to batch.py's worker processes.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from . import batch
from .audio_io import AUDIO_FORMATS, write_audio
from .destination import check_output_name
from .io import check_writable, image_file_bytes, write_output
from .jobs import decode_file, encode_file
from .options import EXIT_TARGET_MISSED, plural, progress_option, show_progress

__all__ = ["encode", "decode", "sample"]


def _progress_bar(desc: str, progress: bool | None) -> tuple[Any, Any]:
    """A tqdm bar on stderr counting a codec's work in percent (images: quality layers; audio: blocks), shown
    when stderr is a terminal or --progress was given; returns (the codec's progress callback, the bar)."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, disable=not show_progress(progress), leave=False, file=sys.stderr,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]", dynamic_ncols=True)

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
              help="Images: the highest quality within this many bits per pixel (instead of -q), as cwebp -size; "
                   "missed as --size.")
@click.option("--size", type=click.IntRange(min=1), default=None,
              help="Images: the highest quality within this many bytes (instead of -q). A target below the "
                   "smallest reachable size writes that smallest file, warns and exits 3.")
@click.option("--alpha", type=click.Choice(["keep", "drop", "white", "black", "error"]), default=None,
              help="Images: the alpha channel: keep it (coded losslessly; the default), drop it, composite over "
                   "white/black, or refuse a transparent image.")
@click.option("--strip", is_flag=True,
              help="Images: drop EXIF and XMP metadata (the ICC profile is kept: it is part of the colours).")
@click.option("--verify", is_flag=True, help="Decode the result and check it before reporting success.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("-j", "--jobs", type=int, default=None, help=_JOBS_HELP)
@progress_option()
def encode(inputs: tuple[str, ...], output: str, quality: int | None, effort: int | None, bpp: float | None,
           size: int | None, alpha: str | None, strip: bool, verify: bool, force: bool, jobs: int | None,
           progress: bool | None) -> None:
    """Encode IN ('-' for stdin) to a .vq file: an image (PNG, JPEG, WebP, BMP, TIFF) or audio (WAV, FLAC,
    OGG and anything else soundfile reads). Several INs go into the folder -o OUTDIR/ as STEM.vq.

    Transparency is kept (the alpha plane is coded losslessly), grayscale comes back as grayscale, 16-bit
    images are rounded to 8 bits, the EXIF orientation is applied, and the ICC profile, EXIF and XMP are
    carried (--strip drops EXIF and XMP). Audio is resampled to 16 kHz inside and back on decode; the
    image-only options (--alpha, --strip, --effort, --bpp, --size) are refused for audio.

    Exit status: 0 done; 1 bad input (a line per file); 2 usage error; 3 a --size / --bpp target that cannot
    be met (the smallest reachable file is written and a warning says its size).
    """
    targets = [name for name, v in (("--quality", quality), ("--bpp", bpp), ("--size", size)) if v is not None]
    if len(targets) > 1:
        raise click.UsageError(f"give one of {', '.join(targets)}: a quality or a target size")
    if batch.is_batch(inputs, output, "out.vq"):
        return batch.run_batch("encode", inputs, output, {"quality": quality, "alpha": alpha, "verify": verify,
                                                          "force": force, "strip": strip, "effort": effort,
                                                          "bpp": bpp, "size": size}, jobs, progress)
    (input_path,) = inputs
    t0 = time.perf_counter()
    update, bar = _progress_bar("encode", progress)
    try:
        line, missed = encode_file(input_path, output, quality, alpha, verify, force, update, strip=strip,
                                   effort=effort, bpp=bpp, size=size)
    finally:
        bar.close()
    if output != "-":
        click.echo(f"{line}, {time.perf_counter() - t0:.2f} s", err=True)
    if missed:
        click.echo(f"vqcodec: warning: {missed}", err=True)
        click.get_current_context().exit(EXIT_TARGET_MISSED)


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
@click.option("--decoder", "decoder", metavar="ID|model|FILE", default=None,
              help="Render the file's indices with this decoder instead of the one the file names: an "
                   "installed decoder's id (image-f8-s2-k512-d128-v4-decoder-c2, audio-decoder-hn-v1: the "
                   "defaults of new files), 'model' (the model's own decoder: how speech files of 0.4.x and "
                   "image files of 0.6.0 decode), or a weights file of `vqcodec train audio-decoder` / "
                   "`image-decoder`. The indices are the same; only their rendering changes.")
@progress_option()
def decode(inputs: tuple[str, ...], output: str, layers: int | None, force: bool, jobs: int | None,
           partial: bool, decoder: str | None, progress: bool | None) -> None:
    """Decode IN.vq ('-' for stdin) to an image or an audio file, whichever it holds; several go into the
    folder -o OUTDIR/. --layers above the file's count decodes all of them, with a warning saying how many."""
    if layers is not None and layers < 1:
        raise click.BadParameter("must be >= 1", param_hint="--layers")
    if batch.is_batch(inputs, output, "out.png"):
        return batch.run_batch("decode", inputs, output, {"layers": layers, "force": force, "partial": partial,
                                                         "decoder": decoder}, jobs, progress)
    (input_path,) = inputs
    t0 = time.perf_counter()
    update, bar = _progress_bar("decode", progress)
    try:
        line = decode_file(input_path, output, layers, force, update, partial=partial, decoder=decoder)
    finally:
        bar.close()
    if output != "-":
        click.echo(f"{line}, {time.perf_counter() - t0:.2f} s", err=True)


@click.command()
@click.option("-o", "--output", "output", required=True,
              help="Output image (.png etc.) or audio (.wav, .flac, .ogg): the extension says which prior to sample.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same result).")
@click.option("--dims", default=None, metavar="WxH",
              help="Images only: WIDTHxHEIGHT in pixels (multiples of 8).  [default: 256x256]")
@click.option("--size", "old_size", default=None, hidden=True, help="The former name of --dims (deprecated).")
@click.option("--seconds", default=None, type=click.FloatRange(0.02, 600),
              help="Audio only: duration in seconds.  [default: 4]")
@click.option("-l", "--layers", type=int, default=None, help="Quality layers to sample (default: all).")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
def sample(output: str, seed: int, dims: str | None, old_size: str | None, seconds: float | None,
           layers: int | None, force: bool) -> None:
    """Draw indices from a prior and decode them: the VQ-VAE paper's generation experiment (images from the
    PixelCNN, speech-like babble from the WaveNet). --dims is for images, --seconds for audio; the other is
    refused."""
    check_output_name(output, "sample.png")
    if old_size is not None:
        if dims is not None:
            raise click.UsageError("give --dims (or its former name --size), not both")
        click.echo("vqcodec: warning: sample --size is deprecated (in encode it means bytes); use --dims WxH",
                   err=True)
        dims = old_size
    modality = "audio" if output != "-" and Path(output).suffix.lower() in AUDIO_FORMATS else "image"
    if modality == "audio" and dims is not None:
        raise click.UsageError(f"--dims is for images; {output} is audio: give --seconds for its length, or an "
                               "image name (e.g. -o sample.png)")
    if modality == "image" and seconds is not None:
        raise click.UsageError(f"--seconds is for audio; {output} is an image: give --dims WxH for its size, or an "
                               "audio name (e.g. -o sample.wav)")
    w, h = _dims(dims or "256x256")
    check_writable(output, force)
    from vqcodec import api

    top = api.max_layers(modality)
    if layers is not None and not 1 <= layers <= top:
        raise click.BadParameter(f"must be 1..{top}", param_hint="--layers")
    n = layers or top
    if modality == "audio":
        seconds = 4.0 if seconds is None else seconds
        samples, rate = api.sample_audio(seconds, seed=seed, layers=layers)
        write_audio(output, [samples[:, None]], rate, 1, force)
        click.echo(f"sampled {seconds:g} s of audio (seed {seed}, {plural(n, 'layer')}) -> {output}", err=True)
        return
    rgb = api.sample_image(w, h, seed=seed, layers=layers)
    write_output(output, image_file_bytes(rgb, output), force)
    if output != "-":
        click.echo(f"sampled {w}x{h} image (seed {seed}, {plural(n, 'layer')}) -> {output}", err=True)


def _dims(text: str) -> tuple[int, int]:
    """'256x192' -> (256, 192), or a usage error saying what --dims takes."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter("expected WIDTHxHEIGHT, e.g. 256x256", param_hint="--dims") from None
    if w < 8 or h < 8 or w % 8 or h % 8 or w * h > 4096 * 4096:
        raise click.BadParameter("sides must be multiples of 8, at least 8, at most 16 megapixels", param_hint="--dims")
    return w, h
