"""`vqcodec encode | decode | info | sample`, for images and audio, through the public API (vqcodec.api).

The modality of `encode` follows the input (an image Pillow reads, or audio soundfile reads); `decode`
and `info` follow the .vq file's header.
"""
from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import click
import numpy as np

from .io import BadInput, check_writable, read_input, write_output, write_output_with

__all__ = ["encode", "decode", "info", "sample"]

_IMAGE_FORMATS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
                  ".jpg": "JPEG", ".jpeg": "JPEG", ".ppm": "PPM"}
_AUDIO_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
_AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".mp3", ".opus", ".w64", ".caf"}


def _progress_bar(desc: str):
    """A tqdm bar over quality layers on stderr (hidden when stderr is not a terminal); returns (callback, bar)."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="layer", disable=None, leave=False, file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar


# ------------------------------------------------------------------------------------------- input/output
def _open_image(data: bytes, name: str):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise BadInput(f"{name}: not a readable image ({e})") from None


def _read_audio(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """Audio file bytes -> (float32 (T, C) samples, sample rate in Hz)."""
    import soundfile as sf

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise BadInput(f"{name}: not a readable audio file ({e})") from None
    return samples, int(rate)


def _read_audio_header(path: str) -> None:
    """Raise BadInput unless soundfile can open `path`."""
    import soundfile as sf

    try:
        sf.info(path)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise BadInput(f"{path}: not a readable audio file ({e})") from None


def _is_audio_name(name: str) -> bool:
    return name != "-" and Path(name).suffix.lower() in _AUDIO_SUFFIXES


def _looks_like_audio(data: bytes, name: str) -> bool:
    if _is_audio_name(name):
        return True
    if name != "-" and Path(name).suffix.lower() in _IMAGE_FORMATS:
        return False
    return data[:4] in (b"RIFF", b"fLaC", b"OggS", b"FORM") or data[:3] == b"ID3"


def _image_bytes(rgb: np.ndarray, out_path: str) -> bytes:
    from PIL import Image

    suffix = Path(out_path).suffix.lower() if out_path != "-" else ".png"
    fmt = _IMAGE_FORMATS.get(suffix)
    if fmt is None:
        raise BadInput(f"{out_path}: unknown image type {suffix!r}; use one of {', '.join(sorted(_IMAGE_FORMATS))}")
    buf = io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(rgb, mode="RGB").save(buf, format=fmt, **extra)
    return buf.getvalue()


def _audio_format(out_path: str) -> tuple[str, str]:
    """(soundfile format, subtype) for an output name; '-' is WAV."""
    suffix = Path(out_path).suffix.lower() if out_path != "-" else ".wav"
    if suffix not in _AUDIO_FORMATS:
        raise BadInput(f"{out_path}: unknown audio type {suffix!r}; use one of {', '.join(sorted(_AUDIO_FORMATS))}")
    return _AUDIO_FORMATS[suffix]


def write_audio(out_path: str, blocks, rate: int, channels: int, force: bool) -> None:
    """Write float32 (n, C) blocks as an audio file (atomically; '-' buffers a WAV for stdout)."""
    import soundfile as sf

    fmt, subtype = _audio_format(out_path)

    def fill(target) -> None:
        with sf.SoundFile(target, "w", samplerate=rate, channels=channels, format=fmt, subtype=subtype) as f:
            for b in blocks:
                f.write(np.clip(b, -1.0, 1.0))

    if out_path == "-":
        buf = io.BytesIO()
        fill(buf)
        write_output(out_path, buf.getvalue(), force)
    else:
        write_output_with(out_path, fill, force)


def _check_quality(quality: int | None, modality: str, name: str = "") -> None:
    from vqcodec import api

    top = api.max_quality(modality)
    if quality is not None and not 1 <= quality <= top:
        if name:  # one file of a batch: its own line, not a usage error of the whole command
            raise BadInput(f"{name}: --quality must be 1..{top} for {modality}")
        raise click.BadParameter(f"must be 1..{top} for {modality}", param_hint="--quality")


def encode_file(src: str, dst: str, quality: int | None, alpha: str, verify: bool, force: bool,
                progress=None, batch: bool = False) -> str:
    """Encode one input file (or '-') to `dst` (or '-'); returns the summary line. Raises BadInput for bad input."""
    from vqcodec import api

    check_writable(dst, force)
    data = read_input(src, head=64) if _is_audio_name(src) else read_input(src)
    modality = "audio" if _looks_like_audio(data, src) else "image"
    _check_quality(quality, modality, src if batch else "")
    try:
        if modality == "image":
            rgb = api.to_rgb_array(_open_image(data, src), alpha)
            encoded = api.encode_image(rgb, quality, progress=progress, verify=verify)
        elif src == "-":
            samples, rate = _read_audio(data, src)
            encoded = api.encode_audio(samples, rate, quality, progress=progress, verify=verify)
        else:  # streamed from the file: memory does not grow with its length
            _read_audio_header(src)
            encoded = api.encode_audio_file(src, quality, progress=progress, verify=verify)
    except ValueError as e:
        raise BadInput(f"{src}: {e}") from None
    write_output(dst, encoded, force)
    info = api.inspect(encoded)
    size = (f"{info.width}x{info.height}, {info.bits_per_pixel:.3f} bpp" if modality == "image"
            else f"{info.duration_s:.2f} s, {info.channels} ch, {info.kbps:.2f} kbit/s")
    return f"{src} -> {dst}: {size}, quality {info.layers}, {len(encoded)} bytes" + (", verified" if verify else "")


def decode_file(src: str, dst: str, layers: int | None, force: bool, progress=None) -> str:
    """Decode one .vq file (or '-') to `dst` (or '-'), image or audio by what it holds; returns the summary line."""
    from vqcodec import api

    check_writable(dst, force)
    data = read_input(src)
    try:
        if api.inspect(data).modality == "image":
            rgb = np.asarray(api.decode(data, layers=layers, progress=progress))
            write_output(dst, _image_bytes(rgb, dst), force)
            return f"{src} -> {dst}: {rgb.shape[1]}x{rgb.shape[0]}"
        _audio_format(dst)
        rate, channels, num_samples, blocks = api.decode_audio_blocks(data, layers=layers, progress=progress)
        write_audio(dst, blocks, rate, channels, force)  # rendered block by block while it is written
    except api.VQFormatError as e:
        raise BadInput(f"{src}: {e}") from None
    return f"{src} -> {dst}: {num_samples / rate:.2f} s at {rate} Hz, {channels} ch"


# ----------------------------------------------------------------------------------------------- commands
_JOBS_HELP = "Batch: worker processes, each with one torch thread. Default: the cores."


@click.command()
@click.argument("inputs", metavar="IN...", type=str, nargs=-1, required=True)
@click.option("-o", "--output", "output", required=True,
              help="Output .vq file ('-' for stdout), or a folder (existing, or ending in '/') for STEM.vq files; "
                   "several inputs need a folder.")
@click.option("-q", "--quality", type=int, default=None,
              help="Quality 1..max (higher is better and bigger; `vqcodec info` of a file shows it). "
                   "Images: 1..8, each level about 0.14 bpp before entropy coding. Default: the top.")
@click.option("--alpha", type=click.Choice(["error", "drop", "white", "black"]), default="error", show_default=True,
              help="Images: what to do with a transparent alpha channel: refuse, drop it, or composite over white/black.")
@click.option("--verify", is_flag=True, help="Decode the result and check it before reporting success.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("-j", "--jobs", type=int, default=None, help=_JOBS_HELP)
def encode(inputs: tuple[str, ...], output: str, quality: int | None, alpha: str, verify: bool, force: bool,
           jobs: int | None) -> None:
    """Encode IN ('-' for stdin) to a .vq file: an image (PNG, JPEG, WebP, BMP, TIFF) or audio (WAV, FLAC,
    OGG and anything else soundfile reads). Several INs go into the folder -o OUTDIR/ as STEM.vq.

    Grayscale and palette images are coded as RGB. A fully opaque alpha channel is dropped; a
    transparent one needs --alpha. Audio is resampled to 16 kHz inside and back on decode.
    """
    from vqcodec import api

    from . import batch

    if batch.is_batch(inputs, output):
        return batch.run_batch("encode", inputs, output, {"quality": quality, "alpha": alpha, "verify": verify,
                                                          "force": force}, jobs)
    (input_path,) = inputs
    t0 = time.perf_counter()
    update, bar = _progress_bar("encode")
    try:
        line = encode_file(input_path, output, quality, alpha, verify, force, update)
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
def decode(inputs: tuple[str, ...], output: str, layers: int | None, force: bool, jobs: int | None) -> None:
    """Decode IN.vq ('-' for stdin) to an image or an audio file, whichever it holds; several go into the
    folder -o OUTDIR/."""
    from vqcodec import api

    from . import batch

    if batch.is_batch(inputs, output):
        if layers is not None and layers < 1:
            raise click.BadParameter("must be >= 1", param_hint="--layers")
        return batch.run_batch("decode", inputs, output, {"layers": layers, "force": force}, jobs)
    (input_path,) = inputs
    if layers is not None and layers < 1:
        raise click.BadParameter("must be >= 1", param_hint="--layers")
    t0 = time.perf_counter()
    update, bar = _progress_bar("decode")
    try:
        line = decode_file(input_path, output, layers, force, update)
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
        d.update(width=fi.width, height=fi.height, bpp=fi.bits_per_pixel)
    else:
        d.update(sample_rate=fi.sample_rate, channels=fi.channels, num_samples=fi.num_samples,
                 duration_s=fi.duration_s, kbps=fi.kbps)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    if fi.modality == "image":
        what = f"{fi.width}x{fi.height} RGB, {fi.file_bytes} bytes ({fi.bits_per_pixel:.3f} bpp)"
    else:
        what = (f"{fi.duration_s:.2f} s, {fi.sample_rate} Hz, {fi.channels} ch, {fi.file_bytes} bytes "
                f"({fi.kbps:.2f} kbit/s)")
    click.echo(f"{input_path}: vqcodec {fi.modality}, {what}, {fi.layers} quality layers, format version {fi.format_version}")
    for role, model_id, h in fi.components:
        click.echo(f"  {role}: {model_id} (weights {h})")
    for i, n in enumerate(fi.layer_bytes, 1):
        click.echo(f"  layer {i}: {n} bytes")


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
    modality = "audio" if output != "-" and Path(output).suffix.lower() in _AUDIO_FORMATS else "image"
    top = api.max_quality(modality)
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
    write_output(output, _image_bytes(np.asarray(rgb), output), force)
    if output != "-":
        click.echo(f"sampled {w}x{h} image (seed {seed}, {layers or top} layers) -> {output}", err=True)
