"""`vqcodec encode | decode | info | sample`."""
from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import click
import numpy as np

from .io import BadInput, check_writable, read_input, write_output

__all__ = ["encode", "decode", "info", "sample"]

_FORMAT_BY_SUFFIX = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
                     ".jpg": "JPEG", ".jpeg": "JPEG", ".ppm": "PPM"}


def _progress_bar(desc: str):
    """A tqdm bar over stages on stderr (hidden when stderr is not a terminal); returns (callback, bar)."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="stage", disable=None, leave=False, file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar


def _image_bytes(rgb: np.ndarray, out_path: str) -> bytes:
    from PIL import Image

    suffix = Path(out_path).suffix.lower() if out_path != "-" else ".png"
    fmt = _FORMAT_BY_SUFFIX.get(suffix)
    if fmt is None:
        raise BadInput(f"{out_path}: unknown image type {suffix!r}; use one of {', '.join(sorted(_FORMAT_BY_SUFFIX))}")
    buf = io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(rgb, mode="RGB").save(buf, format=fmt, **extra)
    return buf.getvalue()


def _open_image(data: bytes, name: str):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise BadInput(f"{name}: not a readable image ({e})") from None


@click.command()
@click.argument("input_path", metavar="IN", type=str)
@click.option("-o", "--output", "output", required=True, help="Output .vq file ('-' for stdout).")
@click.option("-q", "--quality", type=int, default=None,
              help="Quality level 1..8 (residual-VQ stages; about 0.14 bpp each before entropy coding). "
                   "Default: 8, the highest.")
@click.option("--alpha", type=click.Choice(["error", "drop", "white", "black"]), default="error", show_default=True,
              help="What to do with a transparent alpha channel: refuse, drop it, or composite over white/black.")
@click.option("--verify", is_flag=True, help="Decode the result and check it before reporting success.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
def encode(input_path: str, output: str, quality: int | None, alpha: str, verify: bool, force: bool) -> None:
    """Encode image IN (PNG, JPEG, WebP, BMP, TIFF; '-' for stdin) to a .vq file.

    Grayscale and palette images are coded as RGB. A fully opaque alpha channel is dropped; a
    transparent one needs --alpha.
    """
    from vqcodec.api import to_rgb_array
    from vqcodec.image.codec import ImageCodec

    check_writable(output, force)
    img = _open_image(read_input(input_path), input_path)
    codec = ImageCodec.default()
    if quality is not None and not 1 <= quality <= codec.max_quality:
        raise click.BadParameter(f"must be 1..{codec.max_quality}", param_hint="--quality")
    try:
        rgb = to_rgb_array(img, alpha)
    except ValueError as e:
        raise BadInput(f"{input_path}: {e}") from None
    t0 = time.perf_counter()
    update, bar = _progress_bar("encode")
    try:
        indices = codec.encode_indices(rgb, quality)
        data = codec.pack(indices, rgb.shape[0], rgb.shape[1], update)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    if verify:
        _, decoded = codec.decode_indices(data)
        if not np.array_equal(decoded.numpy(), indices.numpy()):
            raise click.ClickException("verification failed: decoded indices differ from the encoded ones; nothing written")
    write_output(output, data, force)
    h, w = rgb.shape[:2]
    if output != "-":
        q = quality or codec.max_quality
        click.echo(f"{input_path} -> {output}: {w}x{h}, quality {q}, {len(data)} bytes, "
                   f"{8 * len(data) / (w * h):.3f} bpp, {elapsed:.2f} s" + (", verified" if verify else ""), err=True)


@click.command()
@click.argument("input_path", metavar="IN.vq", type=str)
@click.option("-o", "--output", "output", required=True,
              help="Output image (.png, .bmp, .tif, .webp lossless, ...; '-' for PNG on stdout).")
@click.option("-q", "--quality", type=int, default=None,
              help="Decode only the first Q stages (lower quality). Default: all stages in the file.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
def decode(input_path: str, output: str, quality: int | None, force: bool) -> None:
    """Decode IN.vq ('-' for stdin) to an image."""
    from vqcodec.bitstream import VQFormatError
    from vqcodec.image.codec import ImageCodec

    check_writable(output, force)
    if quality is not None and quality < 1:
        raise click.BadParameter("must be >= 1", param_hint="--quality")
    data = read_input(input_path)
    t0 = time.perf_counter()
    update, bar = _progress_bar("decode")
    try:
        rgb = ImageCodec.default().decode(data, quality, update)
    except VQFormatError as e:
        raise BadInput(f"{input_path}: {e}") from None
    finally:
        bar.close()
    write_output(output, _image_bytes(rgb, output), force)
    if output != "-":
        click.echo(f"{input_path} -> {output}: {rgb.shape[1]}x{rgb.shape[0]}, {time.perf_counter() - t0:.2f} s", err=True)


@click.command()
@click.argument("input_path", metavar="IN.vq", type=str)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(input_path: str, as_json: bool) -> None:
    """Show what a .vq file holds: size, quality layers, model, stream sizes."""
    from vqcodec.bitstream import VQFormatError, unpack

    data = read_input(input_path)
    try:
        header, _ = unpack(data)
    except VQFormatError as e:
        raise BadInput(f"{input_path}: {e}") from None
    d = {
        "format_version": header.version,
        "modality": header.modality.name.lower(),
        "model_id": header.model_id,
        "weights_hash": header.weights_hash.hex(),
        "width": header.width,
        "height": header.height,
        "channel_layout": header.channel_layout.name,
        "stages": header.stages,
        "stream_bytes": list(header.stream_lengths),
        "file_bytes": len(data),
        "bpp": 8 * len(data) / (header.width * header.height),
    }
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"{input_path}: vqcodec {d['modality']}, {d['width']}x{d['height']} {d['channel_layout']}, "
               f"{d['stages']} quality layers, {d['file_bytes']} bytes ({d['bpp']:.3f} bpp)")
    click.echo(f"  model {d['model_id']} (weights {d['weights_hash']}), format version {d['format_version']}")
    for i, n in enumerate(d["stream_bytes"], 1):
        click.echo(f"  stage {i}: {n} bytes")


@click.command()
@click.option("-o", "--output", "output", required=True, help="Output image (.png etc.; '-' for stdout).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same image).")
@click.option("--size", default="256x256", show_default=True, help="WIDTHxHEIGHT in pixels (multiples of 8).")
@click.option("-q", "--quality", type=int, default=None, help="Stages to sample (default: all).")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
def sample(output: str, seed: int, size: str, quality: int | None, force: bool) -> None:
    """Draw index maps from the prior and decode them: the VQ-VAE paper's generation experiment."""
    from vqcodec.image.codec import ImageCodec

    check_writable(output, force)
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter("expected WIDTHxHEIGHT, e.g. 256x256", param_hint="--size") from None
    if w < 8 or h < 8 or w % 8 or h % 8 or w * h > 4096 * 4096:
        raise click.BadParameter("sides must be multiples of 8, at least 8, at most 16 megapixels", param_hint="--size")
    codec = ImageCodec.default()
    s = quality or codec.max_quality
    if not 1 <= s <= codec.max_quality:
        raise click.BadParameter(f"must be 1..{codec.max_quality}", param_hint="--quality")
    indices = codec.prior.sample(s, h // 8, w // 8, seed)
    rgb = codec.render(indices, h, w)
    write_output(output, _image_bytes(rgb, output), force)
    if output != "-":
        click.echo(f"sampled {w}x{h} image (seed {seed}, {s} stages) -> {output}", err=True)
