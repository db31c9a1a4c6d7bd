"""`vqcodec encode | decode | info | sample`, for images and audio, through the public API (vqcodec.api).

The modality of `encode` follows the input (an image Pillow reads, or audio soundfile reads); `decode`
and `info` follow the .vq file's header.
"""
from __future__ import annotations

import io
import json
import struct
import sys
import time
from pathlib import Path

import click
import numpy as np

from .io import (BadInput, IMAGE_FORMATS, check_image_output, check_writable, image_file_bytes, read_image, read_input,
                 write_output, write_output_with)

__all__ = ["encode", "decode", "info", "sample"]

_IMAGE_FORMATS = IMAGE_FORMATS
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
    """Image file bytes -> a loaded PIL image, or BadInput with one line (vqcodec.image.input's policy)."""
    return read_image(data, name)


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


def _image_bytes(img, out_path: str) -> bytes:
    """A decoded PIL image (or an (H, W, 3) uint8 RGB array) -> the bytes of the image file `out_path` names."""
    from PIL import Image

    return image_file_bytes(img if isinstance(img, Image.Image) else Image.fromarray(img, mode="RGB"), out_path)


def _audio_format(out_path: str) -> tuple[str, str]:
    """(soundfile format, subtype) for an output name; '-' is WAV."""
    suffix = Path(out_path).suffix.lower() if out_path != "-" else ".wav"
    if suffix not in _AUDIO_FORMATS:
        raise BadInput(f"{out_path}: unknown audio type {suffix!r}; use one of {', '.join(sorted(_AUDIO_FORMATS))}")
    return _AUDIO_FORMATS[suffix]


def _wav_header(rate: int, channels: int, num_samples: int) -> bytes:
    """The 44-byte header of a 16-bit PCM WAV file of num_samples samples per channel at `rate` Hz."""
    data_bytes = num_samples * channels * 2
    if data_bytes + 36 > 0xFFFFFFFF:
        raise BadInput(f"{num_samples} samples x {channels} channels of 16-bit audio do not fit in a WAV file "
                       "(4 GiB at most); decode to a .flac file instead")
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", data_bytes))


def write_audio(out_path: str, blocks, rate: int, channels: int, force: bool, num_samples: int | None = None) -> None:
    """Write float32 (n, C) blocks as an audio file, block by block (atomically: a temporary file renamed
    when complete). '-' writes a WAV to stdout: streamed when num_samples (per channel, the blocks' total)
    is given, so memory does not grow with the length (an error part-way leaves a truncated WAV on stdout
    and exit status 1), else buffered whole."""
    import soundfile as sf

    fmt, subtype = _audio_format(out_path)
    if out_path == "-" and num_samples is not None:
        out = sys.stdout.buffer
        out.write(_wav_header(rate, channels, num_samples))
        for b in blocks:  # libsndfile's float -> PCM_16 conversion, as for a file
            raw = io.BytesIO()
            sf.write(raw, np.clip(b, -1.0, 1.0), rate, format="RAW", subtype="PCM_16", endian="LITTLE")
            out.write(raw.getvalue())
        out.flush()
        return

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


def _check_image_only(modality: str, name: str, **options) -> None:
    given = [k for k, v in options.items() if v is not None]
    if modality != "image" and given:
        what = ", ".join(f"--{k}" for k in given)
        if name:
            raise BadInput(f"{name}: {what} apply to images only")
        raise click.BadParameter(f"{what} apply to images only", param_hint=what)


def encode_file(src: str, dst: str, quality: int | None, alpha: str, verify: bool, force: bool,
                progress=None, batch: bool = False, strip: bool = False, effort: int | None = None,
                bpp: float | None = None, size: int | None = None) -> str:
    """Encode one input file (or '-') to `dst` (or '-'); returns the summary line. Raises BadInput for bad input.

    Images only: effort 1..3; bpp or size (bytes): the highest quality within that size (instead of quality)."""
    from vqcodec import api

    check_writable(dst, force)
    data = read_input(src, head=64) if _is_audio_name(src) else read_input(src)
    modality = "audio" if _looks_like_audio(data, src) else "image"
    _check_quality(quality, modality, src if batch else "")
    _check_image_only(modality, src if batch else "", effort=effort, bpp=bpp, size=size)
    try:
        if modality == "image":
            img = _open_image(data, src)
            max_bytes = size if bpp is None else int(bpp * img.width * img.height / 8)
            encoded = api.encode_image(img, quality, alpha=alpha, strip=strip, effort=effort, max_bytes=max_bytes,
                                       progress=progress, verify=verify)
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
    what = (f"{info.width}x{info.height} {info.mode}, {info.bits_per_pixel:.3f} bpp" if modality == "image"
            else f"{info.duration_s:.2f} s, {info.channels} ch, {info.kbps:.2f} kbit/s")
    return f"{src} -> {dst}: {what}, {info.layers} layers, {len(encoded)} bytes" + (", verified" if verify else "")


def decode_file(src: str, dst: str, layers: int | None, force: bool, progress=None) -> str:
    """Decode one .vq file (or '-') to `dst` (or '-'), image or audio by what it holds; returns the summary line."""
    from vqcodec import api

    check_writable(dst, force)
    data = read_input(src)
    try:
        header = api.inspect(data)
        if header.modality == "image":
            check_image_output(dst, header.mode)  # before decoding: an output type that would lose alpha
            img = api.decode(data, layers=layers, progress=progress)
            write_output(dst, _image_bytes(img, dst), force)
            return f"{src} -> {dst}: {img.width}x{img.height} {img.mode}"
        _audio_format(dst)
        rate, channels, num_samples, blocks = api.decode_audio_blocks(data, layers=layers, progress=progress)
        del data  # parsed: the file's streams are held once, not twice
        write_audio(dst, blocks, rate, channels, force, num_samples)  # rendered block by block while written
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
    from vqcodec import api

    from . import batch

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
    modality = "audio" if output != "-" and Path(output).suffix.lower() in _AUDIO_FORMATS else "image"
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
    write_output(output, _image_bytes(np.asarray(rgb), output), force)
    if output != "-":
        click.echo(f"sampled {w}x{h} image (seed {seed}, {layers or top} layers) -> {output}", err=True)
